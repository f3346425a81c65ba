"""Phase 4: indexes after the load — HNSW (cosine), GIN on metadata, btrees, full text.

Each index is built by a plain ``CREATE INDEX`` in its own transaction: a crash
rolls it back whole, so the load itself never leaves an INVALID index.  One
left by anything else (an interrupted ``CREATE INDEX CONCURRENTLY``, say) is
found through ``pg_index.indisvalid`` and rebuilt.

The HNSW build is fast only while the graph fits in ``maintenance_work_mem``
(~2.4 KB per 384-d vector, perf-anchors.md §1.2), so the session raises it to
fit.  Parallel workers are used only on pgvector >= 0.8.2 (CVE-2026-3172).
"""

from __future__ import annotations

import logging
import time

import psycopg
from psycopg import sql

from ..faults import crash_point
from ..target_db import ddl, schema, state
from .base import Phase, RunContext

log = logging.getLogger(__name__)

BYTES_PER_VECTOR_PER_DIM = 6.3  # ~2.4 KB for 384 dims, measured


def vector_version(conn: psycopg.Connection) -> tuple[int, ...]:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return tuple(int(p) for p in row[0].split(".")) if row else (0,)


def parallel_hnsw_allowed(conn: psycopg.Connection) -> bool:
    """False on pgvector < 0.8.2, whose parallel HNSW build has CVE-2026-3172."""
    return vector_version(conn) >= (0, 8, 2)


def hnsw_memory_bytes(rows: int, dimension: int) -> int:
    return int(rows * dimension * BYTES_PER_VECTOR_PER_DIM)


def hnsw_work_mem(rows: int, dimension: int) -> str:
    """``maintenance_work_mem`` for an HNSW build of ``rows`` vectors: the graph and a quarter more, 64 MB–8 GB."""
    return f"{min(max(hnsw_memory_bytes(rows, dimension) * 5 // 4, 64 << 20), 8 << 30) // (1 << 20)}MB"


class IndexesPhase(Phase):
    name = "indexes"
    title = "Build HNSW, GIN and btree indexes"
    requires = ("schema", "drawers", "collections")

    def _targets(self, ctx: RunContext) -> list[tuple[str, str, int | None, int]]:
        src = ctx.source
        return [(c.name, schema.table_for_collection(c.name, src.drawers_name), c.dimension, src.count(c.name))
                for c in src.collections]

    def _definitions(self, ctx: RunContext, table: str):
        return schema.index_definitions(table, m=ctx.options.hnsw_m, ef_construction=ctx.options.hnsw_ef_construction)

    def _cluster_by_wing(self, ctx: RunContext, table: str, seconds: dict) -> None:
        """Rewrite the drawers in (wing, room) order before the other indexes exist.

        A wing-filtered search reads the wing's rows exactly (search_plan); with a
        wing's rows side by side it touches a few hundred pages instead of most of
        the table: 2.4x faster for an 11% wing at 160K drawers (bench_search).
        Chroma's order interleaves wings.  CLUSTER is one transaction: a crash
        rolls it back whole and the rerun does it again.
        """
        conn, unit = ctx.conn, f"cluster:{table}"
        cp = state.checkpoint(conn, self.name, unit)
        if cp and cp["state"] == "done":
            return
        started = time.perf_counter()
        index = f"{table}_wing_room"
        statement = dict(self._definitions(ctx, table))[index]
        with conn.transaction():
            state.start_unit(conn, ctx.run_id, self.name, unit)
        with conn.transaction():
            conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            ddl.ensure_index(conn, index, statement)
            ctx.emit(self.name, unit, 0, 1, f"ordering {table} by wing and room")
            crash_point("index")
            ddl.cluster_by_wing(conn, table)
            state.finish_unit(conn, self.name, unit, {"ordered_by": ["wing", "room"]})
        seconds[unit] = round(time.perf_counter() - started, 2)

    def plan(self, ctx: RunContext) -> dict:
        out = []
        for name, table, dim, rows in self._targets(ctx):
            for idx, stmt in self._definitions(ctx, table):
                out.append({"collection": name, "index": idx, "statement": stmt.as_string(ctx.conn),
                            "memory_bytes": hnsw_memory_bytes(rows, dim or 0) if idx.endswith("hnsw") else None})
        return {"indexes": out, "parallel_hnsw": parallel_hnsw_allowed(ctx.conn)}

    def apply(self, ctx: RunContext) -> dict:
        conn = ctx.conn
        notices: list[str] = []  # e.g. pgvector's "hnsw graph no longer fits into maintenance_work_mem"

        def keep_notice(diag) -> None:
            notices.append(diag.message_primary or "")
            level = logging.WARNING if "maintenance_work_mem" in (diag.message_primary or "") else logging.INFO
            log.log(level, "server notice while building indexes: %s", diag.message_primary)

        conn.add_notice_handler(keep_notice)
        try:
            result = self._build(ctx)
        finally:
            conn.remove_notice_handler(keep_notice)
        return {**result, "notices": notices}

    def _build(self, ctx: RunContext) -> dict:
        conn = ctx.conn
        parallel = parallel_hnsw_allowed(conn)
        built, rebuilt, kept = [], [], []
        seconds: dict[str, float] = {}
        if ctx.source.drawers is not None:
            self._cluster_by_wing(ctx, schema.table_for_collection(ctx.source.drawers_name, ctx.source.drawers_name),
                                  seconds)
        work = [(name, table, dim, rows, idx, stmt) for name, table, dim, rows in self._targets(ctx)
                for idx, stmt in self._definitions(ctx, table)]
        for n, (name, table, dim, rows, idx, stmt) in enumerate(work):
            with conn.transaction():
                state.start_unit(conn, ctx.run_id, self.name, idx)
            current = ddl.index_state(conn, idx)
            if current == "valid":
                kept.append(idx)
            else:
                with conn.transaction():
                    if current == "invalid":
                        log.warning("index %s is INVALID (left by a crash): rebuilding", idx)
                    if idx.endswith("hnsw"):
                        conn.execute(sql.SQL("SET LOCAL maintenance_work_mem = {}").format(
                            sql.Literal(hnsw_work_mem(rows, dim or 384))))
                        conn.execute(sql.SQL("SET LOCAL max_parallel_maintenance_workers = {}").format(
                            sql.Literal(2 if parallel else 0)))
                    else:
                        conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
                    ctx.emit(self.name, idx, n, len(work), f"building {idx}")
                    crash_point("index")
                    started = time.perf_counter()
                    (rebuilt if ddl.ensure_index(conn, idx, stmt, current) == "rebuilt" else built).append(idx)
                    seconds[idx] = round(time.perf_counter() - started, 2)
            with conn.transaction():
                state.finish_unit(conn, self.name, idx, {"state": "kept" if current == "valid" else "built"})
        started = time.perf_counter()
        with conn.transaction():
            for _name, table, _dim, _rows in self._targets(ctx):
                # Statistics no plan uses, and the dearest to gather (7 s of ANALYZE's 8 at 160K drawers):
                # vectors, whole documents, and to_tsvector over every sampled document.
                conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN embedding SET STATISTICS 0, "
                                     "ALTER COLUMN document SET STATISTICS 0").format(schema.qualified(table)))
                if ddl.index_state(conn, f"{table}_document_fts") == "valid":
                    conn.execute(sql.SQL("ALTER INDEX {} ALTER COLUMN 1 SET STATISTICS 0").format(
                        sql.Identifier(schema.SCHEMA, f"{table}_document_fts")))
                conn.execute(sql.SQL("ANALYZE {}").format(schema.qualified(table)))
        seconds["analyze"] = round(time.perf_counter() - started, 2)
        with ctx.final_transaction():
            state.set_meta(conn, "hnsw", {"m": ctx.options.hnsw_m, "ef_construction": ctx.options.hnsw_ef_construction,
                                          "ops": "vector_cosine_ops", "ef_search_default": ctx.options.ef_search,
                                          "parallel_build": parallel})
        ctx.emit(self.name, "", len(work), len(work))
        return {"built": built, "rebuilt_invalid": rebuilt, "kept": kept, "parallel_hnsw": parallel,
                "seconds": seconds}
