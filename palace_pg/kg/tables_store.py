"""``TablesStore``: the :class:`~palace_pg.kg.store.KGStore` over plain tables (no Apache AGE needed).

The layout is :mod:`palace_pg.kg.tables_ddl`'s; the migration's bulk route is
:mod:`palace_pg.kg.tables_bulk`.  Every statement is SQL with bound values,
rendered to text once; the hot ones are prepared.  Writes read nothing back, so
the knowledge-graph class's pipeline sends them together with the COMMIT.
"""

from __future__ import annotations

from typing import Iterable

import psycopg
from psycopg import sql

from ..target_db import schema
from .tables_ddl import (ENTITIES, STORED, TABLE_IDS, TRIPLES, columns, ensure_tables, entity_row, no_nul, stored,
                         triple_row)
from .values import check_storable

_NEXT = {t: sql.SQL("(SELECT COALESCE(max(rowid), 0) + 1 FROM {})").format(TABLE_IDS[t]) for t in TABLE_IDS}
_ENTITY_VALUES = sql.SQL(", ").join(sql.Placeholder() for _ in STORED["entities"][:-1])
_TRIPLE_VALUES = sql.SQL(", ").join(sql.Placeholder() for _ in STORED["triples"][:-1])


def _text(query: sql.Composable) -> str:
    return query.as_string()


_GET_ENTITIES = _text(sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(columns("entities"), ENTITIES))
# sqlite's INSERT OR IGNORE INTO entities: nothing when the id exists, else rowid = max + 1.
_INSERT_OR_IGNORE_ENTITY = _text(sql.SQL(
    "INSERT INTO {t} ({c}) VALUES ({v}, {next}) ON CONFLICT (id) DO NOTHING").format(
    t=ENTITIES, c=columns("entities"), v=_ENTITY_VALUES, next=_NEXT["entities"]))
# sqlite's INSERT OR REPLACE: the row takes the new values and rowid (max + 1 when none is given).
_UPSERT = {
    table: _text(sql.SQL(
        "INSERT INTO {t} ({c}) VALUES ({v}, COALESCE(%s, {next})) ON CONFLICT (id) DO UPDATE SET {set}").format(
        t=TABLE_IDS[table], c=columns(table), v=values, next=_NEXT[table],
        set=sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c))
                               for c in STORED[table] if c != "id")))
    for table, values in (("entities", _ENTITY_VALUES), ("triples", _TRIPLE_VALUES))
}
_INSERT_TRIPLE = _text(sql.SQL("INSERT INTO {t} ({c}) VALUES ({v}, COALESCE(%s, {next}))").format(
    t=TRIPLES, c=columns("triples"), v=_TRIPLE_VALUES, next=_NEXT["triples"]))
_OPEN_TRIPLES = _text(sql.SQL(
    "SELECT {} FROM {} WHERE subject = %s AND predicate = %s AND object = %s AND valid_to IS NULL "
    "ORDER BY rowid").format(columns("triples"), TRIPLES))
_GET_TRIPLE = _text(sql.SQL("SELECT {} FROM {} WHERE id = %s").format(columns("triples"), TRIPLES))
_SET_VALID_TO = _text(sql.SQL("UPDATE {} SET valid_to = %s WHERE id = ANY(%s)").format(TRIPLES))
_MISSING_ENTITIES = _text(sql.SQL(
    "SELECT count(*) FROM unnest(%s::text[]) k WHERE NOT EXISTS (SELECT 1 FROM {} e WHERE e.id = k)").format(ENTITIES))


def _named(join: str, where: str, tail: str = "") -> str:
    """Triples with their ends' names: LEFT joins keep triples whose end has no entity (name None)."""
    return _text(sql.SQL(
        "SELECT {c}, s.name, o.name FROM {t} t {j} JOIN {e} s ON s.id = t.subject {j} JOIN {e} o ON o.id = t.object "
        "{where} {tail}").format(c=columns("triples", "t"), t=TRIPLES, e=ENTITIES, j=sql.SQL(join),
                                 where=sql.SQL(where), tail=sql.SQL(tail)))


_OUTGOING = _named("LEFT", "WHERE t.subject = %s", "ORDER BY t.rowid")
_INCOMING = _named("LEFT", "WHERE t.object = %s", "ORDER BY t.rowid")
_PREDICATE = _named("LEFT", "WHERE t.predicate = %s", "ORDER BY t.rowid")
# sqlite's timeline: inner joins, valid_from ASC NULLS LAST then id, bytewise (the columns are COLLATE "C").
_TIMELINE_ALL = _named("", "", "ORDER BY t.valid_from ASC NULLS LAST, t.id LIMIT %s OFFSET %s")
_TIMELINE_ONE = _named("", "WHERE (t.subject = %s OR t.object = %s)",
                       "ORDER BY t.valid_from ASC NULLS LAST, t.id LIMIT %s OFFSET %s")
_OPEN_NAMED = _named("", "WHERE t.valid_to IS NULL", "ORDER BY t.rowid")
_COUNT_ALL = _text(sql.SQL("SELECT count(*) FROM {}").format(TRIPLES))
_COUNT_ONE = _text(sql.SQL("SELECT count(*) FROM {} WHERE subject = %s OR object = %s").format(TRIPLES))
_OPEN_COUNTS = _text(sql.SQL("SELECT predicate, count(*) FROM {} WHERE valid_to IS NULL GROUP BY 1").format(TRIPLES))
_STATS = _text(sql.SQL(
    "SELECT (SELECT count(*) FROM {e}), count(*), count(*) FILTER (WHERE valid_to IS NULL), "
    "COALESCE(array_agg(DISTINCT predicate), '{{}}') FROM {t}").format(e=ENTITIES, t=TRIPLES))
_CANDIDATES = _text(sql.SQL(
    "SELECT {} FROM {} WHERE id = %s OR name = %s OR name ILIKE ANY(%s) OR id ILIKE ANY(%s) ORDER BY rowid").format(
    columns("entities"), ENTITIES))
_ROWS = {t: _text(sql.SQL("SELECT {} FROM {} WHERE rowid > %s ORDER BY rowid LIMIT %s").format(columns(t), TABLE_IDS[t]))
         for t in TABLE_IDS}
_TOP_ROWID = {t: _text(sql.SQL("SELECT max(rowid) FROM {}").format(TABLE_IDS[t])) for t in TABLE_IDS}


def _with_names(values) -> dict:
    row = triple_row(values[:-2])
    row["subject_name"], row["object_name"] = values[-2], values[-1]
    return row


class TablesStore:
    """:class:`~palace_pg.kg.store.KGStore` over ``mempalace.kg_entities``/``kg_triples``, in the caller's transaction."""

    name = "tables"

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def _all(self, query: str, params, *, prepare: bool = True) -> list[tuple]:
        with self.conn.cursor() as cur:
            cur.execute(query, params, prepare=prepare)
            return cur.fetchall()

    # lifecycle
    def ensure_schema(self) -> None:
        ensure_tables(self.conn)

    def prepare_session(self) -> None:
        """Nothing to prepare: plain SQL needs no search_path."""

    def lock_writes(self) -> None:
        # The same key as the AGE store: writers (and a conversion) serialise whichever store is in use.
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"palace_pg.kg:{schema.GRAPH}"])

    # entities
    def get_entities(self, ids: Iterable[str]) -> dict[str, dict]:
        keys = [no_nul(k) for k in dict.fromkeys(ids)]
        if not keys:
            return {}
        return {r[0]: entity_row(r) for r in self._all(_GET_ENTITIES, [keys])}

    def put_entity(self, row: dict) -> None:
        check_storable("entities", row)
        self.conn.execute(_UPSERT["entities"], stored("entities", row), prepare=True)

    def insert_or_ignore_entities(self, rows: list[dict]) -> None:
        for row in rows:
            check_storable("entities", row)
        for row in rows:  # in order, each reading the rowid the previous one wrote; nothing read back
            self.conn.execute(_INSERT_OR_IGNORE_ENTITY, stored("entities", row)[:-1], prepare=True)

    def ensure_endpoints(self, ids: Iterable[str]) -> int:
        # No foreign keys: an edge needs no node.  Returns how many ends have no entity row
        # (the AGE store creates a placeholder for each).
        keys = [no_nul(k) for k in dict.fromkeys(ids)]
        return int(self._all(_MISSING_ENTITIES, [keys])[0][0]) if keys else 0

    def entity_candidates(self, entity_id: str, name: str, name_patterns: list[str],
                          id_patterns: list[str]) -> list[dict]:
        # ILIKE under COLLATE "C" folds ASCII only, like sqlite's LIKE; candidates.pick settles the answer.
        return [entity_row(r) for r in self._all(_CANDIDATES, [no_nul(entity_id), no_nul(name), name_patterns,
                                                              id_patterns], prepare=False)]

    # triples
    def open_triples(self, subject: str, predicate: str, obj: str) -> list[dict]:
        return [triple_row(r) for r in self._all(_OPEN_TRIPLES, [no_nul(subject), no_nul(predicate), no_nul(obj)])]

    def get_triple(self, triple_id: str) -> dict | None:
        found = self._all(_GET_TRIPLE, [no_nul(triple_id)])
        return triple_row(found[0]) if found else None

    def put_triple(self, row: dict) -> None:
        check_storable("triples", row)
        self.conn.execute(_UPSERT["triples"], stored("triples", row), prepare=True)

    def insert_triple(self, row: dict) -> None:
        check_storable("triples", row)
        self.conn.execute(_INSERT_TRIPLE, stored("triples", row), prepare=True)

    def set_valid_to(self, triple_ids: list[str], valid_to: str) -> None:
        if triple_ids:
            self.conn.execute(_SET_VALID_TO, [no_nul(valid_to), list(triple_ids)], prepare=True)

    def triples_of(self, entity_id: str, direction: str) -> list[dict]:
        query = {"outgoing": _OUTGOING, "incoming": _INCOMING}[direction]
        return [_with_names(r) for r in self._all(query, [no_nul(entity_id)])]

    def triples_with_predicate(self, predicate: str) -> list[dict]:
        return [_with_names(r) for r in self._all(_PREDICATE, [no_nul(predicate)])]

    def timeline(self, entity_id: str | None, limit: int, offset: int) -> list[dict]:
        if entity_id is None:
            rows = self._all(_TIMELINE_ALL, [int(limit), int(offset)])
        else:
            rows = self._all(_TIMELINE_ONE, [no_nul(entity_id), entity_id, int(limit), int(offset)])
        return [_with_names(r) for r in rows]

    def open_named_triples(self) -> list[dict]:
        return [_with_names(r) for r in self._all(_OPEN_NAMED, None, prepare=False)]

    def open_predicate_counts(self) -> dict[str, int]:
        return {p: int(n) for p, n in self._all(_OPEN_COUNTS, None, prepare=False)}

    def count_triples(self, entity_id: str | None = None) -> int:
        if entity_id is None:
            return int(self._all(_COUNT_ALL, None)[0][0])
        return int(self._all(_COUNT_ONE, [no_nul(entity_id), entity_id])[0][0])

    def stats(self) -> dict:
        entities, triples, current, predicates = self._all(_STATS, None, prepare=False)[0]
        # code-point order = sqlite's bytewise order
        return {"entities": entities, "triples": triples, "current_facts": current, "predicates": sorted(predicates)}

    # replication / verification
    def next_rowid(self, table: str) -> int:
        top = self._all(_TOP_ROWID[table], None)[0][0]
        return int(top) + 1 if top is not None else 1

    def rows(self, table: str, after_rowid: int = 0, limit: int | None = None) -> list[dict]:
        decode = entity_row if table == "entities" else triple_row
        # LIMIT NULL is no limit
        return [decode(r) for r in self._all(_ROWS[table], [int(after_rowid), None if limit is None else int(limit)])]
