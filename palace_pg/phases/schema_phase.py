"""Phase 1: schema, tables, backend_meta, the AGE graph, and the palace's non-store files."""

from __future__ import annotations

import uuid


from .. import __version__
from ..sync.changes import watermarks
from ..target_db import ddl, schema, state
from .base import Phase, RunContext


class SchemaPhase(Phase):
    name = "schema"
    title = "Create the schema, tables, graph and backend_meta"
    requires = ()

    def _tables(self, ctx: RunContext) -> list[tuple[str, str, int | None]]:
        src = ctx.source
        return [(c.name, schema.table_for_collection(c.name, src.drawers_name), c.dimension) for c in src.collections]

    def plan(self, ctx: RunContext) -> dict:
        carried, left = ctx.source.carried_files()
        return {
            "schema": schema.SCHEMA,
            "graph": schema.GRAPH,
            "tables": [{"collection": n, "table": t, "dimension": d} for n, t, d in self._tables(ctx)],
            "files_carried": [rel for rel, _ in carried],
            "files_left_in_backup": left,
            "statements": [s.as_string(ctx.conn) for s in schema.BASE_DDL]
            + [schema.collection_ddl(t, d).as_string(ctx.conn) for _, t, d in self._tables(ctx)],
        }

    def apply(self, ctx: RunContext) -> dict:
        conn, src = ctx.conn, ctx.source
        # one transaction, the phase's only unit: tables, palace_id and the "done" row commit together
        with ctx.final_transaction():
            schema.create_base(conn)
            for name, table, dim in self._tables(ctx):
                conn.execute(schema.collection_ddl(table, dim))
                ddl.register_collection(conn, name, table, dim, metadata=src.collection(name).metadata,
                                        source_count=src.count(name), drawers_name=src.drawers_name, refresh=True)
            _ensure_kg_store(conn, ctx)
            carried, left = src.carried_files()
            for rel, path in carried:
                ddl.put_file(conn, rel, path.read_bytes())
            meta = {
                "schema_version": schema.SCHEMA_VERSION,
                "tool_version": __version__,
                "palace": {**src.identity(), "source_path": str(src.path)},
                "source_fingerprint": src.snapshot.fingerprint,
                "source_manifest": src.snapshot.manifest()["files"],
                "run_id": str(ctx.run_id),
                "drawers_collection": src.drawers_name,
                "embedder": {c.name: src.embedder_identity(c.name) for c in src.collections},
                "chroma_collection_metadata": {c.name: c.metadata for c in src.collections},
                "chroma_hnsw": {"M": 16, "ef_construction": 100, "ef_search": 100, "space": "cosine"},
                "files_left_in_backup": left,
                "kg_source": str(src.kg_source_path) if src.kg_source_path else None,
                # the Chroma write seq_ids this read has seen: `palace-pg sync` reads only what comes after
                "chroma_watermarks": watermarks(src.snapshot.palace, src.collections),
            }
            for key, value in meta.items():
                state.set_meta(conn, key, value)
            # which palace this database holds; kept across reruns (the marker written at cutover names it)
            state.set_meta(conn, "palace_id", state.get_meta(conn, "palace_id") or str(uuid.uuid4()))
        return {"tables": [t for _, t, _ in self._tables(ctx)], "files_carried": len(carried),
                "files_left_in_backup": left}



def _ensure_kg_store(conn, ctx: RunContext) -> None:
    """The KG store chosen for this target (--kg-store), recorded in backend_meta, and created."""
    from ..kg import stores

    store = stores.resolve(conn, ctx.options.kg_store)
    state.set_meta(conn, stores.META_KEY, store)
    stores.ensure(conn, store)
