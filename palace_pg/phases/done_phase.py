"""Phase 7: record the run and show the cutover.  No config file is changed by the tool."""

from __future__ import annotations

import datetime as dt

from ..cutover import cutover_steps
from ..dsn import shown
from ..target_db import state
from .base import Phase, RunContext


class DonePhase(Phase):
    name = "done"
    title = "Record the run and show the cutover steps"
    requires = ("schema", "drawers", "collections", "indexes", "kg", "verify")

    def plan(self, ctx: RunContext) -> dict:
        return {"cutover": cutover_steps(ctx.source.path, shown(ctx.conn))}

    def apply(self, ctx: RunContext) -> dict:
        with ctx.final_transaction():
            state.set_meta(ctx.conn, "migrated_at", dt.datetime.now(dt.timezone.utc).isoformat())
            state.set_meta(ctx.conn, "migrated_by_run", str(ctx.run_id))
        return {"cutover": cutover_steps(ctx.source.path, shown(ctx.conn))}
