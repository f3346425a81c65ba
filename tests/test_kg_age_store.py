"""The KG stores' bulk-load route and full reads (the verify phase's), on both stores; AGE graph setup."""

from __future__ import annotations

import psycopg
import pytest

from palace_pg.kg import AgeStore, KgValueRejected, ensure_graph, stores
from palace_pg.kg.store import ENTITY_COLUMNS, TRIPLE_COLUMNS
from palace_pg.kg.tables_ddl import INDEXES as TABLE_INDEXES


def _entity(i: int, **kw) -> dict:
    row = {"id": f"e{i}", "name": f"E {i}", "type": "person", "properties": '{"k": 1}',
           "created_at": "2026-01-02 03:04:05", "rowid": i + 1}
    return row | kw


def _triple(i: int, s: str, o: str, **kw) -> dict:
    row = {c: None for c in TRIPLE_COLUMNS} | {
        "id": f"t{i}", "subject": s, "predicate": "knows", "object": o, "valid_from": "2026-01-01",
        "confidence": 0.1 + 0.2, "extracted_at": "2026-01-02 03:04:05", "rowid": i + 1}
    return row | kw


@pytest.fixture
def conn(fresh_db):
    with psycopg.connect(fresh_db) as c:
        yield c


@pytest.fixture
def load(kg_store):
    """bulk_load/read_entities/read_triples bound to the parametrized store."""
    class Bound:
        store = kg_store

        @staticmethod
        def bulk_load(conn, entities, triples):
            return stores.bulk_load(conn, entities, triples, store=kg_store)

        @staticmethod
        def read_entities(conn):
            return stores.read_entities(conn, store=kg_store)

        @staticmethod
        def read_triples(conn):
            return stores.read_triples(conn, store=kg_store)
    return Bound


def test_ensure_graph_is_idempotent_and_indexes_exist(conn):
    ensure_graph(conn)
    ensure_graph(conn)
    conn.commit()
    names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'mempalace_kg'")}
    assert {"kg_entity_id", "kg_entity_name", "kg_triple_id", "kg_triple_rowid"} <= names


def test_bulk_load_round_trips_every_column_and_is_idempotent(conn, load):
    ents = [_entity(i) for i in range(50)] + [_entity(50, type=None, properties=None, created_at=None)]
    trips = [_triple(i, f"e{i % 51}", f"e{(i * 7) % 51}") for i in range(200)]
    trips[3] |= {"valid_to": "2026-05-01T00:00:00Z", "source_closet": "c", "source_file": "f",
                 "source_drawer_id": "d", "adapter_name": "a", "confidence": None}
    first = load.bulk_load(conn, ents, trips)
    assert first["entities_inserted"] == 51 and first["triples_inserted"] == 200
    again = load.bulk_load(conn, ents, trips)
    assert again["entities_skipped"] == 51 and again["triples_skipped"] == 200
    assert again["entities_inserted"] == again["triples_inserted"] == 0
    conn.commit()
    keys = set(ENTITY_COLUMNS) | {"rowid"}
    assert load.read_entities(conn) == sorted(({k: e.get(k) for k in keys} for e in ents), key=lambda r: r["id"])
    assert load.read_triples(conn) == sorted(trips, key=lambda r: r["id"])


def test_bulk_load_keeps_a_triple_whose_endpoint_has_no_entity(conn, load):
    counts = load.bulk_load(conn, [_entity(1)], [_triple(1, "e1", "ghost"), _triple(2, "ghost", "ghost")])
    assert counts["placeholders_created"] == 1 and counts["triples_missing_endpoint"] == 2
    assert counts["triples_inserted"] == 2
    assert [t["id"] for t in load.read_triples(conn)] == ["t1", "t2"]
    # The placeholder is not an entity ...
    assert [e["id"] for e in load.read_entities(conn)] == ["e1"]
    # ... until the entity row arrives, which upgrades it in place (edges stay attached).
    counts = load.bulk_load(conn, [_entity(2, id="ghost", name="Ghost")], [])
    assert counts["placeholders_upgraded"] == 1
    assert [e["id"] for e in load.read_entities(conn)] == ["e1", "ghost"]
    assert len(stores.store_class(load.store)(conn).triples_of("ghost", "incoming")) == 2


def test_bulk_load_refuses_nul_before_writing(conn, load):
    with pytest.raises(KgValueRejected, match="NUL"):
        load.bulk_load(conn, [_entity(1, name="a\x00b")], [])
    conn.rollback()
    assert load.read_entities(conn) == []


def test_works_without_ag_catalog_on_the_callers_search_path(conn):
    conn.execute("SET search_path = public")
    stores.bulk_load(conn, [_entity(1), _entity(2)], [_triple(1, "e1", "e2")])
    assert conn.execute("SHOW search_path").fetchone()[0].endswith("ag_catalog")  # transaction-local only
    conn.commit()
    assert conn.execute("SHOW search_path").fetchone()[0] == "public"
    assert [t["id"] for t in stores.read_triples(conn)] == ["t1"]
    store = AgeStore(conn)
    store.prepare_session()  # Cypher resolves agtype operators by search_path
    assert [t["object"] for t in store.triples_of("e1", "outgoing")] == ["e2"]


def test_entities_and_triples_may_arrive_in_separate_calls(conn, load):
    assert load.bulk_load(conn, [_entity(i) for i in range(3)], [])["entities_inserted"] == 3
    counts = load.bulk_load(conn, [], [_triple(1, "e0", "e1"), _triple(2, "e1", "e2")])
    assert counts["triples_inserted"] == 2 and counts["placeholders_created"] == 0


def test_ensure_tables_is_idempotent_and_indexes_exist(conn):
    stores.ensure(conn, "tables")
    stores.ensure(conn, "tables")
    conn.commit()
    names = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'mempalace'")}
    assert {ix[0] for ix in TABLE_INDEXES} | {"kg_entities_pkey", "kg_triples_pkey"} <= names


def test_tables_keep_a_non_numeric_confidence_as_sqlite_does(conn, tmp_path):
    """sqlite's REAL column keeps a non-numeric text as text; the tables store must give it back."""
    import sqlite3

    db = sqlite3.connect(tmp_path / "kg.sqlite3")
    db.execute("CREATE TABLE t (confidence REAL)")
    db.executemany("INSERT INTO t VALUES (?)", [("high",), (2,), ("0.5",), (None,)])
    kept = [r[0] for r in db.execute("SELECT confidence FROM t ORDER BY rowid")]
    assert kept == ["high", 2.0, 0.5, None]
    trips = [_triple(i, "e1", "e1", confidence=c) for i, c in enumerate(kept)]
    stores.bulk_load(conn, [_entity(1, id="e1")], trips, store="tables")
    assert [t["confidence"] for t in stores.read_triples(conn, store="tables")] == kept


def test_which_store_a_database_holds(conn):
    """backend_meta's record wins; without one, the store whose objects (and rows) exist; else auto."""
    assert stores.held(conn) is None and stores.resolve(conn) == "age"  # AGE installed here
    stores.ensure(conn, "tables")
    assert stores.held(conn) == "tables"
    stores.bulk_load(conn, [_entity(1)], [], store="age")
    assert stores.present(conn) == ["age", "tables"] and stores.held(conn) == "age"  # the one holding rows
    from palace_pg.target_db import schema, state

    schema.create_base(conn)
    state.set_meta(conn, stores.META_KEY, "tables")
    assert stores.held(conn) == "tables" and stores.resolve(conn) == "tables"
    assert stores.resolve(conn, "age") == "age"
    with pytest.raises(stores.KgStoreUnavailable, match="unknown"):
        stores.resolve(conn, "neo4j")
