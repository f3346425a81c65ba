"""The tables store's bulk route (the migration's KG phase) and its full reads (verification).

Into empty tables (the migration's case): COPY straight into them, with the
secondary indexes built afterwards.  Otherwise: COPY into temp staging tables, then
one INSERT … SELECT … ON CONFLICT (id) DO NOTHING per table: idempotent by id, so a
resumed load finishes the job.  Bad rows are refused before the COPY ends, and the
whole load is the caller's one transaction, so nothing half-loaded ever commits.  The
counts it returns are the AGE route's (:func:`palace_pg.kg.age_bulk.bulk_load`),
with "placeholder" meaning an endpoint id that has no entity row and that no
stored triple referenced before (where the AGE graph creates a placeholder vertex).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterable

import psycopg
from psycopg import sql

from .errors import KgIntegrityError
from ..target_db import schema
from .tables_ddl import (ENTITIES, INDEXES, TRIPLES, columns, ensure_tables, entity_row, index_ddl, stored,
                         tables_are_empty, tables_exist, triple_row)
from .values import check_storable

log = logging.getLogger(__name__)

_STAGE = {"entities": sql.Identifier("_palace_pg_kgt_stage_entities"),
          "triples": sql.Identifier("_palace_pg_kgt_stage_triples")}
_MISSING = sql.Identifier("_palace_pg_kgt_missing")
_NOT_NULL = {"entities": ("id", "name", "rowid"), "triples": ("id", "subject", "predicate", "object", "rowid")}


def _checked(table: str, rows: Iterable[dict]) -> Iterable[tuple]:
    for row in rows:
        absent = [c for c in _NOT_NULL[table] if row.get(c) is None]
        if absent:
            raise KgIntegrityError(f"{table} row {row.get('id')!r} has no {', '.join(absent)} "
                                   "(sqlite declares them NOT NULL; read rowid with the row)")
        check_storable(table, row)
        yield stored(table, row)


def _copy(cur: psycopg.Cursor, table: str, rows: Iterable[dict], into: sql.Composable) -> int:
    """COPY the checked rows of ``table`` into ``into`` (the table or its staging copy); returns how many."""
    n = 0
    with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(into, columns(table))) as cp:
        for values in _checked(table, rows):
            cp.write_row(values)
            n += 1
    return n


@contextmanager
def _indexes_built_after(cur: psycopg.Cursor, tables: tuple[str, ...]):
    """Drop the secondary indexes of ``tables`` (empty ones), and build them after the block.

    Building a btree from the loaded rows (one sort) costs less than maintaining it row by row
    (measured at 100K triples: the triples INSERT 2.1 s → 0.4 s + 0.35 s of builds).  The
    primary keys and the rowid constraints stay: ON CONFLICT and integrity need them.
    """
    rebuild = [ix for ix in INDEXES if ix[1] in tables]
    for name, *_ in rebuild:
        cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema.SCHEMA, name)))
    yield
    if rebuild:
        cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
    for ix in rebuild:
        cur.execute(index_ddl(*ix))


def _missing_endpoints(cur: psycopg.Cursor, new: sql.Composable, before: sql.Composable) -> tuple[list[str], int]:
    """(endpoint ids of the ``new`` triples with no entity row that no triple in ``before`` referenced,
    how many of the new triples touch one)."""
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_MISSING))
    cur.execute(sql.SQL(
        "CREATE TEMP TABLE {m} ON COMMIT DROP AS SELECT k FROM (SELECT subject AS k FROM {new} UNION "
        "SELECT object FROM {new}) x WHERE NOT EXISTS (SELECT 1 FROM {e} e WHERE e.id = x.k) "
        "AND NOT EXISTS (SELECT 1 FROM {b} t WHERE t.subject = x.k) "
        "AND NOT EXISTS (SELECT 1 FROM {b} t WHERE t.object = x.k)").format(m=_MISSING, new=new, e=ENTITIES, b=before))
    cur.execute(sql.SQL("SELECT k FROM {} ORDER BY k").format(_MISSING))
    missing = [r[0] for r in cur.fetchall()]
    touching = 0
    if missing:
        log.warning("%d triple endpoint(s) have no entity row; stored as they are (e.g. %r)",
                    len(missing), missing[:3])
        cur.execute(sql.SQL("SELECT count(*) FROM {new} n WHERE n.subject IN (SELECT k FROM {m}) "
                            "OR n.object IN (SELECT k FROM {m})").format(new=new, m=_MISSING))
        touching = cur.fetchone()[0]
    cur.execute(sql.SQL("DROP TABLE {}").format(_MISSING))
    return missing, touching


def _load_empty(cur: psycopg.Cursor, entities: Iterable[dict], triples: Iterable[dict]) -> dict:
    """Both tables empty (the migration's case): COPY straight into them, no staging."""
    with _indexes_built_after(cur, ("entities", "triples")):
        n_entities = _copy(cur, "entities", entities, ENTITIES)
        n_triples = _copy(cur, "triples", triples, TRIPLES)
    # nothing was stored before: an empty relation of the triples' shape stands for "before"
    missing, touching = _missing_endpoints(
        cur, TRIPLES, sql.SQL("(SELECT subject, object FROM {} WHERE false)").format(TRIPLES))
    return {"entities_inserted": n_entities, "entities_skipped": 0, "placeholders_upgraded": 0,
            "triples_inserted": n_triples, "triples_skipped": 0, "placeholders_created": len(missing),
            "triples_missing_endpoint": touching}


def _load_merging(cur: psycopg.Cursor, entities: Iterable[dict], triples: Iterable[dict]) -> dict:
    """Some rows stored already (a resumed load, a second call): stage, then insert the new ids."""
    staged = {}
    for table, rows in (("entities", entities), ("triples", triples)):
        stage = _STAGE[table]
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
        # LIKE copies the columns and their collations, not the constraints or indexes.
        cur.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(
            stage, ENTITIES if table == "entities" else TRIPLES))
        staged[table] = _copy(cur, table, rows, stage)
    se, st = _STAGE["entities"], _STAGE["triples"]

    # Entities whose id stored triples already point at (the AGE graph's placeholders).
    cur.execute(sql.SQL(
        "SELECT count(*) FROM {se} s WHERE NOT EXISTS (SELECT 1 FROM {e} e WHERE e.id = s.id) "
        "AND (EXISTS (SELECT 1 FROM {t} t WHERE t.subject = s.id) OR EXISTS (SELECT 1 FROM {t} t WHERE t.object = s.id))"
    ).format(se=se, e=ENTITIES, t=TRIPLES))
    upgraded = cur.fetchone()[0]
    cur.execute(sql.SQL("INSERT INTO {e} ({c}) SELECT {c} FROM {se} ORDER BY rowid ON CONFLICT (id) DO NOTHING")
                .format(e=ENTITIES, c=columns("entities"), se=se))
    entities_inserted = cur.rowcount

    # The staged triples whose id is new, and what they point at.
    cur.execute(sql.SQL("DELETE FROM {st} n WHERE EXISTS (SELECT 1 FROM {t} t WHERE t.id = n.id)").format(
        st=st, t=TRIPLES))
    missing, touching = _missing_endpoints(cur, st, TRIPLES)
    cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(TRIPLES))
    first_triples = cur.fetchone()[0] and staged["triples"] > 0  # e.g. entities came in an earlier call
    with _indexes_built_after(cur, ("triples",) if first_triples else ()):
        cur.execute(sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {st} ORDER BY rowid ON CONFLICT (id) DO NOTHING")
                    .format(t=TRIPLES, c=columns("triples"), st=st))
        triples_inserted = cur.rowcount
    for stage in (se, st):
        cur.execute(sql.SQL("DROP TABLE {}").format(stage))
    return {"entities_inserted": entities_inserted, "entities_skipped": staged["entities"] - entities_inserted,
            "placeholders_upgraded": upgraded, "triples_inserted": triples_inserted,
            "triples_skipped": staged["triples"] - triples_inserted, "placeholders_created": len(missing),
            "triples_missing_endpoint": touching}


def bulk_load(conn: psycopg.Connection, entities: Iterable[dict], triples: Iterable[dict]) -> dict:
    """Load sqlite rows (with ``rowid``) into the tables; skips ids already stored.  Never commits.

    A NUL or non-finite float raises :class:`KgValueRejected`, a missing NOT NULL
    column or rowid :class:`KgIntegrityError`, before anything is written.
    Returns the AGE route's counts (see the module docstring).
    """
    ensure_tables(conn)
    empty = tables_are_empty(conn)
    with conn.cursor() as cur:
        counts = (_load_empty if empty else _load_merging)(cur, entities, triples)
        # Fresh statistics, so the planner keeps 1-hop lookups on the (subject, rowid) indexes.
        for table in (ENTITIES, TRIPLES):
            cur.execute(sql.SQL("ANALYZE {}").format(table))
    log.info("kg bulk_load (tables%s): %s", ", into empty tables" if empty else "", counts)
    return counts


def _read(conn: psycopg.Connection, table: str, ids: list[str] | None = None) -> list[dict]:
    if not tables_exist(conn):
        return []
    target, decode = (ENTITIES, entity_row) if table == "entities" else (TRIPLES, triple_row)
    where, args = (sql.SQL(" WHERE id = ANY(%s)"), [list(ids)]) if ids is not None else (sql.SQL(""), [])
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {}").format(columns(table), target) + where + sql.SQL(" ORDER BY id"),
                    args)
        return [decode(r) for r in cur]


def read_entities(conn: psycopg.Connection, ids: list[str] | None = None) -> list[dict]:
    """Every entity row (or those of ``ids``) as sqlite returns it, plus ``rowid``; ordered by id (bytewise)."""
    return _read(conn, "entities", ids)


def read_triples(conn: psycopg.Connection, ids: list[str] | None = None) -> list[dict]:
    """Every triple row (or those of ``ids``) as sqlite returns it, plus ``rowid``; ordered by id (bytewise)."""
    return _read(conn, "triples", ids)


def count_rows(conn: psycopg.Connection) -> tuple[int, int]:
    """(entities, triples) the tables hold."""
    if not tables_exist(conn):
        return 0, 0
    return tuple(conn.execute(sql.SQL("SELECT (SELECT count(*) FROM {}), (SELECT count(*) FROM {})").format(
        ENTITIES, TRIPLES)).fetchone())
