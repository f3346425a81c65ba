"""The runbooks' live progress board: one table, a row per step, updated in place.

It reads the engine's progress events through the same
:class:`~palace_pg.progress.ProgressTally` the CLI's phase lines use, so the
board and ``palace-pg migrate`` in a terminal always tell the same story: the
snapshot (bytes) and the preflight get their own rows, because they run for
seconds before phase 1 and the board would otherwise show everything pending;
a rows phase names every collection it handles (``mempalace_closets 388/388,
mempalace_assets 0/0``), seeded from the plan before it starts.

Why a display and not a tqdm widget: a widget bar is archived at 0 % (its
``text/plain`` is captured when it is created), while an HTML display updated
through its ``display_id`` is stored by nbclient in its *last* state, so the
executed notebook shows every step finished, or the one that failed.
"""

from __future__ import annotations

import html
import time
from typing import Iterable

from ..progress import KINDS, PhaseState, ProgressTally, count_text, rate_text
from .display import _COLOURS, _STYLE, _show, badge, text_table

HTML_COLUMNS = ("step", "state", "progress", "", "seconds", "rate", "what", "collections / detail")


class ProgressBoard:
    """A progress callback for ``engine.migrate``/``sync``/``verify`` shown as one table updated in place.

    ``rows``: (step, title) in display order; a step the engine reports that is not listed is added at the end.
    ``done_before``: steps an earlier run finished (shown as such, never pending).
    ``expected``: per step, the collections and row counts it will handle (shown before it reaches them).
    """

    def __init__(self, rows: list[tuple[str, str]], done_before: Iterable[str] = (), *, title: str = "Progress",
                 expected: dict[str, dict[str, int]] | None = None, min_interval: float = 0.3) -> None:
        self.title = title
        self.titles = dict(rows)
        self.done_before = set(done_before)
        self.expected = expected or {}
        self.tally = ProgressTally()
        self._last = 0.0
        self._min_interval = min_interval
        self._handle = None

    # -- the callback -------------------------------------------------------------------------
    def __enter__(self) -> "ProgressBoard":
        self._handle = _show(*self.render(), display_id=True)
        return self

    def __call__(self, event) -> None:
        known = event.phase in self.tally.phases and self.tally.phases[event.phase].state == "running"
        phase, closed = self.tally.add(event)
        now = time.monotonic()
        # a step starting or ending is drawn at once; progress inside a step at most every min_interval
        if not known or closed is not None or phase.state != "running" or now - self._last >= self._min_interval:
            self._last = now
            self._update()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.tally.finish(failed=exc_type is not None)
        self._update()

    def _update(self) -> None:
        if self._handle is not None:
            html_text, text = self.render()
            self._handle.update({"text/html": _STYLE + html_text, "text/plain": text}, raw=True)

    # -- the model ----------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        """Every step's row as plain values (what the board draws; the tests read it too)."""
        names = list(self.titles) + [n for n in self.tally.phases if n not in self.titles]
        return [self._row(name) for name in names]

    def _row(self, name: str) -> dict:
        phase = self.tally.phases.get(name)
        if phase is None:
            state = "done in an earlier run" if name in self.done_before else "pending"
            phase = PhaseState(name, KINDS.get(name, "rows"), state="pending")
            fraction, seconds, figures, rate = (1.0 if name in self.done_before else 0.0), None, "", ""
        else:
            state, fraction = phase.state, phase.fraction
            seconds, figures, rate = round(phase.seconds, 1), count_text(phase), rate_text(phase)
        units = {n: (0, t) for n, t in self.expected.get(name, {}).items()}
        units.update(phase.units)
        detail = ", ".join(f"{n} {d:,}/{t:,}" for n, (d, t) in units.items())
        if not detail and state in ("running", "failed"):
            detail = phase.note or phase.item
        if not figures and units and phase.kind == "rows":
            figures = f"0/{sum(t for _, t in units.values()):,} rows"
        return {"step": name, "state": state, "fraction": fraction, "figures": figures, "seconds": seconds,
                "rate": rate, "what": self.titles.get(name) or phase.title, "detail": detail}

    def render(self) -> tuple[str, str]:
        rows = self.rows()
        body = []
        for r in rows:
            colour = _COLOURS.get("skipped" if r["state"].startswith("done in") else r["state"], "#999")
            bar = (f'<div style="width:160px;background:#eee;height:10px"><div style="width:{r["fraction"] * 100:.0f}%;'
                   f'background:{colour};height:10px"></div></div>')
            cells = [html.escape(r["step"]), badge(r["state"]), bar, html.escape(f"{r['fraction'] * 100:.0f}%  "
                     + r["figures"]), "" if r["seconds"] is None else f"{r['seconds']:,.1f}", html.escape(r["rate"]),
                     html.escape(r["what"]), html.escape(r["detail"])]
            # figures, seconds and rate never wrap ("2,199 rows/s" on one line); the detail may
            body.append("<tr>" + "".join(f"<td style='white-space:nowrap'>{c}</td>" if 3 <= i <= 5 else f"<td>{c}</td>"
                                         for i, c in enumerate(cells)) + "</tr>")
        head = "".join(f"<th>{html.escape(c)}</th>" for c in HTML_COLUMNS)
        html_text = (f"<h4>{html.escape(self.title)}</h4><table class='ppg'><tr>{head}</tr>"
                     + "".join(body) + "</table>")
        text = self.title + "\n" + text_table(
            [{"step": r["step"], "state": r["state"], "progress": f"{r['fraction'] * 100:.0f}%",
              "figures": r["figures"], "seconds": r["seconds"], "rate": r["rate"], "collections / detail": r["detail"]}
             for r in rows], ["step", "state", "progress", "figures", "seconds", "rate", "collections / detail"])
        return html_text, text
