"""The AGE graph's bulk route (the migration's KG phase) and its full reads (verification).

COPY into temp staging tables, then INSERT … SELECT straight into the label
tables: no per-edge Cypher (a Cypher MERGE per row runs at ~30 rows/s).  The
layout, placeholders and value rules are :mod:`palace_pg.kg.age_ddl`'s.
"""

from __future__ import annotations

import logging
import time
from typing import Iterable, Iterator

import psycopg
from psycopg import sql

from .age_ddl import (EDGE_LABEL, ENTITY_LABEL, GRAPH, _dumps, _label_table, _prop, _props, _row, ensure_graph,
                      graph_exists)
from .errors import KgIntegrityError
from .store import ENTITY_COLUMNS, TRIPLE_COLUMNS
from .values import check_storable

log = logging.getLogger(__name__)

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


def _all_props(conn: psycopg.Connection, label: str, ids: list[str] | None = None) -> Iterator[dict]:
    """Every vertex's or edge's properties of ``label`` (only those with these ids: one probe of the id btree)."""
    where, args = (sql.SQL(" WHERE {} = ANY(%s::text[]::ag_catalog.agtype[])").format(_prop("id")),
                   [[_dumps(k) for k in ids]]) if ids is not None else (sql.SQL(""), [])
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT properties::json FROM {}").format(_label_table(label)) + where, args)
        for (props,) in cur:
            yield props


def read_entities(conn: psycopg.Connection, ids: list[str] | None = None) -> list[dict]:
    """Every entity row (or those of ``ids``; placeholders excluded) as sqlite returns it, plus ``rowid``; by id."""
    if not graph_exists(conn):
        return []
    rows = [_row(p, ENTITY_COLUMNS) for p in _all_props(conn, ENTITY_LABEL, ids) if not p.get("placeholder")]
    return sorted(rows, key=lambda r: r["id"])


def read_triples(conn: psycopg.Connection, ids: list[str] | None = None) -> list[dict]:
    """Every triple row (or those of ``ids``) as sqlite returns it, plus ``rowid``; ordered by id."""
    if not graph_exists(conn):
        return []
    return sorted((_row(p, TRIPLE_COLUMNS) for p in _all_props(conn, EDGE_LABEL, ids)), key=lambda r: r["id"])


def count_rows(conn: psycopg.Connection) -> tuple[int, int]:
    """(entities, triples) the graph holds; placeholder vertices are not entities."""
    if not graph_exists(conn):
        return 0, 0
    entities = conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(
        _label_table(ENTITY_LABEL), _prop("placeholder"))).fetchone()[0]
    triples = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_label_table(EDGE_LABEL))).fetchone()[0]
    return entities, triples
