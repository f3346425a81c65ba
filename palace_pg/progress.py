"""What a run's progress events add up to, per phase: the model every progress display draws.

The phases emit :class:`~palace_pg.phases.base.ProgressEvent` s in three shapes,
and the tally reads each the way its phase means it:

* ``rows``: a load or a comparison.  ``unit`` names a collection and
  ``done``/``total`` count that collection's rows; the phase's figures are the
  sums over its collections (drawers, collections, verify), or ``unit`` is empty
  and the figures are the phase's own (kg).
* ``items``: the indexes phase counts the indexes of the whole phase and
  ``unit`` names the one being built.
* ``bytes``: the snapshot counts the bytes copied and hashed.

The engine opens a phase with ``(phase, "", 0, 1, title)`` and closes it with
``(phase, "", 1, 1, "done")``; a phase that is never closed (``verify`` run on
its own, an interruption) is closed by :meth:`ProgressTally.finish`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

KINDS = {"snapshot": "bytes", "indexes": "items"}  # every other phase counts rows
UNIT_WORDS = {"rows": "rows", "items": "indexes", "bytes": "bytes"}


@dataclass
class PhaseState:
    name: str
    kind: str
    title: str = ""
    state: str = "running"  # running, done, failed
    note: str = ""  # the phase's last message ("building drawers_embedding_hnsw")
    item: str = ""  # the unit being worked on
    own: tuple[int, int] | None = None  # the phase's own done/total (kg, indexes, snapshot)
    units: dict[str, tuple[int, int]] = field(default_factory=dict)  # per collection: done, total
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def done(self) -> int | None:
        if self.units and self.kind == "rows":
            return sum(d for d, _ in self.units.values())
        return self.own[0] if self.own else None

    @property
    def total(self) -> int | None:
        if self.units and self.kind == "rows":
            return sum(t for _, t in self.units.values())
        return self.own[1] if self.own else None

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    @property
    def fraction(self) -> float:
        if self.state == "done":
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def rate(self) -> float | None:
        """Rows or bytes per second (None for items: an index a second says nothing)."""
        if self.kind == "items" or not self.done or self.seconds <= 0:
            return None
        return self.done / self.seconds

    def unit_list(self) -> str:
        """Every collection of a rows phase with its figures: 'mempalace_closets 388/388, mempalace_assets 0/50'."""
        return ", ".join(f"{name} {d:,}/{t:,}" for name, (d, t) in self.units.items())


class ProgressTally:
    """Feed it every ProgressEvent; read ``phases`` (in the order they started) and ``current``."""

    def __init__(self) -> None:
        self.phases: dict[str, PhaseState] = {}
        self.current: PhaseState | None = None

    def add(self, event) -> tuple[PhaseState, PhaseState | None]:
        """Take one event; return the phase it concerns and the phase it closed on the way (if any)."""
        closed = None
        phase = self.phases.get(event.phase)
        if phase is None or phase.state != "running":
            if self.current is not None and self.current.state == "running" and self.current.name != event.phase:
                closed = self._close(self.current, "done")  # phases run one after another
            phase = self.phases[event.phase] = PhaseState(event.phase, KINDS.get(event.phase, "rows"))
        self.current = phase
        opening = not event.unit and event.done == 0 and event.total == 1 and event.message not in ("", "done")
        if opening:
            phase.title = event.message
        elif not event.unit and event.message == "done":
            self._close(phase, "done")
        elif event.unit and phase.kind == "rows":
            if event.total is not None:  # an empty collection is named too (0/0)
                phase.units[event.unit] = (event.done, event.total)
            phase.item = event.unit
        else:
            if event.total and not (phase.kind == "items" and event.total == 1 and event.unit):
                phase.own = (event.done, event.total)  # (the cluster step's 0/1 is a step, not the count)
            phase.item = event.unit or phase.item
        if event.message and not opening and event.message != "done":
            phase.note = event.message
        return phase, closed

    def finish(self, failed: bool = False) -> PhaseState | None:
        """Close the open phase: done when its figures are complete and nothing failed."""
        phase = self.current
        if phase is None or phase.state != "running":
            return None
        complete = phase.total is None or (phase.done or 0) >= phase.total
        return self._close(phase, "failed" if failed or not complete else "done")

    @staticmethod
    def _close(phase: PhaseState, state: str) -> PhaseState:
        phase.state = state
        phase.ended = time.monotonic()
        if state == "done":
            phase.note = ""
            if phase.kind == "items" and phase.own:
                phase.own = (phase.own[1], phase.own[1])
        return phase


# -- the figures every display writes the same way (terminal lines, the runbooks' board) -------
def size_text(n: float) -> str:
    """Bytes in decimal units: '812 B', '3.1 MB'."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"


def count_text(phase: PhaseState) -> str:
    """'1,200/2,000 rows', '8/21 indexes', '3.1 MB/12.4 MB', or '' for a phase without figures."""
    done, total = phase.done, phase.total
    if total is None:
        return ""
    if phase.kind == "bytes":
        return f"{size_text(done or 0)}/{size_text(total)}"
    return f"{done or 0:,}/{total:,} {UNIT_WORDS[phase.kind]}"


def rate_text(phase: PhaseState) -> str:
    """'1,234 rows/s', '0.17 rows/s', '40.2 MB/s', or '' (indexes, or nothing done yet)."""
    rate = phase.rate
    if rate is None:
        return ""
    if phase.kind == "bytes":
        return f"{size_text(rate)}/s"
    return f"{rate:,.0f} rows/s" if rate >= 10 else f"{rate:.2g} rows/s"  # a slow sync is not "0 rows/s"
