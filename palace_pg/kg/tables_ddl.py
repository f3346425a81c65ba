"""The knowledge graph on plain tables: layout, DDL and the row encoding the tables store shares.

For PostgreSQL services without Apache AGE (RDS, Cloud SQL, Supabase, Neon).
Two tables in schema ``mempalace`` (``palace_pg.target_db.schema.KG_TABLES``)::

    kg_entities (id PK, name, type, properties, created_at, rowid UNIQUE)
    kg_triples  (id PK, subject, predicate, object, valid_from, valid_to,
                 confidence, confidence_text, source_closet, source_file,
                 source_drawer_id, adapter_name, extracted_at, rowid UNIQUE)

Each column holds what sqlite holds.  Text columns are ``COLLATE "C"``: sqlite
compares TEXT bytewise, and "C" on UTF-8 is the same order, so equality, the
timeline's ORDER BY and the indexes agree with sqlite whatever the database's
collation.  ``confidence`` is REAL in sqlite, where a non-numeric text stays
text: such a value goes to ``confidence_text`` (at most one of the two is set).
``rowid`` keeps sqlite's rowid (mempalace's unordered answers come in rowid order).

No foreign keys, as in sqlite: a triple whose subject or object has no entity
row is stored as it is (the AGE store needs a placeholder vertex there).  Such
an endpoint is not an entity, and the queries that join names skip the triple,
exactly as sqlite's inner JOIN does.

Indexes serve the online queries: ``(subject, rowid)`` and ``(object, rowid)``
answer 1-hop lookups already in rowid order, ``(predicate, rowid)`` the
relationship query, a partial ``(subject, predicate, object, rowid) WHERE valid_to
IS NULL`` the open-fact check of every write, ``(valid_from, id)`` the timeline.

Security: table names reach SQL through ``sql.Identifier`` (the constants of
:mod:`palace_pg.target_db.schema`); values are always bound parameters.
"""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from ..target_db import schema
from .errors import KgValueRejected
from .store import ENTITY_COLUMNS, TRIPLE_COLUMNS

log = logging.getLogger(__name__)

ENTITIES = schema.qualified(schema.KG_TABLES["entities"])
TRIPLES = schema.qualified(schema.KG_TABLES["triples"])
TABLE_IDS = {"entities": ENTITIES, "triples": TRIPLES}

# Stored column order per table (confidence_text follows confidence), then rowid.
STORED = {
    "entities": (*ENTITY_COLUMNS, "rowid"),
    "triples": (*TRIPLE_COLUMNS[:7], "confidence_text", *TRIPLE_COLUMNS[7:], "rowid"),
}

_C = 'text COLLATE "C"'
DDL = [
    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema.SCHEMA)),
    sql.SQL(f"""CREATE TABLE IF NOT EXISTS {{}} (
        id {_C} PRIMARY KEY,
        name {_C} NOT NULL,
        type {_C},
        properties {_C},
        created_at {_C},
        rowid bigint NOT NULL UNIQUE)""").format(ENTITIES),
    sql.SQL(f"""CREATE TABLE IF NOT EXISTS {{}} (
        id {_C} PRIMARY KEY,
        subject {_C} NOT NULL,
        predicate {_C} NOT NULL,
        object {_C} NOT NULL,
        valid_from {_C},
        valid_to {_C},
        confidence double precision,
        confidence_text {_C},  -- a non-numeric text sqlite kept in its REAL column
        source_closet {_C},
        source_file {_C},
        source_drawer_id {_C},
        adapter_name {_C},
        extracted_at {_C},
        rowid bigint NOT NULL UNIQUE,
        CHECK (confidence IS NULL OR confidence_text IS NULL))""").format(TRIPLES),
]
# (index name, table, column list SQL, WHERE clause or "")
INDEXES = [
    ("kg_entities_name", "entities", "name", ""),
    ("kg_triples_subject", "triples", "subject, rowid", ""),
    ("kg_triples_object", "triples", "object, rowid", ""),
    ("kg_triples_predicate", "triples", "predicate, rowid", ""),
    ("kg_triples_open", "triples", "subject, predicate, object, rowid", "WHERE valid_to IS NULL"),
    ("kg_triples_timeline", "triples", "valid_from, id", ""),
]


def index_ddl(name: str, table: str, columns: str, where: str) -> sql.Composed:
    # columns/where are this module's constants (above), never data
    return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}) {}").format(
        sql.Identifier(name), TABLE_IDS[table], sql.SQL(columns), sql.SQL(where))


def tables_exist(conn: psycopg.Connection) -> bool:
    names = [f"{schema.SCHEMA}.{t}" for t in schema.KG_TABLES.values()]
    return all(r[0] for r in conn.execute("SELECT to_regclass(x) IS NOT NULL FROM unnest(%s::text[]) x", [names]))


def _missing_indexes(conn: psycopg.Connection) -> list[tuple[str, str, str, str]]:
    present = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", [schema.SCHEMA])}
    return [ix for ix in INDEXES if ix[0] not in present]


def ensure_tables(conn: psycopg.Connection) -> None:
    """Create the two tables and their indexes if missing.  Idempotent, never commits."""
    if tables_exist(conn) and not _missing_indexes(conn):
        return  # the common case: no DDL, no locks
    # Two processes opening a fresh database must not both create the tables.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"palace_pg.kg.ddl:{schema.SCHEMA}"])
    for stmt in DDL:
        conn.execute(stmt)
    for ix in _missing_indexes(conn):
        log.info("creating index %s", ix[0])
        conn.execute(index_ddl(*ix))


def tables_are_empty(conn: psycopg.Connection) -> bool:
    return not any(conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(t)).fetchone()[0]
                   for t in (ENTITIES, TRIPLES))


def drop_tables(conn: psycopg.Connection) -> None:
    for table in (TRIPLES, ENTITIES):
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))


# ── rows ⇄ stored tuples ──────────────────────────────────────────────────────


def no_nul(value: str) -> str:
    """A bound lookup value; text cannot hold NUL (psycopg would fail with a bare DataError)."""
    if isinstance(value, str) and "\x00" in value:
        raise KgValueRejected("a value contains a NUL character, which PostgreSQL text cannot hold",
                              "remove the NUL (\\x00); nothing was written")
    return value


def stored(table: str, row: dict, rowid=None) -> tuple:
    """The stored tuple for a sqlite row (``rowid`` overrides the row's)."""
    if table == "entities":
        return (*(row.get(c) for c in ENTITY_COLUMNS), rowid if rowid is not None else row.get("rowid"))
    conf = row.get("confidence")
    number, text = (None, conf) if isinstance(conf, str) else (conf, None)
    return (*(row.get(c) for c in TRIPLE_COLUMNS[:6]), number, text,
            *(row.get(c) for c in TRIPLE_COLUMNS[7:]), rowid if rowid is not None else row.get("rowid"))


def entity_row(values) -> dict:
    """A stored entity tuple (STORED order) → the sqlite row dict with ``rowid``."""
    return dict(zip(STORED["entities"], values))


def triple_row(values) -> dict:
    """A stored triple tuple (STORED order, maybe followed by the two names) → the sqlite row dict."""
    row = dict(zip(STORED["triples"], values))
    text = row.pop("confidence_text")
    if text is not None:
        row["confidence"] = text
    return row


def columns(table: str, alias: str | None = None) -> sql.Composed:
    """The stored column list, optionally qualified by ``alias``."""
    return sql.SQL(", ").join(sql.Identifier(alias, c) if alias else sql.Identifier(c) for c in STORED[table])
