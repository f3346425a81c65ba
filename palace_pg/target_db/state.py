"""The target's own bookkeeping: ``backend_meta`` keys, checkpoints and runs.

Checkpoints are rows in the target, written in the same transaction as the
data they describe, so a crash between a COPY and its checkpoint loses both
(and the rerun repeats that batch), never one without the other.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .schema import SCHEMA, qualified

LOCK_KEY = 0x70616C61636570  # "palacep": one migrator per database


def schema_exists(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [SCHEMA]).fetchone() is not None


def _table_exists(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{SCHEMA}.{table}"]).fetchone()[0]


def rejected_rows(conn: psycopg.Connection, limit: int = 100) -> list[dict]:
    """The rows kept in the reject table (collection, id, reason), oldest first."""
    if not _table_exists(conn, "rejects"):
        return []
    return [{"collection": c, "id": i, "reason": r} for c, i, r in conn.execute(
        sql.SQL("SELECT collection, id, reason FROM {} ORDER BY collection, id LIMIT %s").format(
            qualified("rejects")), [limit])]


# -- backend_meta -------------------------------------------------------------------------
def get_meta(conn: psycopg.Connection, key: str, default: Any = None) -> Any:
    if not _table_exists(conn, "backend_meta"):
        return default
    row = conn.execute(sql.SQL("SELECT value FROM {} WHERE key = %s").format(qualified("backend_meta")), [key]).fetchone()
    return row[0] if row else default


def all_meta(conn: psycopg.Connection) -> dict:
    if not _table_exists(conn, "backend_meta"):
        return {}
    return dict(conn.execute(sql.SQL("SELECT key, value FROM {} ORDER BY key").format(qualified("backend_meta"))).fetchall())


def set_meta(conn: psycopg.Connection, key: str, value: Any) -> None:
    conn.execute(sql.SQL(
        "INSERT INTO {} (key, value) VALUES (%s, %s) "
        "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
    ).format(qualified("backend_meta")), [key, Jsonb(value)])


# -- checkpoints --------------------------------------------------------------------------
def checkpoint(conn: psycopg.Connection, phase: str, unit: str = "") -> dict | None:
    if not _table_exists(conn, "checkpoints"):
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.SQL("SELECT * FROM {} WHERE phase = %s AND unit = %s").format(qualified("checkpoints")),
                           [phase, unit]).fetchone()


def is_done(conn: psycopg.Connection, phase: str, unit: str = "") -> bool:
    row = checkpoint(conn, phase, unit)
    return bool(row and row["state"] == "done")


def applied(conn: psycopg.Connection) -> set[str]:
    """The phases whose row says done (empty on a target palace_pg never touched)."""
    if not _table_exists(conn, "checkpoints"):
        return set()
    return {phase for (phase,) in conn.execute(sql.SQL(
        "SELECT phase FROM {} WHERE unit = '' AND state = 'done'").format(qualified("checkpoints")))}


def pending(conn: psycopg.Connection, phases: list[str]) -> list[str]:
    """``phases`` without the applied ones, in their order."""
    done = applied(conn)
    return [p for p in phases if p not in done]


def start_unit(conn: psycopg.Connection, run_id, phase: str, unit: str = "") -> dict:
    conn.execute(sql.SQL(
        "INSERT INTO {} (phase, unit, run_id, state) VALUES (%s, %s, %s, 'running') "
        "ON CONFLICT (phase, unit) DO UPDATE SET run_id = EXCLUDED.run_id, updated_at = now()"
    ).format(qualified("checkpoints")), [phase, unit, run_id])
    return checkpoint(conn, phase, unit)


def advance(conn: psycopg.Connection, phase: str, unit: str, *, rows_done: int, cursor: dict | None = None) -> None:
    conn.execute(sql.SQL(
        "UPDATE {} SET batches = batches + 1, rows_done = %s, cursor = %s, updated_at = now() "
        "WHERE phase = %s AND unit = %s"
    ).format(qualified("checkpoints")), [rows_done, Jsonb(cursor) if cursor is not None else None, phase, unit])


def finish_unit(conn: psycopg.Connection, phase: str, unit: str = "", details: dict | None = None) -> None:
    conn.execute(sql.SQL(
        "UPDATE {} SET state = 'done', details = %s, updated_at = now() WHERE phase = %s AND unit = %s"
    ).format(qualified("checkpoints")), [Jsonb(details or {}), phase, unit])


def checkpoint_table(conn: psycopg.Connection) -> list[dict]:
    """Every checkpoint row, in phase order then unit: what the runbook shows first."""
    if not _table_exists(conn, "checkpoints"):
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.SQL(
            "SELECT phase, unit, state, batches, rows_done, run_id::text AS run_id, started_at, updated_at, details "
            "FROM {} ORDER BY started_at, phase, unit").format(qualified("checkpoints"))).fetchall()


# -- runs ---------------------------------------------------------------------------------
def record_run(conn: psycopg.Connection, run_id, *, status: str, tool_version: str, fingerprint: str,
               summary: dict | None = None, finished: bool = False) -> None:
    conn.execute(sql.SQL(
        "INSERT INTO {} (run_id, status, tool_version, source_fingerprint, summary, finished_at) "
        "VALUES (%s, %s, %s, %s, %s, CASE WHEN %s THEN now() END) "
        "ON CONFLICT (run_id) DO UPDATE SET status = EXCLUDED.status, summary = EXCLUDED.summary, "
        "finished_at = EXCLUDED.finished_at"
    ).format(qualified("runs")), [run_id, status, tool_version, fingerprint, Jsonb(summary or {}), finished])


def runs(conn: psycopg.Connection) -> list[dict]:
    if not _table_exists(conn, "runs"):
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.SQL("SELECT run_id::text AS run_id, started_at, finished_at, status, "
                                   "source_fingerprint, summary FROM {} ORDER BY started_at")
                           .format(qualified("runs"))).fetchall()


def try_lock(conn: psycopg.Connection) -> bool:
    """Session-level advisory lock held for the whole run by a dedicated connection."""
    return conn.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]).fetchone()[0]


def lock_holder(conn: psycopg.Connection, exclude_pid: int | None = None) -> dict | None:
    """Who holds the migration lock (other than ``exclude_pid``, our own lock connection)."""
    row = conn.execute(
        "SELECT a.pid, a.application_name, a.client_addr::text, a.backend_start FROM pg_locks l "
        "JOIN pg_stat_activity a USING (pid) WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND ((l.classid::bigint << 32) | l.objid::bigint) = %s AND l.pid IS DISTINCT FROM %s",
        [LOCK_KEY, exclude_pid]).fetchone()
    return dict(zip(("pid", "application", "client", "since"), row)) if row else None
