"""Per-wing partial HNSW indexes: built after the cutover, used by wing-filtered searches.

pgvector's HNSW filters after the index scan, and a wing is a few topic
clusters, so neither the full index (iterative scan: recall 0.34–0.88) nor an
exact scan of a large wing (48K rows of a 30% wing at 160K drawers: ~37 ms)
meets a filtered top-10 of recall ≥ 0.99 within 10 ms.  A partial index
``WHERE wing = '<wing>'`` holds only that wing's rows, so its scan returns k
rows of the wing at the recall of an unfiltered search of a table that size.

They are not built by the migration: each costs a build as long as the
unfiltered one for its share of the rows, and the downtime window is the
migration's.  ``palace-pg maintain`` (or the backend's
``run_maintenance("wing_indexes")``) builds them afterwards with
``CREATE INDEX CONCURRENTLY``, so MemPalace keeps reading and writing
meanwhile.  Rerunning keeps the valid ones (``noop`` when all are there) and
rebuilds one an interrupted build left INVALID: resumable.  Until they exist
the planner answers exactly as before (exact scan or iterative scan).

Measured at 160K synthetic drawers (benchmarks/results/search_160k_maintained.json,
200 off-distribution mixture queries, exact top-10 within the wing as truth,
load average ~17 on 2 cores): recall@10 on the 11% / 30% wing's index 0.83 /
0.81 at ef_search 200 and 0.94 / 0.90 at 400 (CPU 2.6–4.7 ms a query), against
1.0 for the exact plan.  A wing's nearest rows to a query from elsewhere sit on
its clusters' edges, where a graph of the wing alone navigates poorly.  So the
planner uses a wing's index only where it would otherwise run the iterative
scan (more than ``exact_max_rows`` matching rows, default 100K); an operator
lowers ``exact_max_rows`` (``PALACE_PG_EXACT_MAX_ROWS``) to trade that recall for
latency on wings it leaves above the line.

Only wings above ``min_rows`` get one: below it an exact scan of the wing's
rows costs a few ms (the same cost line as ``exact_unfiltered_max_rows``).
An index's name is derived from its wing (a hash: wing names are free text),
so the planner finds a wing's index by name without reading its predicate.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import psycopg
from psycopg import sql

from ..target_db import ddl
from ..target_db.schema import HNSW_EF_CONSTRUCTION, HNSW_M, SCHEMA, qualified

log = logging.getLogger(__name__)

KIND = "wing_indexes"
#: Wings with more rows than this get a partial index (an exact scan of 10K rows costs ~3 ms).
MIN_ROWS = 10_000  # SearchSettings.wing_index_min_rows, the same line
_SUFFIX = "_hnsw"


def index_name(table: str, wing: str) -> str:
    """The partial index of ``wing`` on ``table`` (within PostgreSQL's 63-byte names)."""
    return f"{table[:36]}_wing_{hashlib.sha256(wing.encode()).hexdigest()[:16]}{_SUFFIX}"


def _name_pattern(table: str) -> str:
    return f"{table[:36]}_wing_%{_SUFFIX}"


def valid_names(conn: psycopg.Connection, table: str) -> frozenset[str]:
    """Names of the valid wing indexes on ``table``."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = to_regclass(%s) AND i.indisvalid AND c.relname LIKE %s",
        [f"{SCHEMA}.{table}", _name_pattern(table)]).fetchall()
    return frozenset(r[0] for r in rows)


def wing_sizes(conn: psycopg.Connection, table: str) -> dict[str, int]:
    rows = conn.execute(sql.SQL("SELECT wing, count(*) FROM {} WHERE wing IS NOT NULL GROUP BY wing").format(
        qualified(table))).fetchall()
    return {str(w): int(n) for w, n in rows}


def _statement(table: str, wing: str, m: int, ef_construction: int) -> sql.Composed:
    # DDL cannot bind parameters: the wing goes in as a quoted literal, the one form a partial
    # index predicate takes; a query's bound `wing = $1` implies it in a custom plan.
    return sql.SQL(
        "CREATE INDEX CONCURRENTLY {} ON {} USING hnsw (embedding vector_cosine_ops) "
        "WITH (m = {}, ef_construction = {}) WHERE wing = {}").format(
        sql.Identifier(index_name(table, wing)), qualified(table), sql.Literal(int(m)),
        sql.Literal(int(ef_construction)), sql.Literal(wing))


def build(conn: psycopg.Connection, table: str, *, min_rows: int = MIN_ROWS, m: int = HNSW_M,
          ef_construction: int = HNSW_EF_CONSTRUCTION, progress=None) -> dict[str, Any]:
    """Build the missing (or INVALID) wing indexes of ``table``; ``conn`` must be autocommit.

    Returns ``{"status": "ran"|"noop", "built": [...], "rebuilt": [...], "kept": [...],
    "wings": {wing: {"rows", "index", "state", "seconds"}}}``; every index is checked
    valid afterwards (``state``).
    """
    if not conn.autocommit:
        raise ValueError("wing indexes are built with CREATE INDEX CONCURRENTLY: pass an autocommit connection")
    sizes = {w: n for w, n in wing_sizes(conn, table).items() if n > min_rows}
    built, rebuilt, kept, wings = [], [], [], {}
    from ..phases.indexes_phase import hnsw_work_mem, parallel_hnsw_allowed
    from .maintenance import (
        column_dimension,  # maintenance dispatches here: imported late
    )

    dimension = column_dimension(conn, table) or 384

    workers = 2 if parallel_hnsw_allowed(conn) else 0
    for n, (wing, rows) in enumerate(sorted(sizes.items(), key=lambda kv: -kv[1])):
        name = index_name(table, wing)
        current = ddl.index_state(conn, name)
        seconds = 0.0
        if current == "valid":
            kept.append(wing)
        else:
            if progress:
                progress(n, len(sizes), f"building the HNSW index of wing {wing!r} ({rows} rows)")
            if current == "invalid":
                log.warning("wing index %s is INVALID (an interrupted build): rebuilding", name)
                conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(SCHEMA, name)))
            conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(hnsw_work_mem(rows, dimension))))
            conn.execute(sql.SQL("SET max_parallel_maintenance_workers = {}").format(sql.Literal(workers)))
            started = time.perf_counter()
            try:
                conn.execute(_statement(table, wing, m, ef_construction))
            finally:
                conn.execute("RESET maintenance_work_mem")
                conn.execute("RESET max_parallel_maintenance_workers")
            seconds = round(time.perf_counter() - started, 2)
            (rebuilt if current == "invalid" else built).append(wing)
        wings[wing] = {"rows": rows, "index": name, "state": ddl.index_state(conn, name), "seconds": seconds}
    if progress:
        progress(len(sizes), len(sizes), "")
    return {"status": "ran" if built or rebuilt else "noop", "built": built, "rebuilt": rebuilt, "kept": kept,
            "min_rows": min_rows, "wings": wings}


def wing_of(where: dict | None) -> tuple[str | None, bool]:
    """The wing a ``where`` pins (``{"wing": w}``, ``{"wing": {"$eq": w}}``, or inside a top-level ``$and``).

    Second value: whether the wing is the whole filter (then the partial index's rows are exactly
    the matching rows).  ``(None, False)`` when no single wing is pinned.
    """
    if not isinstance(where, dict) or not where:
        return None, False
    if set(where) == {"$and"} and isinstance(where["$and"], list):
        found = [wing_of(part)[0] for part in where["$and"]]
        wings = {w for w in found if w is not None}
        if len(wings) == 1:
            return wings.pop(), all(w is not None for w in found)
        return None, False
    value = where.get("wing")
    if isinstance(value, dict) and set(value) == {"$eq"}:
        value = value["$eq"]
    if not isinstance(value, str):
        return None, False
    return value, len(where) == 1
