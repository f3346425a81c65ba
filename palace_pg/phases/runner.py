"""The phase runner: the only writer of a phase's checkpoint row.

For each selected phase that is not done: check its ``requires``, write its
``running`` row (once the checkpoint table exists), call ``apply``, and mark it
done inside the transaction of its last unit (``ctx.final_transaction()``), or
in a transaction of its own for a phase whose units all committed already.
A crash before that commit leaves the phase pending and its units' own
checkpoints in place, so the rerun continues inside the phase.
"""

from __future__ import annotations

import logging
import resource
import time

from ..errors import PalacePgError
from ..faults import crash_point
from ..target_db import state
from .base import Phase, RunContext

log = logging.getLogger(__name__)


class PhaseRunner:
    def __init__(self, ctx: RunContext, phases: list[Phase]) -> None:
        self.ctx = ctx
        self.phases = phases  # every phase, in order (requires are checked against these names)
        self.done = state.applied(ctx.conn)
        self.seconds: dict[str, float] = {}
        self.peak_rss_mb: dict[str, int] = {}  # the process's peak so far, at the end of each phase

    def run(self, selected: list[Phase], *, after_phase=None) -> dict[str, dict]:
        """Apply every selected phase not done yet; return each one's details (or why it was skipped)."""
        results: dict[str, dict] = {}
        for phase in selected:
            if phase.name in self.done:
                results[phase.name] = {"skipped": "done in an earlier run"}
                continue
            results[phase.name] = self.apply(phase)
            if after_phase is not None:
                after_phase(phase)
        return results

    def apply(self, phase: Phase) -> dict:
        """Apply one phase, done or not (verify on demand runs this way)."""
        missing = [n for n in phase.requires if n not in self.done]
        if missing:
            raise PalacePgError(f"phase {phase.name!r} needs {', '.join(missing)} done first",
                                "run `palace-pg migrate` without --phase (it resumes), or run those phases first")
        ctx, conn = self.ctx, self.ctx.conn
        started = time.monotonic()
        if state.schema_exists(conn):
            with conn.transaction():
                state.start_unit(conn, ctx.run_id, phase.name)
        marked = False

        def mark_done(details: dict) -> None:
            nonlocal marked
            # an upsert: the schema phase creates the checkpoint table in this very transaction
            state.start_unit(conn, ctx.run_id, phase.name)
            state.finish_unit(conn, phase.name, details={"seconds": round(time.monotonic() - started, 2), **details})
            crash_point("phase-done")  # the phase's last unit and its row are written, nothing committed
            marked = True

        ctx.emit(phase.name, "", 0, 1, phase.title)
        ctx.mark_phase_done = mark_done
        try:
            details = phase.apply(ctx)
            if not marked:
                with ctx.final_transaction():
                    pass
        finally:
            ctx.mark_phase_done = None
        self.done.add(phase.name)
        self.seconds[phase.name] = round(time.monotonic() - started, 2)
        self.peak_rss_mb[phase.name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
        ctx.emit(phase.name, "", 1, 1, "done")
        return details
