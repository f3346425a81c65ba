"""Progress on stderr: one line per phase, redrawn in place on a terminal, plain closed lines otherwise.

Any command that runs phases passes this as the engine's ``progress`` callback::

    with PhaseLines() as progress:
        summary = migrate(options, progress=progress)

On a terminal the open phase's line is rewritten in place (carriage return and
erase-to-end-of-line only) and ended with a newline when the phase ends, so
nothing else is ever printed over it.  When stderr is a file or a pipe (CI logs,
``2>err.txt``) no escape or carriage return is written: each phase prints one
line when it ends, plus a line at most every ``every`` seconds while it runs.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time

from ..progress import PhaseState, ProgressTally
from ..progress import count_text as _count
from ..progress import rate_text as _rate

NAME_WIDTH = 12
BAR_WIDTH = 20


def _seconds(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {s % 60:02.0f} s"


def line(phase: PhaseState, *, bar: bool = False) -> str:
    """The phase's line: name, state or percentage, figures, time, rate, then what it is working on."""
    parts = [phase.name.ljust(NAME_WIDTH)]
    if phase.state == "running":
        pct = f"{phase.fraction * 100:3.0f}%" if phase.total else " ..."
        if bar and phase.total:
            filled = round(phase.fraction * BAR_WIDTH)
            pct += " " + "█" * filled + "·" * (BAR_WIDTH - filled)
        parts.append(pct)
    else:
        parts.append(phase.state.ljust(4) if phase.state == "done" else phase.state.upper())
    figures = _count(phase)
    timing = f"{'in ' if phase.state != 'running' else ''}{_seconds(phase.seconds)}"
    rate = _rate(phase)
    parts.append("  ".join(p for p in (figures, timing, f"({rate})" if rate else "") if p))
    if phase.kind == "rows" and len(phase.units) > 1:
        parts.append(phase.unit_list())
    elif phase.state == "running" and (phase.note or phase.item):
        parts.append(phase.note or phase.item)
    elif phase.state == "failed" and (phase.note or phase.item):
        parts.append(phase.note or f"at {phase.item}")
    return "  ".join(p for p in parts if p)


class PhaseLines:
    """A ProgressEvent callback that draws one line per phase on ``stream`` (stderr by default)."""

    def __init__(self, stream=None, *, terminal: bool | None = None, every: float = 10.0,
                 redraw: float = 0.1) -> None:
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.tally = ProgressTally()
        self._every = redraw if self.terminal else every
        self._last = 0.0
        self._open = False  # a terminal line is drawn and not yet ended

    def __enter__(self) -> "PhaseLines":
        # a log record (a rejected row, a server notice) clears the bar first instead of landing on it
        for handler in logging.getLogger().handlers:
            handler.addFilter(self._clear_for_log)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._clear_for_log)
        self.close(failed=exc_type is not None)

    def _clear_for_log(self, record) -> bool:
        if self._open:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._open = False
            self._last = 0.0  # redraw below the log line at the next event
        return True

    def __call__(self, event) -> None:
        phase, closed = self.tally.add(event)
        if closed is not None:
            self._end(closed)
        if phase.state != "running":
            self._end(phase)
            return
        now = time.monotonic()
        # a plain stream gets a line only for a phase still running after `every` seconds (then each `every`)
        since = self._last if self.terminal else max(self._last, phase.started)
        if now - since >= self._every:
            self._last = now
            self._draw(phase)

    def close(self, failed: bool = False) -> None:
        """End the open phase's line (as done when its figures are complete, else FAILED)."""
        phase = self.tally.finish(failed=failed)
        if phase is not None:
            self._end(phase)

    def _draw(self, phase: PhaseState) -> None:
        if self.terminal:
            width = max(40, shutil.get_terminal_size((100, 20)).columns - 1)
            self.stream.write("\r" + line(phase, bar=True)[:width] + "\x1b[K")
            self._open = True
        else:
            self.stream.write(line(phase) + "\n")
        self.stream.flush()

    def _end(self, phase: PhaseState) -> None:
        text = line(phase)
        if self.terminal:
            width = max(40, shutil.get_terminal_size((100, 20)).columns - 1)
            self.stream.write("\r" + text[:width] + "\x1b[K\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._open = False
        self._last = 0.0  # the next phase's line is drawn at once on a terminal
