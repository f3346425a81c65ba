"""Hostile names and values are data: they round-trip exactly and never change the graph's shape (both stores)."""

from __future__ import annotations

import psycopg
import pytest

from palace_pg.errors import PalacePgError
from palace_pg.kg import AgeKnowledgeGraph, KgValueRejected, bulk_load, read_entities, read_triples, stores
from palace_pg.testing.injection import HOSTILE


def _shape(dsn: str) -> tuple[int, int, list]:
    """(nodes, edges, tables) of whichever store the database holds."""
    with psycopg.connect(dsn) as conn:
        if stores.held(conn) == "age":
            v = conn.execute('SELECT count(*) FROM mempalace_kg."Entity"').fetchone()[0]
            e = conn.execute('SELECT count(*) FROM mempalace_kg."RELATES"').fetchone()[0]
        else:
            v = conn.execute("SELECT count(*) FROM mempalace.kg_entities").fetchone()[0]
            e = conn.execute("SELECT count(*) FROM mempalace.kg_triples").fetchone()[0]
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema IN ('mempalace_kg', 'mempalace') ORDER BY 1, 2"
        ).fetchall()
    return v, e, tables


@pytest.fixture
def kg(kg_db):
    with AgeKnowledgeGraph(dsn=kg_db) as graph:
        yield graph


def test_hostile_values_round_trip_as_data(kg, kg_db):
    kg.add_triple("anchor", "knows", "other")
    before = _shape(kg_db)
    for i, value in enumerate(HOSTILE):
        kg.add_entity(value, entity_type=value, properties={value: value})
        kg.add_triple(value, value, f"obj {i}", source_closet=value, source_file=value,
                      source_drawer_id=value, adapter_name=value)
    v, e, tables = _shape(kg_db)
    # One subject + one object vertex and one edge per value: nothing deleted, nothing extra.
    assert (v, e, tables) == (before[0] + 2 * len(HOSTILE), before[1] + len(HOSTILE), before[2])
    for i, value in enumerate(HOSTILE):
        facts = kg.query_entity(value)
        assert len(facts) == 1, value
        fact = facts[0]
        assert fact["subject"] == value
        assert fact["predicate"] == value.lower().replace(" ", "_")
        assert fact["object"] == f"obj {i}"
        assert fact["source_closet"] == value
        assert kg.query_relationship(value)[0]["subject"] == value
    with psycopg.connect(kg_db) as conn:
        entities = {e["name"]: e for e in read_entities(conn)}
        triples = {t["source_file"]: t for t in read_triples(conn)}
    for value in HOSTILE:
        assert entities[value]["type"] == value
        assert entities[value]["properties"] == __import__("json").dumps({value: value})
        assert triples[value]["adapter_name"] == value and triples[value]["source_drawer_id"] == value


def test_hostile_lookups_match_nothing_and_change_nothing(kg, kg_db):
    kg.add_triple("Alice", "knows", "Bob")
    before = _shape(kg_db)
    for value in HOSTILE:
        assert kg.query_entity(value, direction="both") == []
        assert kg.query_relationship(value) == []
        assert kg.timeline(value) == []
        assert kg.timeline_total(value) == 0
        kg.find_entity_candidates(value)
        kg.invalidate(value, value, value, ended="2026-01-01")
        assert kg.rewrite(value, "p", "o") is None
    assert _shape(kg_db) == before
    assert kg.stats()["triples"] == 1


@pytest.mark.parametrize("where", ["subject", "predicate", "object", "source_file", "entity_name", "properties"])
def test_nul_is_refused_with_a_palace_pg_error_and_nothing_is_written(kg, kg_db, where):
    kg.add_triple("Alice", "knows", "Bob")
    before = _shape(kg_db)
    bad = "a\x00b"
    with pytest.raises(KgValueRejected) as info:
        if where == "entity_name":
            kg.add_entity(bad)
        elif where == "properties":
            # json.dumps escapes NUL as \u0000 text: that is storable, and round-trips.
            kg.add_entity("Carol", properties={"k": bad})
            raise KgValueRejected("stored", "")
        else:
            args = {"subject": "Alice", "predicate": "knows", "obj": "Dan", "source_file": None}
            args["obj" if where == "object" else where] = bad
            kg.add_triple(**args)
    assert isinstance(info.value, PalacePgError) and isinstance(info.value, ValueError)
    if where == "properties":
        assert kg.query_entity("Carol") == []
        assert any(e["properties"] == '{"k": "a\\u0000b"}' for e in read_entities(psycopg.connect(kg_db)))
        return
    assert "NUL" in str(info.value)
    assert _shape(kg_db) == before


def test_bulk_load_round_trips_hostile_values(kg_db):
    ents = [{"id": f"e{i}", "name": v, "type": v, "properties": v, "created_at": v, "rowid": i + 1}
            for i, v in enumerate(HOSTILE)]
    trips = [{"id": f"t{i}", "subject": f"e{i}", "predicate": v, "object": f"e{(i + 1) % len(HOSTILE)}",
              "valid_from": v, "valid_to": None, "confidence": 0.5, "source_closet": v, "source_file": v,
              "source_drawer_id": v, "adapter_name": v, "extracted_at": v, "rowid": i + 1}
             for i, v in enumerate(HOSTILE)]
    with psycopg.connect(kg_db) as conn:
        bulk_load(conn, ents, trips)
        conn.commit()
        assert read_entities(conn) == sorted(ents, key=lambda r: r["id"])
        assert read_triples(conn) == sorted(trips, key=lambda r: r["id"])
