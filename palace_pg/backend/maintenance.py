"""Table lifecycle for the backend: creating a collection, fixing its width, sequences, maintenance.

Maintenance kinds (RFC 001 reserved names):

* ``analyze``: ANALYZE (planner statistics, the filter-count estimates);
* ``reindex``: build the indexes of ``target_db/schema.index_definitions`` that
  are missing and rebuild invalid ones; ``noop`` when all are there;
* ``compact``: store vectors inline (``STORAGE MAIN``) and rewrite the table
  in (wing, room) order with CLUSTER, then ANALYZE.  Exact filtered search
  reads a wing's rows; adjacent rows with inline vectors make that ~10×
  cheaper (benchmarks/bench_search.py).  Takes an exclusive lock for the
  rewrite (about a minute at 160K drawers, the HNSW rebuild dominating);
* ``wing_indexes``: a partial HNSW index for each wing above
  ``wing_indexes.MIN_ROWS`` rows (CREATE INDEX CONCURRENTLY, after the
  cutover; backend/wing_indexes.py); ``noop`` when all are valid.

Concurrent runs of one kind on one table are serialised by a session
advisory lock; the loser returns ``already_running`` instead of stacking work.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import TYPE_CHECKING

import psycopg
from mempalace.backends.base import HealthStatus, MaintenanceResult
from psycopg import sql

from ..target_db import ddl, schema
from ..target_db.schema import SCHEMA, qualified
from . import wing_indexes

if TYPE_CHECKING:
    from .collection import TableState

log = logging.getLogger(__name__)

KINDS = frozenset({"analyze", "reindex", "compact", wing_indexes.KIND})
_LOCK_CLASS = 0x50475042  # "PGPB": palace_pg backend


def _lock_key(text: str) -> int:
    raw = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    return raw - 2**32 if raw >= 2**31 else raw


def column_dimension(conn: psycopg.Connection, table: str) -> int | None:
    """The width of ``embedding`` from its type modifier (None for an untyped ``vector``)."""
    row = conn.execute(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding'", [f"{SCHEMA}.{table}"]).fetchone()
    if not row or not row[0] or "(" not in row[0]:
        return None
    return int(row[0].split("(")[1].rstrip(")"))


index_status = ddl.index_states


def create_indexes(conn: psycopg.Connection, table: str, *, with_hnsw: bool) -> list[str]:
    status = index_status(conn, table)
    return [name for name, stmt in schema.index_definitions(table)
            if (with_hnsw or not name.endswith("_hnsw")) and ddl.ensure_index(conn, name, stmt, status[name]) != "kept"]


def create_collection(conn: psycopg.Connection, name: str, table: str, dimension: int | None) -> None:
    """Table, indexes, sequence and registry row for a new collection (inside the caller's transaction)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, _lock_key(f"create:{table}")])
    schema.create_base(conn)
    conn.execute(schema.collection_ddl(table, dimension))
    # Inline vectors keep exact filtered search off TOAST (the table is new and empty: no rewrite).
    conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN embedding SET STORAGE MAIN").format(qualified(table)))
    create_indexes(conn, table, with_hnsw=dimension is not None)
    conn.execute(sql.SQL("CREATE SEQUENCE IF NOT EXISTS {}").format(sql.Identifier(SCHEMA, f"{table}_seq")))
    ddl.register_collection(conn, name, table, dimension, metadata={"hnsw:space": "cosine"})


def fix_dimension(conn: psycopg.Connection, state: "TableState", width: int) -> None:
    """First vector of a collection created without a width: type the column, build HNSW."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, _lock_key(f"create:{state.table}")])
    current = column_dimension(conn, state.table)
    if current is None:
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN embedding TYPE vector({})").format(
            qualified(state.table), sql.Literal(int(width))))
        # The new type brings its default storage back: keep vectors inline.
        conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN embedding SET STORAGE MAIN").format(qualified(state.table)))
        create_indexes(conn, state.table, with_hnsw=True)
        conn.execute(sql.SQL("UPDATE {} SET dimension = %s WHERE name = %s").format(qualified("collections")),
                     [width, state.name])
        current = width
    state.dimension = current


def ensure_sequence(conn: psycopg.Connection, state: "TableState") -> None:
    """``<table>_seq`` exists and is past every seq in the table (the migration numbers rows itself)."""
    if getattr(state, "sequence_ready", False):
        return
    seq = sql.Identifier(SCHEMA, state.sequence)
    conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, _lock_key(f"seq:{state.table}")])
    conn.execute(sql.SQL("CREATE SEQUENCE IF NOT EXISTS {}").format(seq))
    # Only ever moves forward: values handed out but not yet committed stay unique.
    conn.execute(sql.SQL(
        "SELECT setval(%s, m.top + 1, false) FROM (SELECT coalesce(max(seq), -1) AS top FROM {t}) m, {s} "
        "WHERE {s}.last_value <= m.top").format(t=qualified(state.table), s=seq), [f"{SCHEMA}.{state.sequence}"])
    state.sequence_ready = True


def health(conn: psycopg.Connection, state: "TableState") -> HealthStatus:
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{SCHEMA}.{state.table}"]).fetchone()[0]:
        return HealthStatus.unhealthy(f"table {SCHEMA}.{state.table} not found")
    status = index_status(conn, state.table)
    bad = {k: v for k, v in status.items() if v != "valid" and not (k.endswith("_hnsw") and state.dimension is None)}
    if bad:
        return HealthStatus.unhealthy(f"indexes not usable: {bad}; run maintenance 'reindex'")
    return HealthStatus.healthy(f"{SCHEMA}.{state.table}: all {len(status)} indexes valid")


def state(conn: psycopg.Connection, st: "TableState") -> dict:
    status = index_status(conn, st.table)
    hnsw = status.get(f"{st.table}_embedding_hnsw")
    stats = conn.execute(
        "SELECT n_live_tup, n_dead_tup, n_tup_ins + n_tup_upd + n_tup_del, last_analyze, last_autoanalyze, "
        "last_vacuum, last_autovacuum FROM pg_stat_user_tables WHERE relid = to_regclass(%s)",
        [f"{SCHEMA}.{st.table}"]).fetchone() or (0, 0, 0, None, None, None, None)
    rows = conn.execute(sql.SQL("SELECT count(*), max(seq) FROM {}").format(qualified(st.table))).fetchone()
    storage = conn.execute(
        "SELECT attstorage FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'embedding'",
        [f"{SCHEMA}.{st.table}"]).fetchone()
    analyzed = max((t for t in (stats[3], stats[4]) if t), default=None)
    return {
        "row_count": rows[0],
        "vector_index": "hnsw" if hnsw in ("valid", "invalid") else None,
        "index_build_complete": hnsw == "valid",
        "indexes": status,
        "dimension": st.dimension,
        "vector_storage": {"m": "main", "p": "plain", "e": "external", "x": "extended"}.get(storage[0] if storage else ""),
        "dead_rows": stats[1],
        "last_analyze": analyzed.isoformat() if analyzed else None,
        "consistency_token": {"rows": rows[0], "max_seq": rows[1], "modifications": stats[2]},
    }


def run(conn: psycopg.Connection, st: "TableState", kind: str, *, min_rows: int | None = None) -> MaintenanceResult:
    """``min_rows``: for ``wing_indexes``, the wing size above which a wing gets its index."""
    key = _lock_key(f"{kind}:{st.table}")
    if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", [_LOCK_CLASS, key]).fetchone()[0]:
        return MaintenanceResult(kind=kind, status="already_running")
    started = time.monotonic()
    try:
        t = qualified(st.table)
        if kind == "analyze":
            conn.execute(sql.SQL("ANALYZE {}").format(t))
            return MaintenanceResult(kind, "ran", {"seconds": round(time.monotonic() - started, 3)})
        if kind == wing_indexes.KIND:
            detail = wing_indexes.build(conn, st.table, min_rows=min_rows or wing_indexes.MIN_ROWS) if st.dimension is not None else {"status": "noop"}
            return MaintenanceResult(kind, detail.pop("status"), {**detail, "seconds": round(time.monotonic() - started, 3)})
        conn.execute("SET maintenance_work_mem = '1GB'")
        try:
            if kind == "reindex":
                with conn.transaction():
                    built = create_indexes(conn, st.table, with_hnsw=st.dimension is not None)
                if not built:
                    return MaintenanceResult(kind, "noop", {"indexes": index_status(conn, st.table)})
                return MaintenanceResult(kind, "ran", {"built": built, "seconds": round(time.monotonic() - started, 3)})
            # compact
            conn.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN embedding SET STORAGE MAIN").format(t))
            if not ddl.cluster_by_wing(conn, st.table):
                conn.execute(sql.SQL("VACUUM FULL {}").format(t))
            conn.execute(sql.SQL("ANALYZE {}").format(t))
            return MaintenanceResult(kind, "ran", {"seconds": round(time.monotonic() - started, 3)})
        finally:
            conn.execute("RESET maintenance_work_mem")
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_CLASS, key])
