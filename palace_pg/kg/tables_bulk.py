"""The tables store's bulk route (the migration's KG phase) and its full reads (verification).

COPY into temp staging tables, then one INSERT … SELECT … ON CONFLICT (id) DO
NOTHING per table: idempotent by id, so a resumed load finishes the job.  The
counts it returns are the AGE route's (:func:`palace_pg.kg.age_bulk.bulk_load`),
with "placeholder" meaning an endpoint id that has no entity row and that no
stored triple referenced before (where the AGE graph creates a placeholder vertex).
"""

from __future__ import annotations

import logging
from typing import Iterable

import psycopg
from psycopg import sql

from .errors import KgIntegrityError
from ..target_db import schema
from .tables_ddl import (ENTITIES, INDEXES, TRIPLES, columns, ensure_tables, entity_row, index_ddl, stored,
                         tables_exist, triple_row)
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


def bulk_load(conn: psycopg.Connection, entities: Iterable[dict], triples: Iterable[dict]) -> dict:
    """Load sqlite rows (with ``rowid``) into the tables; skips ids already stored.  Never commits.

    A NUL or non-finite float raises :class:`KgValueRejected`, a missing NOT NULL
    column or rowid :class:`KgIntegrityError`, before anything is written.
    Returns the AGE route's counts (see the module docstring).
    """
    ensure_tables(conn)
    staged = {}
    with conn.cursor() as cur:
        for table, rows in (("entities", entities), ("triples", triples)):
            stage = _STAGE[table]
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
            target = ENTITIES if table == "entities" else TRIPLES
            # LIKE copies the columns and their collations, not the constraints or indexes.
            cur.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(stage, target))
            n = 0
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(stage, columns(table))) as cp:
                for values in _checked(table, rows):
                    cp.write_row(values)
                    n += 1
            staged[table] = n
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

        # Endpoints of the new triples with no entity row, that no stored triple referenced yet.
        cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_MISSING))
        cur.execute(sql.SQL(
            "CREATE TEMP TABLE {m} ON COMMIT DROP AS SELECT k FROM ("
            "SELECT subject AS k FROM {st} n WHERE NOT EXISTS (SELECT 1 FROM {t} t WHERE t.id = n.id) UNION "
            "SELECT object FROM {st} n WHERE NOT EXISTS (SELECT 1 FROM {t} t WHERE t.id = n.id)) x "
            "WHERE NOT EXISTS (SELECT 1 FROM {e} e WHERE e.id = x.k) "
            "AND NOT EXISTS (SELECT 1 FROM {t} t WHERE t.subject = x.k) "
            "AND NOT EXISTS (SELECT 1 FROM {t} t WHERE t.object = x.k)").format(m=_MISSING, st=st, t=TRIPLES, e=ENTITIES))
        cur.execute(sql.SQL("SELECT k FROM {} ORDER BY k").format(_MISSING))
        missing = [r[0] for r in cur.fetchall()]
        missing_endpoint = 0
        if missing:
            log.warning("%d triple endpoint(s) have no entity row; stored as they are (e.g. %r)",
                        len(missing), missing[:3])
            cur.execute(sql.SQL(
                "SELECT count(*) FROM {st} n WHERE NOT EXISTS (SELECT 1 FROM {t} t WHERE t.id = n.id) "
                "AND (n.subject IN (SELECT k FROM {m}) OR n.object IN (SELECT k FROM {m}))").format(
                    st=st, t=TRIPLES, m=_MISSING))
            missing_endpoint = cur.fetchone()[0]
        # Into an empty table (the migration's case), building the secondary indexes afterwards
        # (one sort each) costs less than maintaining five btrees row by row (measured ~2 s → ~1 s
        # at 100K triples).  The primary key and rowid stay: ON CONFLICT and integrity need them.
        cur.execute(sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {})").format(TRIPLES))
        rebuild = [ix for ix in INDEXES if ix[1] == "triples"] if cur.fetchone()[0] and staged["triples"] else []
        for name, *_ in rebuild:
            cur.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema.SCHEMA, name)))
        cur.execute(sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM {st} ORDER BY rowid ON CONFLICT (id) DO NOTHING")
                    .format(t=TRIPLES, c=columns("triples"), st=st))
        triples_inserted = cur.rowcount
        if rebuild:
            cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
            for ix in rebuild:
                cur.execute(index_ddl(*ix))
        for stage in (se, st, _MISSING):
            cur.execute(sql.SQL("DROP TABLE {}").format(stage))
        # Fresh statistics, so the planner keeps 1-hop lookups on the (subject, rowid) indexes.
        for table in (ENTITIES, TRIPLES):
            cur.execute(sql.SQL("ANALYZE {}").format(table))
    counts = {
        "entities_inserted": entities_inserted,
        "entities_skipped": staged["entities"] - entities_inserted,
        "placeholders_upgraded": upgraded,
        "triples_inserted": triples_inserted,
        "triples_skipped": staged["triples"] - triples_inserted,
        "placeholders_created": len(missing),
        "triples_missing_endpoint": missing_endpoint,
    }
    log.info("kg bulk_load (tables): %s", counts)
    return counts


def _read(conn: psycopg.Connection, table: str) -> list[dict]:
    if not tables_exist(conn):
        return []
    target, decode = (ENTITIES, entity_row) if table == "entities" else (TRIPLES, triple_row)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM {} ORDER BY id").format(columns(table), target))
        return [decode(r) for r in cur]


def read_entities(conn: psycopg.Connection) -> list[dict]:
    """Every entity row as sqlite returns it, plus ``rowid``; ordered by id (bytewise)."""
    return _read(conn, "entities")


def read_triples(conn: psycopg.Connection) -> list[dict]:
    """Every triple row as sqlite returns it, plus ``rowid``; ordered by id (bytewise)."""
    return _read(conn, "triples")

