"""`palace-pg kg convert`: age ⇄ tables, verified column by column, one transaction, refusing a full destination."""

from __future__ import annotations

import json

import psycopg
import pytest

from palace_pg.cli import main
from palace_pg.kg import AgeKnowledgeGraph, KgIntegrityError, convert as convert_mod, stores
from palace_pg.kg.convert import KgConvertRefused, convert
from palace_pg.marker import Marker, read_marker
from palace_pg.target_db import schema, state

ENTITIES = [{"id": f"e{i}", "name": f"E {i}", "type": "person", "properties": '{"k": "ü"}',
             "created_at": "2026-01-02 03:04:05", "rowid": i + 1} for i in range(6)]
TRIPLES = [{"id": f"t{i}", "subject": f"e{i % 6}", "predicate": ["knows", "child_of"][i % 2],
            "object": "ghost" if i == 7 else f"e{(i + 1) % 6}", "valid_from": f"2025-0{i % 9 + 1}-01",
            "valid_to": "2026-01-01" if i % 3 == 0 else None, "confidence": "high" if i == 4 else 0.1 + 0.2,
            "source_closet": None, "source_file": "f.md", "source_drawer_id": None, "adapter_name": None,
            "extracted_at": "2026-01-02 03:04:05", "rowid": i + 1} for i in range(12)]


def _answers(dsn: str) -> dict:
    with AgeKnowledgeGraph(dsn=dsn) as kg:
        out = {"store": kg.store_name, "stats": kg.stats(), "timeline": kg.timeline(),
               "dump": [kg.dump_rows(t) for t in ("entities", "triples")]}
        for i in range(6):
            out[f"e{i}"] = kg.query_entity(f"E {i}", direction="both")
        return out


@pytest.fixture
def migrated(fresh_db):
    """A database whose KG is in AGE, recorded in backend_meta as a migration leaves it."""
    with psycopg.connect(fresh_db) as conn:
        schema.create_base(conn)
        state.set_meta(conn, stores.META_KEY, "age")
        stores.bulk_load(conn, ENTITIES, TRIPLES, store="age")
    return fresh_db


def test_round_trip_age_tables_age_keeps_every_answer(migrated):
    before = _answers(migrated)
    assert before["store"] == "age"
    with psycopg.connect(migrated, autocommit=True) as conn:
        result = convert(conn, "tables")
        assert result["from"] == "age" and result["differences"] == 0 and result["triples"] == len(TRIPLES)
        assert stores.present(conn) == ["tables"] and state.get_meta(conn, "kg_store") == "tables"
    after = _answers(migrated)
    assert after.pop("store") == "tables" and after == {k: v for k, v in before.items() if k != "store"}
    with psycopg.connect(migrated, autocommit=True) as conn:
        convert(conn, "age")
        assert stores.present(conn) == ["age"]
    assert _answers(migrated) == before


def test_a_non_empty_destination_is_refused(migrated):
    with psycopg.connect(migrated, autocommit=True) as conn:
        convert(conn, "tables", keep_old=True)
        with pytest.raises(KgConvertRefused, match="already holds rows"):
            convert(conn, "age")
        with pytest.raises(KgConvertRefused, match="already in the tables store"):
            convert(conn, "tables")
        assert state.get_meta(conn, "kg_store") == "tables"


def test_a_failed_check_rolls_everything_back(migrated, monkeypatch):
    before = _answers(migrated)
    monkeypatch.setattr(convert_mod, "differences", lambda want, got: [{"table": "triples", "id": "t1"}])
    with psycopg.connect(migrated, autocommit=True) as conn:
        with pytest.raises(KgIntegrityError, match="nothing was changed"):
            convert(conn, "tables")
        assert stores.present(conn) == ["age"] and state.get_meta(conn, "kg_store") == "age"
    assert _answers(migrated) == before


def test_to_age_without_the_extension_is_refused(noage_db):
    with psycopg.connect(noage_db, autocommit=True) as conn:
        with conn.transaction():
            stores.bulk_load(conn, ENTITIES, TRIPLES)  # auto: tables here
        with pytest.raises(KgConvertRefused, match="age extension"):
            convert(conn, "age")
        assert stores.held(conn) == "tables"


def test_cli_converts_and_updates_the_marker(migrated, tmp_path, capsys):
    palace = tmp_path / "palace"
    palace.mkdir()
    Marker.for_target("p", migrated, kg_store="age").write(palace)
    assert main(["kg", "convert", "--dsn", migrated, "--to", "tables", "--palace", str(palace), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["to"] == "tables" and out["differences"] == 0
    assert read_marker(palace).kg_store == "tables"
    assert main(["kg", "convert", "--dsn", migrated, "--to", "tables"]) == 1
    assert "already in the tables store" in capsys.readouterr().err
