"""Parity: random operation sequences give the same answers on mempalace's sqlite KG and on AGE.

Both graphs receive the same operations (hypothesis draws them); then every read
method is asked the same questions, at several ``as_of`` instants, and the
answers must be equal, including their order.  Triple ids contain a hash of
``datetime.now()``, so both sides get the same deterministic id generator
(the id order decides ``timeline``'s tie-break, so ids must match to compare).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mempalace import knowledge_graph as mp_kg

from palace_pg.kg import AgeKnowledgeGraph, read_entities, read_triples
from palace_pg.kg import graph as age_graph

NAMES = ["Max", "max", "Alice", "Alice Smith", "alice_smith", "Bob's", "Ali", "Smith", "O'Neil",
         "chess", "go", "x y z", "日本語", "a_b", "a%b", "Max Power", "MAX"]
PREDICATES = ["loves", "child of", "does", "Works_On"]
INSTANTS = ["2025-01-01", "2025-06-15", "2025-06-15T12:00:00Z", "2025-12-31T23:59:59Z",
            "2026-01-01", "2026-01-01T00:00:00Z", "2026-03-01T08:30:00Z"]
AS_OF = [None, "2024-12-31", "2025-06-15", "2025-06-15T12:00:00Z", "2025-06-15T23:59:59Z",
         "2026-01-01", "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2030-01-01"]

name = st.sampled_from(NAMES)
pred = st.sampled_from(PREDICATES)
when = st.one_of(st.none(), st.sampled_from(INSTANTS))
confidence = st.sampled_from([1.0, 0.5, 0.25, 2, None])
provenance = st.one_of(st.none(), st.sampled_from(["closet_a", "file.md", "drawer_1"]))

OPS = st.one_of(
    st.tuples(st.just("add_entity"), name, st.sampled_from(["person", "unknown", None]),
              st.one_of(st.none(), st.fixed_dictionaries({"k": st.sampled_from(["v", "ü", 1])}))),
    st.tuples(st.just("add_triple"), name, pred, name, when, when, confidence, provenance, provenance),
    st.tuples(st.just("add_triple"), name, pred, name, when, st.none(), st.just(1.0), st.none(), st.none()),
    st.tuples(st.just("invalidate"), name, pred, name, st.sampled_from(INSTANTS)),
    st.tuples(st.just("supersede"), name, pred, name, name, st.sampled_from(INSTANTS)),
    st.tuples(st.just("rewrite"), st.integers(0, 20), pred, name, st.sampled_from(INSTANTS), provenance),
    st.tuples(st.just("apply_entity"), name, st.sampled_from(["tool", None])),
    st.tuples(st.just("apply_triple"), st.integers(0, 20), name, pred, name, when, when),
    st.tuples(st.just("seed"), st.sampled_from([
        {"max": {"full_name": "Max", "type": "person", "parent": "alice", "birthday": "2015-04-01",
                 "interests": ["chess", "go"]}},
        {"rex": {"relationship": "dog", "owner": "max"}, "alice": {"partner": "bob", "relationship": "husband"}},
    ])),
)


class _Ids:
    """A deterministic make_triple_id: same call order → same ids on both sides."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, sub, pred, obj, valid_from=None, ts=None):
        self.n += 1
        return f"t_{sub}_{pred}_{obj}_{hashlib.sha256(str(self.n).encode()).hexdigest()[:6]}"


@contextmanager
def _deterministic_ids():
    saved = (mp_kg.make_triple_id, age_graph.make_triple_id)
    mp_kg.make_triple_id, age_graph.make_triple_id = _Ids(), _Ids()
    try:
        yield
    finally:
        mp_kg.make_triple_id, age_graph.make_triple_id = saved


def _apply(kg, op, made: list[str]):
    """Run one operation; return ('ok', result) or ('error', exception class name)."""
    kind, *a = op
    try:
        if kind == "add_entity":
            return "ok", kg.add_entity(a[0], a[1], a[2])
        if kind == "add_triple":
            s, p, o, vf, vt, conf, closet, file = a
            tid = kg.add_triple(s, p, o, valid_from=vf, valid_to=vt, confidence=conf,
                                source_closet=closet, source_file=file)
            made.append(tid)
            return "ok", tid
        if kind == "invalidate":
            return "ok", kg.invalidate(a[0], a[1], a[2], ended=a[3])
        if kind == "supersede":
            tid = kg.supersede(a[0], a[1], a[2], a[3], at=a[4])
            made.append(tid)
            return "ok", tid
        if kind == "rewrite":
            target = made[a[0] % len(made)] if made else "t_missing"
            tid = kg.rewrite(target, a[1], a[2], at=a[3], source_file=a[4])
            if tid:
                made.append(tid)
            return "ok", tid
        if kind == "apply_entity":
            eid = kg._entity_id(a[0])
            return "ok", kg.apply_row("entities", {"id": eid, "name": a[0].upper(), "type": a[1],
                                                   "properties": '{"r": 1}', "created_at": "2020-01-01 00:00:00"})
        if kind == "apply_triple":
            n, s, p, o, vf, vt = a
            tid = made[n % len(made)] if made and n % 2 else f"t_applied_{n}"
            # Raw ids: the subject/object may have no entity row (sqlite does not enforce the FK).
            return "ok", kg.apply_row("triples", {"id": tid, "subject": kg._entity_id(s) + "_raw" * (n % 3 == 0),
                                                  "predicate": p, "object": kg._entity_id(o), "valid_from": vf,
                                                  "valid_to": vt, "confidence": "0.5", "extracted_at": "x"})
        if kind == "seed":
            return "ok", kg.seed_from_entity_facts(a[0])
    except ValueError:  # mempalace raises ValueError for inverted intervals and bad input
        return "error", "ValueError"
    raise AssertionError(kind)


def _strip_times(rows: list[dict]) -> list[dict]:
    # created_at/extracted_at are "now" on each side; everything else must match exactly.
    return [{k: v for k, v in r.items() if k not in ("created_at", "extracted_at")} for r in rows]


def _answers(kg) -> dict:
    out = {}
    for n in NAMES + ["nobody", "Smi", "power"]:
        out[f"candidates {n}"] = kg.find_entity_candidates(n)
        out[f"timeline {n}"] = kg.timeline(n)
        out[f"timeline {n} p2"] = kg.timeline(n, limit=2, offset=1)
        out[f"total {n}"] = kg.timeline_total(n)
        for as_of in AS_OF:
            out[f"entity {n} both {as_of}"] = kg.query_entity(n, as_of=as_of, direction="both")
        for direction in ("outgoing", "incoming"):
            for as_of in (None, "2025-06-15T12:00:00Z"):
                out[f"entity {n} {direction} {as_of}"] = kg.query_entity(n, as_of=as_of, direction=direction)
    for p in PREDICATES:
        for as_of in AS_OF:
            out[f"relationship {p} {as_of}"] = kg.query_relationship(p, as_of=as_of)
    out["timeline"] = kg.timeline()
    out["timeline p"] = kg.timeline(limit=3, offset=2)
    out["total"] = kg.timeline_total()
    out["stats"] = kg.stats()
    for table in ("entities", "triples"):
        out[f"dump {table}"] = _strip_times(kg.dump_rows(table))
        out[f"dump {table} page"] = _strip_times(kg.dump_rows(table, after_rowid=2, limit=3))
    return out


@pytest.fixture
def age_dsn(kg_db):
    return kg_db  # on both stores (the conftest's kg_store parameter)


def _reset(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM ag_catalog.ag_graph WHERE name = 'mempalace_kg'").fetchone()
        if exists:
            conn.execute('TRUNCATE mempalace_kg."Entity", mempalace_kg."RELATES"')
        if conn.execute("SELECT to_regclass('mempalace.kg_triples') IS NOT NULL").fetchone()[0]:
            conn.execute("TRUNCATE mempalace.kg_entities, mempalace.kg_triples")


def _sqlite_rows(path: Path, table: str) -> list[dict]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        cols = ", ".join(age_graph.TABLES[table])
        return [dict(r) for r in conn.execute(f"SELECT rowid, {cols} FROM {table} ORDER BY id")]
    finally:
        conn.close()


def check_parity(dsn: str, ops: list) -> None:
    _reset(dsn)
    with tempfile.TemporaryDirectory() as tmp, _deterministic_ids():
        path = Path(tmp) / "knowledge_graph.sqlite3"
        ref, age = mp_kg.KnowledgeGraph(db_path=str(path)), AgeKnowledgeGraph(db_path=str(path), dsn=dsn)
        try:
            made_ref, made_age = [], []
            for op in ops:
                assert _apply(age, op, made_age) == _apply(ref, op, made_ref), op
            expected, got = _answers(ref), _answers(age)
            for key in expected:
                assert got[key] == expected[key], (key, ops)
            with psycopg.connect(dsn) as conn:
                assert _strip_times(read_entities(conn)) == _strip_times(_sqlite_rows(path, "entities"))
                assert _strip_times(read_triples(conn)) == _strip_times(_sqlite_rows(path, "triples"))
        finally:
            ref.close()
            age.close()


@settings(max_examples=int(os.environ.get("PALACE_PG_PARITY_EXAMPLES", "40")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=25))
def test_random_sequences_answer_like_sqlite(age_dsn, ops):
    check_parity(age_dsn, ops)


def test_documented_example_answers_like_sqlite(age_dsn):
    """The docstring example of mempalace.knowledge_graph, plus a shared supersede boundary."""
    check_parity(age_dsn, [
        ("add_triple", "Max", "child_of", "Alice", "2015-04-01", None, 1.0, None, None),
        ("add_triple", "Max", "does", "swimming", "2025-01-01", None, 1.0, None, None),
        ("add_triple", "Max", "loves", "chess", "2025-10-01", None, 1.0, None, None),
        ("invalidate", "Max", "does", "swimming", "2026-02-15"),
        ("supersede", "Max", "loves", "chess", "go", "2026-01-01T00:00:00Z"),
        ("add_triple", "Alice Smith", "knows", "Max Power", None, None, 0.5, "closet_a", "file.md"),
        ("rewrite", 0, "parent of", "Alice", "2026-03-01T08:30:00Z", None),
        ("apply_triple", 4, "ghost", "loves", "Max", None, None),
    ])
