"""The knowledge graph in Apache AGE: one vertex label for entities, one edge label for triples.

This module holds the layout, its DDL (``ensure_graph``) and the Cypher/JSON
plumbing that :mod:`~palace_pg.kg.age_bulk` (the migration's bulk route) and
:mod:`~palace_pg.kg.age_store` (the online store) share.

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
from typing import Iterable

import psycopg
from psycopg import sql

from ..target_db import schema
from .errors import KgValueRejected

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


def graph_is_empty(conn: psycopg.Connection) -> bool:
    """No vertex (placeholders included) and no edge in the graph."""
    return not any(conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(_label_table(label))).fetchone()[0]
                   for label in (ENTITY_LABEL, EDGE_LABEL))


def drop_graph(conn: psycopg.Connection) -> None:
    """Drop the graph and everything in it (--restart, or after a conversion to tables)."""
    if conn.execute("SELECT 1 FROM ag_catalog.ag_graph WHERE name = %s", [GRAPH]).fetchone():
        conn.execute("SELECT ag_catalog.drop_graph(%s, true)", [GRAPH])


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

