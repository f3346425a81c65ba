"""Phase 5: the sqlite knowledge graph into the target's KG store (the AGE graph, or plain tables).

The bulk route (COPY into staging, INSERT into the label tables or the KG
tables; per-row Cypher MERGE runs at ~30 rows/s) lives in :mod:`palace_pg.kg`.
The store is the one the schema phase recorded (``backend_meta.kg_store``).  The
whole load, its checkpoint and the phase's "done" commit in one transaction, and
the loader skips ids already present, so a rerun neither duplicates nor loses a fact.
"""

from __future__ import annotations

from ..faults import crash_point
from ..target_db import state
from .base import Phase, RunContext


class KGPhase(Phase):
    name = "kg"
    title = "Load the knowledge graph (Apache AGE, or plain tables)"
    requires = ("schema", "drawers", "collections", "indexes")

    def plan(self, ctx: RunContext) -> dict:
        from ..kg import stores

        entities, triples = ctx.source.kg()
        store = stores.resolve(ctx.conn, ctx.options.kg_store)
        route = ("COPY into temp staging + INSERT into the AGE label tables" if store == "age" else
                 "COPY into temp staging + INSERT into mempalace.kg_entities/kg_triples")
        return {"kg_path": str(ctx.source.kg_source_path) if ctx.source.kg_source_path else None,
                "entities": len(entities), "triples": len(triples), "kg_store": store,
                "route": route + ", idempotent by id"}

    def apply(self, ctx: RunContext) -> dict:
        from ..kg import stores

        conn = ctx.conn
        entities, triples = ctx.source.kg()
        ctx.emit(self.name, "", 0, len(entities) + len(triples), "loading")
        with ctx.final_transaction():
            state.start_unit(conn, ctx.run_id, self.name, "graph")
            store = stores.recorded(conn) or stores.resolve(conn, ctx.options.kg_store)
            stores.ensure(conn, store)
            counts = stores.bulk_load(conn, entities, triples, store=store)
            crash_point("kg")
            # rows_done: what `status` shows for the KG (entities + triples loaded), as for a collection
            state.advance(conn, self.name, "graph", rows_done=len(entities) + len(triples))
            state.finish_unit(conn, self.name, "graph", counts)
        ctx.emit(self.name, "", len(entities) + len(triples), len(entities) + len(triples))
        return {"source_entities": len(entities), "source_triples": len(triples), "kg_store": store, **counts}
