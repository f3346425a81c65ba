"""The DDL the migration and the backend share: the collections registry, index builds, wing order, COPY.

One place for each statement, so a palace created by MemPalace through the
backend and one written by the migration have the same registry rows, the same
indexes built the same way, and rows copied in with the same binary COPY.
"""

from __future__ import annotations

import hashlib
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from .schema import SCHEMA, index_definitions, qualified

DRAWERS_NAME = "mempalace_drawers"

#: (statement, column types) of the binary COPY every collection row goes in by
ROW_COLUMNS = ("id", "document", "metadata", "embedding", "seq")
ROW_TYPES = ["text", "text", "jsonb", "vector", "int8"]


def collection_role(name: str, drawers_name: str = DRAWERS_NAME) -> str:
    """``drawers`` for the drawers collection (whatever it is called), else the name without its prefix."""
    return "drawers" if name == drawers_name else name.removeprefix("mempalace_")


def register_collection(conn: psycopg.Connection, name: str, table: str, dimension: int | None, *,
                        metadata: Any, source_count: int = 0, drawers_name: str = DRAWERS_NAME,
                        refresh: bool = False) -> None:
    """The collection's row in ``mempalace.collections``.

    ``refresh`` (the migration) overwrites dimension, metadata and count with the source's;
    otherwise (the backend creating a collection) an existing row is kept as it is.
    """
    conflict = (sql.SQL("DO UPDATE SET dimension = EXCLUDED.dimension, metadata = EXCLUDED.metadata, "
                        "source_count = EXCLUDED.source_count") if refresh else sql.SQL("DO NOTHING"))
    conn.execute(sql.SQL(
        "INSERT INTO {} (name, table_name, dimension, metadata, source_count, role) "
        "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) {}").format(qualified("collections"), conflict),
        [name, table, dimension, Jsonb(metadata), source_count, collection_role(name, drawers_name)])


# -- indexes ------------------------------------------------------------------------------
def index_states(conn: psycopg.Connection, table: str) -> dict[str, str]:
    """Every index of ``index_definitions(table)``: ``valid``, ``invalid`` or ``missing``."""
    found = dict(conn.execute(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = to_regclass(%s)", [f"{SCHEMA}.{table}"]).fetchall())
    return {name: ("missing" if name not in found else "valid" if found[name] else "invalid")
            for name, _ in index_definitions(table)}


def index_state(conn: psycopg.Connection, name: str) -> str:
    """One index of the schema by name: ``valid``, ``invalid`` or ``missing``."""
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        [SCHEMA, name]).fetchone()
    return "missing" if row is None else ("valid" if row[0] else "invalid")


def ensure_index(conn: psycopg.Connection, name: str, statement: sql.Composable, current: str | None = None) -> str:
    """Build the index unless it is valid; an INVALID one (left by an interrupted build) is dropped first.

    Returns ``kept``, ``built`` or ``rebuilt``.  Runs in the caller's transaction.
    """
    current = current or index_state(conn, name)
    if current == "valid":
        return "kept"
    if current == "invalid":
        conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(SCHEMA, name)))
    conn.execute(statement)
    return "rebuilt" if current == "invalid" else "built"


def cluster_by_wing(conn: psycopg.Connection, table: str) -> bool:
    """Rewrite the table in (wing, room) order (CLUSTER, one exclusive transaction).

    False when the (wing, room) index is not there to order by.
    """
    index = f"{table}_wing_room"
    if index_state(conn, index) != "valid":
        return False
    conn.execute(sql.SQL("CLUSTER {} USING {}").format(qualified(table), sql.Identifier(index)))
    return True


def put_file(conn: psycopg.Connection, path: str, content: bytes) -> None:
    """One of the palace's small files in ``mempalace.files`` (inserted or replaced)."""
    conn.execute(sql.SQL(
        "INSERT INTO {} (path, content, sha256) VALUES (%s, %s, %s) ON CONFLICT (path) DO UPDATE "
        "SET content = EXCLUDED.content, sha256 = EXCLUDED.sha256").format(qualified("files")),
        [path, content, hashlib.sha256(content).hexdigest()])


# -- rows ---------------------------------------------------------------------------------
def copy_rows_statement(table: str) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT BINARY)").format(
        qualified(table), sql.SQL(", ").join(map(sql.Identifier, ROW_COLUMNS)))


def copy_rows(conn: psycopg.Connection, table: str, rows) -> None:
    """Binary COPY of ``(id, document, metadata jsonb, embedding, seq)`` tuples, in the caller's transaction."""
    with conn.cursor() as cur, cur.copy(copy_rows_statement(table)) as copy:
        copy.set_types(ROW_TYPES)
        for row in rows:
            copy.write_row(row)
