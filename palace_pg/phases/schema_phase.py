"""Phase 1: schema, tables, backend_meta, the AGE graph, and the palace's non-store files."""

from __future__ import annotations

import hashlib

from psycopg import sql

from .. import __version__
from ..target_db import schema, state
from .base import RunContext


class SchemaPhase:
    name = "schema"
    title = "Create the schema, tables, graph and backend_meta"

    def _tables(self, ctx: RunContext) -> list[tuple[str, str, int | None]]:
        src = ctx.source
        return [(c.name, schema.table_for_collection(c.name, src.drawers_name), c.dimension) for c in src.collections]

    def describe(self, ctx: RunContext) -> dict:
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

    def run(self, ctx: RunContext) -> dict:
        conn, src = ctx.conn, ctx.source
        with conn.transaction():
            schema.create_base(conn)
            state.start_unit(conn, ctx.run_id, self.name)
            for name, table, dim in self._tables(ctx):
                conn.execute(schema.collection_ddl(table, dim))
                facts = src.collection(name)
                role = "drawers" if name == src.drawers_name else name.removeprefix("mempalace_")
                conn.execute(sql.SQL(
                    "INSERT INTO {} (name, table_name, dimension, metadata, source_count, role) "
                    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET "
                    "dimension = EXCLUDED.dimension, metadata = EXCLUDED.metadata, source_count = EXCLUDED.source_count"
                ).format(schema.qualified("collections")),
                    [name, table, dim, _jsonb(facts.metadata), src.count(name), role])
            _ensure_kg_store(conn, ctx)
            carried, left = src.carried_files()
            for rel, path in carried:
                content = path.read_bytes()
                conn.execute(sql.SQL(
                    "INSERT INTO {} (path, content, sha256) VALUES (%s, %s, %s) ON CONFLICT (path) DO UPDATE "
                    "SET content = EXCLUDED.content, sha256 = EXCLUDED.sha256").format(schema.qualified("files")),
                    [rel, content, hashlib.sha256(content).hexdigest()])
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
            }
            for key, value in meta.items():
                state.set_meta(conn, key, value)
            state.finish_unit(conn, self.name, details={"tables": len(self._tables(ctx)), "files": len(carried)})
        return {"tables": [t for _, t, _ in self._tables(ctx)], "files_carried": len(carried),
                "files_left_in_backup": left}


def _jsonb(value):
    from psycopg.types.json import Jsonb

    return Jsonb(value)


def _ensure_kg_store(conn, ctx: RunContext) -> None:
    """The KG store chosen for this target (--kg-store), recorded in backend_meta, and created."""
    from ..kg import stores

    store = stores.resolve(conn, ctx.options.kg_store)
    state.set_meta(conn, stores.META_KEY, store)
    stores.ensure(conn, store)
