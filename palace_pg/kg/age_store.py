"""``AgeStore``: the :class:`~palace_pg.kg.store.KGStore` over the AGE graph (the online store).

The layout and its plumbing are :mod:`palace_pg.kg.age_ddl`'s; the migration's
bulk route is :mod:`palace_pg.kg.age_bulk`.
"""

from __future__ import annotations

from typing import Iterable

import psycopg
from psycopg import sql

from .age_ddl import (EDGE_LABEL, ENTITY_LABEL, GRAPH, _LABELS, _cypher, _dumps, _ensure_age_search_path,
                      _label_table, _params, _prop, _props, _row, _run, ensure_graph)
from .store import ENTITY_COLUMNS, TABLES, TRIPLE_COLUMNS
from .values import check_storable

__all__ = ["AgeStore", "_cypher", "_params"]

# ── the KGStore implementation used by AgeKnowledgeGraph ──────────────────────

# Cypher bodies.  Lookups use `WHERE n.id = $id` (not `{id: $id}`, which AGE turns
# into a containment seq scan) so the expression btrees above are used.
_ENTITY_PROPS = "id: $id, name: $name, type: $type, properties: $properties, created_at: $created_at, rowid: $rowid"
_TRIPLE_PROPS = (
    "id: $id, subject: $subject, predicate: $predicate, object: $object, valid_from: $valid_from, "
    "valid_to: $valid_to, confidence: $confidence, source_closet: $source_closet, source_file: $source_file, "
    "source_drawer_id: $source_drawer_id, adapter_name: $adapter_name, extracted_at: $extracted_at, rowid: $rowid"
)
Q_VERTEX = f"MATCH (n:{ENTITY_LABEL}) WHERE n.id = $id RETURN properties(n)"
Q_CREATE_ENTITY = f"CREATE (n:{ENTITY_LABEL} {{{_ENTITY_PROPS}}}) RETURN [1]"
Q_CREATE_PLACEHOLDER = f"CREATE (n:{ENTITY_LABEL} {{id: $id, placeholder: true}}) RETURN [1]"
Q_TRIPLE = f"MATCH ()-[r:{EDGE_LABEL}]->() WHERE r.id = $id RETURN properties(r)"
_NAMED = "RETURN {t: properties(r), s: a.name, o: b.name}"
Q_OUTGOING = f"MATCH (a:{ENTITY_LABEL})-[r:{EDGE_LABEL}]->(b:{ENTITY_LABEL}) WHERE a.id = $id {_NAMED}"
Q_INCOMING = f"MATCH (a:{ENTITY_LABEL})-[r:{EDGE_LABEL}]->(b:{ENTITY_LABEL}) WHERE b.id = $id {_NAMED}"
Q_PREDICATE = f"MATCH (a:{ENTITY_LABEL})-[r:{EDGE_LABEL}]->(b:{ENTITY_LABEL}) WHERE r.predicate = $predicate {_NAMED}"
Q_ALL_NAMED = (
    f"MATCH (a:{ENTITY_LABEL})-[r:{EDGE_LABEL}]->(b:{ENTITY_LABEL}) "
    "WHERE a.placeholder IS NULL AND b.placeholder IS NULL {_NAMED}"
).replace("{_NAMED}", _NAMED)
Q_OPEN_NAMED = (
    f"MATCH (a:{ENTITY_LABEL})-[r:{EDGE_LABEL}]->(b:{ENTITY_LABEL}) "
    f"WHERE r.valid_to IS NULL AND a.placeholder IS NULL AND b.placeholder IS NULL {_NAMED}"
)
# sqlite compares TEXT bytewise; COLLATE "C" on UTF-8 is the same order whatever the database collation.
_TIMELINE_ORDER = (
    "ORDER BY (x::json -> 't' ->> 'valid_from') COLLATE \"C\" ASC NULLS LAST, "
    "(x::json -> 't' ->> 'id') COLLATE \"C\" ASC LIMIT %s OFFSET %s"
)


def _named(item: dict) -> dict:
    """A triple row with the display names of its ends (None for a placeholder end)."""
    row = _row(item["t"], TRIPLE_COLUMNS)
    row["subject_name"] = item.get("s")
    row["object_name"] = item.get("o")
    return row


def _by_rowid(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (r["rowid"] is None, r["rowid"] or 0))


def _top_rowid(label: str, cast: str) -> sql.Composed:
    """SELECT of ``label``'s largest rowid (``cast`` one of the fixed casts below).

    ORDER BY … DESC LIMIT 1 walks the rowid btree backwards (agtype has no max()).
    """
    return sql.SQL("SELECT {r}" + cast + " FROM {t} WHERE {r} IS NOT NULL ORDER BY {r} DESC LIMIT 1").format(
        r=_prop("rowid"), t=_label_table(label))


def _next_rowid_expr(label: str) -> sql.Composed:
    """SQL for sqlite's next rowid of ``label`` (max + 1; 1 when empty), as a scalar expression."""
    return sql.SQL("(COALESCE(({}), 0) + 1)").format(_top_rowid(label, "::text::bigint"))


def _with_rowid(label: str) -> sql.Composed:
    """The bound property map (JSON text, no rowid) with ``rowid`` set to the label's next rowid."""
    return sql.SQL("(%(props)s::text::ag_catalog.agtype OPERATOR(ag_catalog.||) "
                   "ag_catalog.agtype_build_map('rowid', {}))").format(_next_rowid_expr(label))


# Statements on the hot paths, rendered to text once (psycopg would re-render a Composed on
# every execute).  Identifiers are the module's constants; values are bound parameters.
_GET_ENTITIES_SQL = sql.SQL("SELECT properties::json FROM {} WHERE {} = ANY(%s::text[]::ag_catalog.agtype[])").format(
    _label_table(ENTITY_LABEL), _prop("id")).as_string()
_NEXT_ROWID_SQL = {
    table: _top_rowid(label, "::text").as_string()
    for table, label in _LABELS.items()
}
_REPLACE_PROPERTIES_SQL = {
    label: sql.SQL("UPDATE {} SET properties = %s::text::ag_catalog.agtype WHERE {} = %s::text::ag_catalog.agtype")
    .format(_label_table(label), _prop("id")).as_string()
    for label in (ENTITY_LABEL, EDGE_LABEL)
}
# sqlite's `INSERT OR IGNORE INTO entities (id, name)` for one entity: nothing if a real entity
# has the id; a placeholder with the id becomes the entity in place (its edges stay); else a new
# vertex (the label's id default draws the graphid).  Either write takes rowid = max + 1.
_ADD_ENTITY_SQL = sql.SQL(
    "WITH v AS (SELECT id, {ph} IS NOT NULL AS placeholder FROM {vt} WHERE {idx} = %(key)s::text::ag_catalog.agtype), "
    "upd AS (UPDATE {vt} t SET properties = {props} FROM v WHERE t.id = v.id AND v.placeholder RETURNING 1), "
    "ins AS (INSERT INTO {vt} (properties) SELECT {props} WHERE NOT EXISTS (SELECT 1 FROM v) RETURNING 1) "
    "SELECT (SELECT count(*) FROM upd) + (SELECT count(*) FROM ins)"
).format(vt=_label_table(ENTITY_LABEL), idx=_prop("id"), ph=_prop("placeholder"),
         props=_with_rowid(ENTITY_LABEL)).as_string()

# Open (valid_to NULL) triples with this subject/predicate/object in rowid order: what
# `MATCH (a:Entity)-[r:RELATES]->(b:Entity) WHERE a.id = $s AND b.id = $o AND r.predicate = $p
# AND r.valid_to IS NULL` answers, found through the id btree and the start_id/end_id indexes.
_OPEN_TRIPLES_SQL = sql.SQL(
    "SELECT r.properties::json FROM {et} r "
    "WHERE r.start_id = (SELECT id FROM {vt} WHERE {idx} = %(s)s::text::ag_catalog.agtype) "
    "AND r.end_id = (SELECT id FROM {vt} WHERE {idx} = %(o)s::text::ag_catalog.agtype) "
    "AND {rpred} = %(p)s::text::ag_catalog.agtype AND {rvalid_to} IS NULL ORDER BY {rrowid} ASC NULLS LAST"
).format(vt=_label_table(ENTITY_LABEL), et=_label_table(EDGE_LABEL), idx=_prop("id"),
         rpred=_prop("predicate", "r"), rvalid_to=_prop("valid_to", "r"), rrowid=_prop("rowid", "r")).as_string()

# The edge between the vertices with these ids.  A missing vertex makes start_id/end_id NULL,
# which the label table refuses (NOT NULL): the transaction fails instead of losing the
# triple, and nothing has to be read back, so the insert can travel with the COMMIT.
_EDGE_ENDS = sql.SQL(
    "(SELECT id FROM {vt} WHERE {idx} = %(s)s::text::ag_catalog.agtype), "
    "(SELECT id FROM {vt} WHERE {idx} = %(o)s::text::ag_catalog.agtype)").format(
    vt=_label_table(ENTITY_LABEL), idx=_prop("id"))
_INSERT_EDGE_SQL = {
    # the row's rowid given in its properties
    False: sql.SQL("INSERT INTO {et} (start_id, end_id, properties) VALUES ({ends}, %(props)s::text::ag_catalog.agtype)")
    .format(et=_label_table(EDGE_LABEL), ends=_EDGE_ENDS).as_string(),
    # rowid = max + 1, read under the caller's write lock
    True: sql.SQL("INSERT INTO {et} (start_id, end_id, properties) VALUES ({ends}, {props})")
    .format(et=_label_table(EDGE_LABEL), ends=_EDGE_ENDS, props=_with_rowid(EDGE_LABEL)).as_string(),
}


class AgeStore:
    """:class:`~palace_pg.kg.store.KGStore` over the AGE graph, in the given connection's transaction.

    Reads are Cypher, and so is put_entity's vertex creation.  The add_triple path
    (insert_or_ignore_entities, open_triples, insert_triple) and every change or
    removal of an existing vertex/edge are SQL statements on the label tables that
    find their rows through the id btree (the bulk route's way): AGE 1.7's Cypher
    SET/DELETE locate the tuple with a heap scan (9–17 ms per call at 100K edges,
    measured), edge SET has a history of lost or duplicated updates
    (apache/age#1907, #2296), and a Cypher statement costs ~0.3–0.6 ms of parsing
    (plus CREATE's per-edge entity_exists() check) where the SQL runs in ~0.05–0.2 ms.
    The write statements read nothing back unless they must, so the caller's pipeline
    sends them together.  Values are bound parameters either way.
    """

    name = "age"

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    # lifecycle
    def ensure_schema(self) -> None:
        ensure_graph(self.conn)

    def prepare_session(self) -> None:
        """Call once per connection before the Cypher methods (ag_catalog on the search_path)."""
        _ensure_age_search_path(self.conn)

    def lock_writes(self) -> None:
        # One writer at a time, like sqlite: makes "check open triple, then insert" and
        # rowid = max + 1 safe between processes sharing the graph.
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"palace_pg.kg:{GRAPH}"])

    # entities
    def _vertex(self, entity_id: str) -> dict | None:
        found = _run(self.conn, Q_VERTEX, {"id": entity_id})
        return found[0] if found else None

    def get_entities(self, ids: Iterable[str]) -> dict[str, dict]:
        keys = list(dict.fromkeys(ids))
        if not keys:
            return {}
        with self.conn.cursor() as cur:
            self._send_get_entities(cur, keys)
            return self._entities_from(cur)

    def _send_get_entities(self, cur: psycopg.Cursor, keys: list[str]) -> None:
        # One index probe for all ids (= ANY on the id btree).
        cur.execute(_GET_ENTITIES_SQL, [[_params(k) for k in keys]])

    @staticmethod
    def _entities_from(cur: psycopg.Cursor) -> dict[str, dict]:
        found = [r[0] for r in cur.fetchall()]
        return {p["id"]: _row(p, ENTITY_COLUMNS) for p in found if not p.get("placeholder")}

    def put_entity(self, row: dict) -> None:
        check_storable("entities", row)
        values = {c: row.get(c) for c in ENTITY_COLUMNS} | {"rowid": row.get("rowid")}
        if self._vertex(row["id"]) is None:
            _run(self.conn, Q_CREATE_ENTITY, values)
        else:
            # In place, so the entity's edges stay attached (sqlite's REPLACE keeps them by id);
            # this also turns a placeholder into the entity.
            self._replace_properties(ENTITY_LABEL, row["id"], _props(values, ENTITY_COLUMNS))

    def _replace_properties(self, label: str, key: str, props: dict) -> int:
        with self.conn.cursor() as cur:
            cur.execute(_REPLACE_PROPERTIES_SQL[label], [_params(props), _params(key)])
            return cur.rowcount

    def insert_or_ignore_entities(self, rows: list[dict]) -> None:
        # One statement per row, nothing read back: in pipeline mode they wait for nothing.
        for row in rows:
            check_storable("entities", row)
        for row in rows:
            self.conn.execute(_ADD_ENTITY_SQL, {"key": _dumps(row["id"]), "props": _dumps(_props(row, ENTITY_COLUMNS))},
                              prepare=True)

    def ensure_endpoints(self, ids: Iterable[str]) -> int:
        created = 0
        for eid in dict.fromkeys(ids):
            if self._vertex(eid) is None:
                _run(self.conn, Q_CREATE_PLACEHOLDER, {"id": eid})
                created += 1
        return created

    def entity_candidates(self, entity_id: str, name: str, name_patterns: list[str],
                          id_patterns: list[str]) -> list[dict]:
        # A superset of sqlite's LIKE matches (ILIKE folds more than ASCII); the caller
        # applies sqlite's exact rule.  No index serves LIKE '% x': a scan, on the miss path only.
        with self.conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "SELECT p FROM (SELECT properties::json AS p FROM {vt}) v "
                    "WHERE p ->> 'placeholder' IS NULL AND (p ->> 'id' = %s OR p ->> 'name' = %s "
                    "OR p ->> 'name' ILIKE ANY(%s) OR p ->> 'id' ILIKE ANY(%s))"
                ).format(vt=_label_table(ENTITY_LABEL)),
                [entity_id, name, name_patterns, id_patterns],
            )
            return _by_rowid([_row(r[0], ENTITY_COLUMNS) for r in cur.fetchall()])

    # triples
    def open_triples(self, subject: str, predicate: str, obj: str) -> list[dict]:
        # SQL rather than Cypher: the same rows without a Cypher parse (~0.3 ms) on every write.
        with self.conn.cursor() as cur:
            cur.execute(_OPEN_TRIPLES_SQL, {"s": _params(subject), "o": _params(obj), "p": _params(predicate)},
                        prepare=True)
            return _by_rowid([_row(r[0], TRIPLE_COLUMNS) for r in cur.fetchall()])

    def get_triple(self, triple_id: str) -> dict | None:
        found = _run(self.conn, Q_TRIPLE, {"id": triple_id})
        return _row(found[0], TRIPLE_COLUMNS) if found else None

    def put_triple(self, row: dict) -> None:
        # Replace semantics: the stored edge may point elsewhere, so delete and recreate.
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("DELETE FROM {} WHERE {} = %s::text::ag_catalog.agtype").format(
                _label_table(EDGE_LABEL), _prop("id")), [_params(row["id"])])
        self.ensure_endpoints([row["subject"], row["object"]])
        self.insert_triple(row)

    def insert_triple(self, row: dict) -> None:
        check_storable("triples", row)
        # SQL, like the bulk route: the edge's endpoints come from the id btree, and no Cypher
        # CREATE runs (its parse/plan and per-edge entity_exists() check cost more than the
        # insert).  Nothing is read back, so in pipeline mode this waits for nothing.
        self.conn.execute(
            _INSERT_EDGE_SQL[row.get("rowid") is None],
            {"s": _dumps(row["subject"]), "o": _dumps(row["object"]), "props": _dumps(_props(row, TRIPLE_COLUMNS))},
            prepare=True,
        )

    def set_valid_to(self, triple_ids: list[str], valid_to: str) -> None:
        for tid in triple_ids:
            current = self.get_triple(tid)
            if current is None:
                continue
            props = _props({**current, "valid_to": valid_to}, TRIPLE_COLUMNS)
            self._replace_properties(EDGE_LABEL, tid, props)

    def triples_of(self, entity_id: str, direction: str) -> list[dict]:
        query = {"outgoing": Q_OUTGOING, "incoming": Q_INCOMING}[direction]
        return _by_rowid([_named(x) for x in _run(self.conn, query, {"id": entity_id})])

    def triples_with_predicate(self, predicate: str) -> list[dict]:
        return _by_rowid([_named(x) for x in _run(self.conn, Q_PREDICATE, {"predicate": predicate})])

    def timeline(self, entity_id: str | None, limit: int, offset: int) -> list[dict]:
        if entity_id is None:
            return [_named(x) for x in _run(self.conn, Q_ALL_NAMED, {}, tail=_TIMELINE_ORDER, extra=(limit, offset))]
        touching = {r["id"]: r for d in ("outgoing", "incoming") for r in self.triples_of(entity_id, d)}
        named = [r for r in touching.values() if r["subject_name"] is not None and r["object_name"] is not None]
        named.sort(key=lambda r: (r["valid_from"] is None, r["valid_from"] or "", r["id"]))
        return named[offset:offset + limit]

    def open_named_triples(self) -> list[dict]:
        return _by_rowid([_named(x) for x in _run(self.conn, Q_OPEN_NAMED, {})])

    def open_predicate_counts(self) -> dict[str, int]:
        rows = self.conn.execute(sql.SQL(
            "SELECT {}::text, count(*) FROM {} WHERE {} IS NULL GROUP BY 1").format(
                _prop("predicate"), _label_table(EDGE_LABEL), _prop("valid_to"))).fetchall()
        return {str(p): int(n) for p, n in rows}

    def count_triples(self, entity_id: str | None = None) -> int:
        if entity_id is None:
            return self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_label_table(EDGE_LABEL))).fetchone()[0]
        return len({r["id"] for d in ("outgoing", "incoming") for r in self.triples_of(entity_id, d)})

    def stats(self) -> dict:
        vt, et = _label_table(ENTITY_LABEL), _label_table(EDGE_LABEL)
        entities = self.conn.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(vt, _prop("placeholder"))).fetchone()[0]
        triples, current = self.conn.execute(
            sql.SQL("SELECT count(*), count(*) FILTER (WHERE {} IS NULL) FROM {}").format(_prop("valid_to"), et)
        ).fetchone()
        # agtype string → text is the raw string; sorted here in code-point (= sqlite's bytewise) order.
        predicates = sorted(r[0] for r in self.conn.execute(
            sql.SQL("SELECT DISTINCT {}::text FROM {}").format(_prop("predicate"), et)))
        return {"entities": entities, "triples": triples, "current_facts": current, "predicates": predicates}

    # replication / verification
    def next_rowid(self, table: str) -> int:
        top = self.conn.execute(_NEXT_ROWID_SQL[table]).fetchone()
        return int(top[0]) + 1 if top else 1

    def rows(self, table: str, after_rowid: int = 0, limit: int | None = None) -> list[dict]:
        label = _LABELS[table]
        query = sql.SQL("SELECT properties::json FROM {} WHERE {} > %s::text::ag_catalog.agtype ORDER BY {} {}").format(
            _label_table(label), _prop("rowid"), _prop("rowid"),
            sql.SQL("LIMIT %s") if limit is not None else sql.SQL(""))
        params = [str(int(after_rowid))] + ([int(limit)] if limit is not None else [])
        with self.conn.cursor() as cur:
            cur.execute(query, params)
            return [_row(r[0], TABLES[table]) for r in cur.fetchall()]
