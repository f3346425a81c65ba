"""The knowledge graph in Apache AGE: one vertex label for entities, one edge label for triples.

Layout (graph ``palace_pg.target_db.schema.GRAPH``)::

    (:Entity {id, name, type, properties, created_at, rowid})
    (:Entity)-[:RELATES {id, subject, predicate, object, valid_from, valid_to, confidence,
                         source_closet, source_file, source_drawer_id, adapter_name,
                         extracted_at, rowid}]->(:Entity)

Every sqlite column is a property of the same name, holding the value sqlite
holds (``properties`` stays the JSON *text* sqlite stores).  A NULL column is an
absent property (AGE drops null properties on CREATE), which reads back as None.
``rowid`` keeps sqlite's rowid: mempalace's unordered queries answer in rowid
order and ``dump_rows`` pages by it, so parity needs it.

The predicate is a property, not a label: labels cannot be bound parameters, and
arbitrary predicates as labels would mean pasting data into Cypher.

Missing endpoints.  sqlite does not enforce the triples→entities foreign keys,
so a palace may hold a triple whose subject or object has no entity row.  An
AGE edge needs two vertices, so such an endpoint gets a *placeholder* vertex
``{id, placeholder: true}``.  Placeholders are not entities: ``read_entities``,
``stats`` and every name lookup skip them, and queries that join names (as
sqlite's do) skip triples touching them, exactly as sqlite's inner JOIN does.
A later ``add_entity``/``add_triple``/load of that id turns the placeholder into
the real entity in place.  Nothing is dropped; ``bulk_load`` counts them.

Security: values reach Cypher only as one bound agtype parameter map
(``%s::agtype`` with a JSON string, server-side binding) and SQL only as bound
parameters; graph and label names are the constants below.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
from typing import Iterable, Iterator

import psycopg
from psycopg import sql

from ..target_db import schema
from .errors import KgIntegrityError, KgValueRejected
from .store import ENTITY_COLUMNS, TABLES, TRIPLE_COLUMNS
from .values import check_storable

log = logging.getLogger(__name__)

GRAPH = schema.GRAPH
ENTITY_LABEL = "Entity"
EDGE_LABEL = "RELATES"
_LABELS = {"entities": ENTITY_LABEL, "triples": EDGE_LABEL}
for _name in (GRAPH, ENTITY_LABEL, EDGE_LABEL):
    # These are spliced into Cypher text; keep them to a safe alphabet.
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{2,62}", _name), _name

# (index name, label, property, unique).  Unique ids mirror sqlite's PRIMARY KEYs
# and catch a duplicate edge (AGE issue #2296) instead of answering twice.
INDEXES = [
    ("kg_entity_id", ENTITY_LABEL, "id", True),
    ("kg_entity_name", ENTITY_LABEL, "name", False),
    ("kg_entity_rowid", ENTITY_LABEL, "rowid", False),
    ("kg_triple_id", EDGE_LABEL, "id", True),
    ("kg_triple_predicate", EDGE_LABEL, "predicate", False),
    ("kg_triple_rowid", EDGE_LABEL, "rowid", False),
]


# ── SQL / Cypher plumbing ─────────────────────────────────────────────────────


def _label_table(label: str) -> sql.Composed:
    return sql.Identifier(GRAPH, label)


def _prop(name: str, alias: str | None = None) -> sql.Composed:
    """The property accessor expression the btree indexes are built on (must match exactly)."""
    column = sql.Identifier(alias, "properties") if alias else sql.Identifier("properties")
    return sql.SQL("ag_catalog.agtype_access_operator(VARIADIC ARRAY[{}, {}::ag_catalog.agtype])").format(
        column, sql.Literal(json.dumps(name))
    )


def _cypher(body: str, *, tail: str = "") -> sql.Composed:
    """``SELECT x::json FROM cypher(GRAPH, $$body$$, %s::agtype)``: one row per map or list returned.

    ``body`` is a constant of this module: it must not contain ``%`` or ``$$``.
    ``tail`` is constant SQL appended after the call (ORDER BY ... with bound params).
    """
    assert "%" not in body and "$$" not in body
    return sql.SQL(
        "SELECT x::json FROM ag_catalog.cypher({graph}, $$ {body} $$, %s::ag_catalog.agtype) "
        "AS (x ag_catalog.agtype) {tail}"
    ).format(graph=sql.Literal(GRAPH), body=sql.SQL(body), tail=sql.SQL(tail))


@functools.lru_cache(maxsize=None)
def _cypher_text(body: str, tail: str = "") -> str:
    """``_cypher`` rendered once: psycopg re-renders a Composed on every execute (~0.1 ms)."""
    return _cypher(body, tail=tail).as_string()


def _contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_contains_nul(v) for v in value)
    return False


def _params(values: dict) -> str:
    # Checked before the server sees it: agtype would fail with a bare SQLSTATE 22P05.
    if _contains_nul(values):
        raise KgValueRejected("a value contains a NUL character, which PostgreSQL text cannot hold",
                              "remove the NUL (\\x00); nothing was written")
    return _dumps(values)


def _dumps(values) -> str:
    """JSON for agtype input, for values already checked (check_storable) or built here."""
    # allow_nan=False: a NaN/Infinity would be accepted by agtype but break every read.
    return json.dumps(values, ensure_ascii=False, allow_nan=False)


def _run(conn: psycopg.Connection, body: str, values: dict, *, tail: str = "", extra: tuple = ()) -> list:
    with conn.cursor() as cur:
        cur.execute(_cypher_text(body, tail), [_params(values), *extra])
        return [r[0] for r in cur.fetchall()]


def _ensure_age_search_path(conn: psycopg.Connection) -> None:
    """AGE resolves its agtype operators by search_path: put ag_catalog on it if missing.

    Transaction-local (like SET LOCAL) so the caller's session is left as it was,
    except in autocommit mode where a local setting would not outlive the statement.
    """
    path = conn.execute("SELECT current_setting('search_path')").fetchone()[0]
    if "ag_catalog" in [p.strip().strip('"') for p in path.split(",")]:
        return
    local = not conn.autocommit
    conn.execute("SELECT set_config('search_path', %s, %s)", [f"{path}, ag_catalog", local])


# ── schema ────────────────────────────────────────────────────────────────────


def _label_exists(conn: psycopg.Connection, label: str) -> bool:
    return conn.execute(
        "SELECT 1 FROM ag_catalog.ag_label l JOIN ag_catalog.ag_graph g ON g.graphid = l.graph "
        "WHERE g.name = %s AND l.name = %s",
        [GRAPH, label],
    ).fetchone() is not None


def ensure_graph(conn: psycopg.Connection) -> None:
    """Create the graph, its two labels and the property indexes if missing.  Idempotent, never commits."""
    _ensure_age_search_path(conn)
    if graph_exists(conn) and _missing_indexes(conn) == []:
        return  # the common case: no DDL, no table locks
    # Two processes opening a fresh database must not both create the graph.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"palace_pg.kg.ddl:{GRAPH}"])
    schema.create_graph(conn)
    # create_graph may have set a transaction-local search_path; keep ag_catalog on it.
    _ensure_age_search_path(conn)
    if not _label_exists(conn, ENTITY_LABEL):
        conn.execute("SELECT ag_catalog.create_vlabel(%s, %s)", [GRAPH, ENTITY_LABEL])
    if not _label_exists(conn, EDGE_LABEL):
        conn.execute("SELECT ag_catalog.create_elabel(%s, %s)", [GRAPH, EDGE_LABEL])
    _create_indexes(conn)


def _create_indexes(conn: psycopg.Connection) -> None:
    for name, label, prop, unique in _missing_indexes(conn):
        log.info("creating index %s on %s.%s(%s)", name, GRAPH, label, prop)
        conn.execute(
            sql.SQL("CREATE {unique} INDEX IF NOT EXISTS {name} ON {table} USING btree ({expr})").format(
                unique=sql.SQL("UNIQUE" if unique else ""),
                name=sql.Identifier(name),
                table=_label_table(label),
                expr=_prop(prop),
            )
        )


def _missing_indexes(conn: psycopg.Connection) -> list[tuple[str, str, str, bool]]:
    present = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s", [GRAPH])}
    return [ix for ix in INDEXES if ix[0] not in present]


def graph_exists(conn: psycopg.Connection) -> bool:
    return _label_exists(conn, EDGE_LABEL) and _label_exists(conn, ENTITY_LABEL)


# ── rows ⇄ properties ─────────────────────────────────────────────────────────


def _props(row: dict, columns: Iterable[str]) -> dict:
    """The property map stored for a row: nulls left out (AGE drops them anyway)."""
    out = {c: row[c] for c in columns if row.get(c) is not None}
    if row.get("rowid") is not None:
        out["rowid"] = int(row["rowid"])
    return out


def _row(props: dict, columns: Iterable[str]) -> dict:
    out = {c: props.get(c) for c in columns}
    out["rowid"] = props.get("rowid")
    return out


# ── bulk load (the migration's fast route) ────────────────────────────────────

_STAGE_V = "_palace_pg_kg_stage_v"
_STAGE_E = "_palace_pg_kg_stage_e"
_STAGE_ENDS = "_palace_pg_kg_stage_ends"


def _seq_for(conn: psycopg.Connection, label: str) -> str:
    """The label's id sequence, as a regclass text (AGE names it in ag_label.seq_name)."""
    row = conn.execute(
        "SELECT quote_ident(g.namespace::regnamespace::text) || '.' || quote_ident(l.seq_name::text) "
        "FROM ag_catalog.ag_label l JOIN ag_catalog.ag_graph g ON g.graphid = l.graph "
        "WHERE g.name = %s AND l.name = %s",
        [GRAPH, label],
    ).fetchone()
    return row[0]


def bulk_load(conn: psycopg.Connection, entities: Iterable[dict], triples: Iterable[dict]) -> dict:
    """Load sqlite rows into the graph with COPY + INSERT … SELECT (no per-edge Cypher).

    Idempotent: an entity whose id is already a (non-placeholder) vertex and a
    triple whose id is already an edge are skipped, so a resumed load finishes
    the job.  A triple whose subject/object has no entity row gets a placeholder
    vertex (see the module docstring); nothing is dropped.  Values are stored as
    given (they come from sqlite already); a NUL or non-finite float raises
    :class:`KgValueRejected`, a missing NOT NULL column or rowid
    :class:`KgIntegrityError`, before anything is written.  Runs in the caller's
    transaction and never commits.

    Returns ``{entities_inserted, entities_skipped, placeholders_upgraded,
    triples_inserted, triples_skipped, placeholders_created,
    triples_missing_endpoint}``.
    """
    ensure_graph(conn)
    clock = _Clock()
    v_table, e_table = _label_table(ENTITY_LABEL), _label_table(EDGE_LABEL)
    stage_v, stage_e, ends = (sql.Identifier(n) for n in (_STAGE_V, _STAGE_E, _STAGE_ENDS))
    with conn.cursor() as cur:
        for stage in (stage_v, stage_e, ends):
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(stage))
        # key_ag: the id as agtype, comparable with the indexed property expression.  COPY
        # parses the agtype columns, so no per-row cast runs afterwards.
        cur.execute(sql.SQL(
            "CREATE TEMP TABLE {} (key text PRIMARY KEY, key_ag ag_catalog.agtype NOT NULL, "
            "props ag_catalog.agtype NOT NULL, gid ag_catalog.graphid, state text) ON COMMIT DROP").format(stage_v))
        cur.execute(sql.SQL(
            "CREATE TEMP TABLE {} (key text PRIMARY KEY, key_ag ag_catalog.agtype NOT NULL, s text NOT NULL, "
            "o text NOT NULL, props ag_catalog.agtype NOT NULL, state text) ON COMMIT DROP").format(stage_e))

        n_in_v = 0
        with cur.copy(sql.SQL("COPY {} (key, key_ag, props) FROM STDIN").format(stage_v)) as cp:
            for row in entities:
                if row.get("id") is None or row.get("name") is None:
                    raise KgIntegrityError(f"entity row {row!r} has no id or name (sqlite declares them NOT NULL)")
                if row.get("rowid") is None:
                    raise KgIntegrityError(f"entity row {row.get('id')!r} has no rowid (read it with the row)")
                check_storable("entities", row)
                cp.write_row((row["id"], _dumps(row["id"]), _dumps(_props(row, ENTITY_COLUMNS))))
                n_in_v += 1
        n_in_e = 0
        with cur.copy(sql.SQL("COPY {} (key, key_ag, s, o, props) FROM STDIN").format(stage_e)) as cp:
            for row in triples:
                if any(row.get(c) is None for c in ("id", "subject", "predicate", "object")):
                    raise KgIntegrityError(
                        f"triple row {row.get('id')!r} lacks id/subject/predicate/object (NOT NULL in sqlite)")
                if row.get("rowid") is None:
                    raise KgIntegrityError(f"triple row {row.get('id')!r} has no rowid (read it with the row)")
                check_storable("triples", row)
                cp.write_row((row["id"], _dumps(row["id"]), row["subject"], row["object"],
                              _dumps(_props(row, TRIPLE_COLUMNS))))
                n_in_e += 1
        clock.lap("copy to staging")

        # Entities: existing real vertex → skip; existing placeholder → upgrade in place; else new.
        cur.execute(sql.SQL(
            "UPDATE {stage} s SET gid = v.id, state = CASE WHEN {ph} IS NULL THEN 'skip' ELSE 'upgrade' END "
            "FROM {vt} v WHERE {idv} = s.key_ag").format(
                stage=stage_v, vt=v_table, idv=_prop("id", "v"), ph=_prop("placeholder", "v")))
        cur.execute(sql.SQL(
            "UPDATE {vt} v SET properties = s.props FROM {stage} s WHERE s.state = 'upgrade' AND v.id = s.gid").format(
                vt=v_table, stage=stage_v))
        upgraded = cur.rowcount
        seq = _seq_for(conn, ENTITY_LABEL)
        cur.execute(sql.SQL(
            "UPDATE {stage} SET state = 'new', gid = ag_catalog._graphid("
            "ag_catalog._label_id(%s, %s)::int, nextval(%s::regclass)) WHERE state IS NULL").format(stage=stage_v),
            [GRAPH, ENTITY_LABEL, seq])
        cur.execute(sql.SQL(
            "INSERT INTO {vt} (id, properties) SELECT gid, props FROM {stage} WHERE state = 'new'").format(
                vt=v_table, stage=stage_v))
        inserted_v = cur.rowcount
        clock.lap("entities")

        # Triples: skip ids already stored as edges.
        cur.execute(sql.SQL("UPDATE {stage} s SET state = 'skip' FROM {et} e WHERE {ide} = s.key_ag").format(
            stage=stage_e, et=e_table, ide=_prop("id", "e")))
        skipped_e = cur.rowcount

        # Each endpoint of the new edges → its vertex: staged entity, else a stored vertex, else a placeholder.
        cur.execute(sql.SQL(
            "CREATE TEMP TABLE {ends} ON COMMIT DROP AS SELECT x.key, v.gid FROM "
            "(SELECT s AS key FROM {e} WHERE state IS NULL UNION SELECT o FROM {e} WHERE state IS NULL) x "
            "LEFT JOIN {v} v ON v.key = x.key").format(ends=ends, e=stage_e, v=stage_v))
        cur.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (key)").format(ends))
        cur.execute(sql.SQL(
            "UPDATE {ends} n SET gid = v.id FROM {vt} v "
            "WHERE n.gid IS NULL AND {idv} = to_json(n.key)::text::ag_catalog.agtype").format(
                ends=ends, vt=v_table, idv=_prop("id", "v")))
        cur.execute(sql.SQL(
            "UPDATE {ends} SET gid = ag_catalog._graphid(ag_catalog._label_id(%s, %s)::int, nextval(%s::regclass)) "
            "WHERE gid IS NULL RETURNING key").format(ends=ends), [GRAPH, ENTITY_LABEL, seq])
        missing = [r[0] for r in cur.fetchall()]
        missing_endpoint = 0
        if missing:
            log.warning("%d triple endpoint(s) have no entity row; placeholder vertices created (e.g. %r)",
                        len(missing), missing[:3])
            cur.execute(sql.SQL(
                "INSERT INTO {vt} (id, properties) SELECT gid, "
                "ag_catalog.agtype_build_map('id', key, 'placeholder', true) FROM {ends} WHERE key = ANY(%s)").format(
                    vt=v_table, ends=ends), [missing])
            cur.execute(sql.SQL(
                "SELECT count(*) FROM {e} WHERE state IS NULL AND (s = ANY(%s) OR o = ANY(%s))").format(e=stage_e),
                [missing, missing])
            missing_endpoint = cur.fetchone()[0]
        clock.lap("endpoints")

        cur.execute(sql.SQL(
            "INSERT INTO {et} (start_id, end_id, properties) SELECT a.gid, b.gid, e.props FROM {e} e "
            "JOIN {ends} a ON a.key = e.s JOIN {ends} b ON b.key = e.o WHERE e.state IS NULL").format(
                et=e_table, e=stage_e, ends=ends))
        inserted_e = cur.rowcount
        clock.lap("edges")
        for stage in (stage_v, stage_e, ends):
            cur.execute(sql.SQL("DROP TABLE {}").format(stage))
        # Fresh statistics, so the planner knows e.g. that one predicate matches thousands of
        # edges and keeps 1-hop lookups on the start_id/end_id indexes.
        for label in (ENTITY_LABEL, EDGE_LABEL):
            cur.execute(sql.SQL("ANALYZE {}").format(_label_table(label)))
        clock.lap("analyze")

    counts = {
        "entities_inserted": inserted_v + upgraded,
        "entities_skipped": n_in_v - inserted_v - upgraded,
        "placeholders_upgraded": upgraded,
        "triples_inserted": inserted_e,
        "triples_skipped": skipped_e,
        "placeholders_created": len(missing),
        "triples_missing_endpoint": missing_endpoint,
    }
    if inserted_e + skipped_e != n_in_e:
        # Cannot happen (every endpoint resolves); refuse rather than lose a row silently.
        raise KgIntegrityError(f"bulk_load stored {inserted_e}+{skipped_e} of {n_in_e} triples", **counts)
    log.info("kg bulk_load: %s (%s)", counts, clock)
    return counts


class _Clock:
    """Phase timings for the bulk-load log line."""

    def __init__(self) -> None:
        self.t = time.perf_counter()
        self.laps: list[str] = []

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append(f"{name} {now - self.t:.2f}s")
        self.t = now

    def __str__(self) -> str:
        return ", ".join(self.laps)


# ── full reads (verification) ─────────────────────────────────────────────────


def _all_props(conn: psycopg.Connection, label: str) -> Iterator[dict]:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT properties::json FROM {}").format(_label_table(label)))
        for (props,) in cur:
            yield props


def read_entities(conn: psycopg.Connection) -> list[dict]:
    """Every entity row (placeholders excluded) as sqlite returns it, plus ``rowid``; ordered by id."""
    if not graph_exists(conn):
        return []
    rows = [_row(p, ENTITY_COLUMNS) for p in _all_props(conn, ENTITY_LABEL) if not p.get("placeholder")]
    return sorted(rows, key=lambda r: r["id"])


def read_triples(conn: psycopg.Connection) -> list[dict]:
    """Every triple row as sqlite returns it, plus ``rowid``; ordered by id."""
    if not graph_exists(conn):
        return []
    return sorted((_row(p, TRIPLE_COLUMNS) for p in _all_props(conn, EDGE_LABEL)), key=lambda r: r["id"])


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
