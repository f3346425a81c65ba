"""A target without Apache AGE (as on managed services): the migration puts the KG into plain tables.

The target is a database on a second embedded server started without ``age`` in
``shared_preload_libraries`` and with only ``vector`` created (conftest's ``noage_server``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from palace_pg import cutover, engine
from palace_pg.errors import PreflightRefused
from palace_pg.kg import AgeKnowledgeGraph, stores
from palace_pg.marker import read_marker
from palace_pg.phases.base import MigrationOptions
from palace_pg.runbook import kgparity
from palace_pg.source.kg_reader import resolve_kg_path
from palace_pg.target_db import state

from palaces import small_palace  # noqa: F401  (fixture)


class Crash(BaseException):
    """Raised from the progress callback: unwinds like a kill at that point."""


def _opts(palace, dsn, tmp_path, **kw) -> MigrationOptions:
    return MigrationOptions(palace=palace, dsn=dsn, batch_size=64, work_dir=tmp_path / "work",
                            recall_queries=30, **kw)


def test_the_target_really_lacks_age(noage_db):
    with psycopg.connect(noage_db) as conn:
        assert conn.execute("SHOW shared_preload_libraries").fetchone()[0] == ""
        assert [r[0] for r in conn.execute("SELECT extname FROM pg_extension ORDER BY 1")] == ["plpgsql", "vector"]
        assert conn.execute("SELECT to_regnamespace('ag_catalog')").fetchone()[0] is None
        assert stores.resolve(conn) == "tables"
        with pytest.raises(stores.KgStoreUnavailable, match="age extension"):
            stores.resolve(conn, "age")


def test_preflight_passes_with_tables_and_says_so(small_palace, noage_db, tmp_path):  # noqa: F811
    report = engine.preflight(small_palace, noage_db, work_dir=tmp_path / "work")
    assert report.ok, report.failed()
    (check,) = [c for c in report.checks if c.name == "kg_store"]
    assert check.status == "ok" and "plain tables mempalace.kg_entities/kg_triples" in check.detail
    assert "no age extension" in check.detail and report.facts["target"]["kg_store"] == "tables"
    refused = engine.preflight(small_palace, noage_db, work_dir=tmp_path / "work", kg_store="age")
    assert [c.name for c in refused.failed()] == ["kg_store"]
    assert "--kg-store tables" in refused.failed()[0].fix


def test_migration_into_tables_verifies_and_serves_mempalace(small_palace, noage_db, tmp_path):  # noqa: F811
    summary = engine.migrate(_opts(small_palace, noage_db, tmp_path))
    assert summary["status"] == "done"
    assert summary["results"]["verify"]["differences"] == 0
    kg = summary["results"]["kg"]
    assert kg["kg_store"] == "tables" and kg["triples_inserted"] == kg["source_triples"] > 0
    with psycopg.connect(noage_db) as conn:
        assert state.get_meta(conn, "kg_store") == "tables"
        assert stores.held(conn) == "tables"
    assert engine.verify(_opts(small_palace, noage_db, tmp_path))["differences"] == 0

    # 03_verify's KG parity: the same questions to mempalace's sqlite class (on a copy, with its
    # -wal: the class writes to the file it opens) and to the tables store
    kg_copy = tmp_path / "kg_copy.sqlite3"
    source = resolve_kg_path(small_palace)
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").is_file():
            shutil.copy(f"{source}{suffix}", f"{kg_copy}{suffix}")
    parity = kgparity.compare(kg_copy, noage_db, 20)
    assert parity["status"] == "ok", [r for r in parity["rows"] if not r["equal"]]

    cutover.cutover(small_palace, noage_db)
    marker = read_marker(small_palace)
    assert marker.kg_store == "tables"
    with AgeKnowledgeGraph(db_path=str(small_palace / "knowledge_graph.sqlite3"), dsn=noage_db) as graph:
        assert graph.store_name == "tables"
        assert graph.stats()["triples"] == kg["source_triples"]
        tid = graph.add_triple("Tables", "work_without", "AGE")
        assert graph.add_triple("Tables", "work_without", "AGE") == tid  # idempotent while open


def test_explicit_tables_store_on_a_server_with_age(small_palace, fresh_db, tmp_path):  # noqa: F811
    summary = engine.migrate(_opts(small_palace, fresh_db, tmp_path, kg_store="tables"))
    assert summary["status"] == "done" and summary["results"]["verify"]["differences"] == 0
    with psycopg.connect(fresh_db) as conn:
        assert state.get_meta(conn, "kg_store") == "tables"
        assert stores.present(conn) == ["tables"]  # no AGE graph was created
    # a resume must not switch stores
    refused = engine.preflight(small_palace, fresh_db, work_dir=tmp_path / "work", kg_store="age")
    assert [c.name for c in refused.failed()] == ["kg_store"]


def test_kg_phase_interrupted_on_tables_resumes_and_verifies(small_palace, noage_db, tmp_path):  # noqa: F811
    seen = {"n": 0}

    def crash_in_kg(event):
        if event.phase == "kg":
            seen["n"] += 1
            if seen["n"] == 2:
                raise Crash("kg")

    with pytest.raises(Crash):
        engine.migrate(_opts(small_palace, noage_db, tmp_path), progress=crash_in_kg)
    with psycopg.connect(noage_db) as conn:
        assert not state.is_done(conn, "kg")
    resumed = engine.migrate(_opts(small_palace, noage_db, tmp_path))
    assert resumed["status"] == "done" and resumed["resumed"]
    assert resumed["results"]["verify"]["differences"] == 0


def test_killed_after_the_tables_load_before_its_commit_resumes(small_palace, noage_db, tmp_path):  # noqa: F811
    """SIGKILL at the KG phase's crash point (loaded, not committed), then `palace-pg migrate` again."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "palace_pg.cli", "migrate", "--palace", str(small_palace), "--dsn", noage_db,
           "--kg-store", "tables", "--work-dir", str(tmp_path / "work"), "--json", "--no-progress"]
    killed = subprocess.run(cmd, env=os.environ | {"PALACE_PG_CRASH_AT": "kg:1"}, capture_output=True, text=True,
                            timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    with psycopg.connect(noage_db) as conn:
        assert state.is_done(conn, "indexes") and not state.is_done(conn, "kg")
        assert conn.execute("SELECT count(*) FROM mempalace.kg_triples").fetchone()[0] == 0  # rolled back
    resumed = subprocess.run(cmd, env=os.environ, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = __import__("json").loads(resumed.stdout)
    assert summary["status"] == "done" and summary["results"]["verify"]["differences"] == 0
    assert summary["results"]["kg"]["kg_store"] == "tables"


def test_explicit_age_on_a_target_without_it_is_refused(small_palace, noage_db, tmp_path):  # noqa: F811
    with pytest.raises(PreflightRefused):
        engine.migrate(_opts(small_palace, noage_db, tmp_path, kg_store="age"))
