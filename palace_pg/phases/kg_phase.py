"""Phase 5: the sqlite knowledge graph into AGE — every entity a vertex, every triple an edge.

The bulk route (COPY into staging, INSERT into the label tables; per-row
Cypher MERGE runs at ~30 rows/s) lives in :mod:`palace_pg.kg`.  The whole load
and its checkpoint commit in one transaction, and the loader skips ids already
present, so a rerun neither duplicates nor loses a fact.
"""

from __future__ import annotations

from ..faults import crash_point
from ..target_db import state
from .base import RunContext


class KGPhase:
    name = "kg"
    title = "Load the knowledge graph into Apache AGE"

    def describe(self, ctx: RunContext) -> dict:
        entities, triples = ctx.source.kg()
        return {"kg_path": str(ctx.source.kg_source_path) if ctx.source.kg_source_path else None,
                "entities": len(entities), "triples": len(triples),
                "route": "COPY into temp staging + INSERT into the AGE label tables, idempotent by id"}

    def run(self, ctx: RunContext) -> dict:
        from ..kg.age_store import bulk_load, ensure_graph

        conn = ctx.conn
        entities, triples = ctx.source.kg()
        ctx.emit(self.name, "", 0, len(entities) + len(triples), "loading")
        with conn.transaction():
            state.start_unit(conn, ctx.run_id, self.name, "graph")
            ensure_graph(conn)
            counts = bulk_load(conn, entities, triples)
            crash_point("kg")
            # rows_done: what `status` shows for the KG (entities + triples loaded), as for a collection
            state.advance(conn, self.name, "graph", rows_done=len(entities) + len(triples))
            state.finish_unit(conn, self.name, "graph", counts)
        ctx.emit(self.name, "", len(entities) + len(triples), len(entities) + len(triples))
        return {"source_entities": len(entities), "source_triples": len(triples), **counts}
