"""The migration engine end to end against the real server and generated palaces.

Every test asserts outcomes in the target (rows, types, fingerprints) and that
the source palace is byte-identical afterwards.
"""

from __future__ import annotations

import psycopg
import pytest

from palace_pg import engine
from palace_pg.dsn import connect
from palace_pg.errors import MigrationLocked, PreflightRefused
from palace_pg.phases.base import MigrationOptions
from palace_pg.source.kg_reader import resolve_kg_path
from palace_pg.source.snapshot import hash_palace
from palace_pg.target_db import state
from palace_pg.target_db.fingerprint import target_fingerprint

from palaces import small_palace  # noqa: F401  (fixture)


_CLEAN: dict = {}


def _clean_fingerprint(palace, pg_server, tmp_path) -> dict:
    """The fingerprint of an uninterrupted run of the shared test palace (computed once)."""
    if "fp" not in _CLEAN:
        name = f"clean_{tmp_path.name[-20:].replace('-', '_')}"
        dsn = pg_server.create_database(name)
        try:
            engine.migrate(_opts(palace, dsn, tmp_path))
            _CLEAN["fp"] = _fingerprint(dsn)
        finally:
            pg_server.drop_database(name)
    return _CLEAN["fp"]


class Crash(BaseException):
    """Raised from the progress callback: unwinds like a kill at that point (no except Exception catches it)."""


def _opts(palace, dsn, tmp_path, **kw) -> MigrationOptions:
    return MigrationOptions(palace=palace, dsn=dsn, batch_size=kw.pop("batch_size", 64),
                            work_dir=tmp_path / "work", recall_queries=kw.pop("recall_queries", 30), **kw)


def _fingerprint(dsn: str) -> dict:
    with connect(dsn) as conn:
        return target_fingerprint(conn)


def test_full_migration_is_verified_and_leaves_the_source_untouched(small_palace, fresh_db, tmp_path):
    before = hash_palace(small_palace, resolve_kg_path(small_palace))
    summary = engine.migrate(_opts(small_palace, fresh_db, tmp_path))
    assert summary["status"] == "done"
    verify = summary["results"]["verify"]
    assert verify["differences"] == 0
    for name, col in verify["collections"].items():
        assert col["source_rows"] == col["target_rows"] + col["rejected"], name
        assert col["rows_compared"] == col["source_rows"]
    assert verify["kg"]["entity_source"] == verify["kg"]["entity_target"] > 0
    assert verify["kg"]["triple_source"] == verify["kg"]["triple_target"] > 0
    assert verify["collections"]["mempalace_drawers"]["recall"]["recall_at_10"] >= 0.95
    assert hash_palace(small_palace, resolve_kg_path(small_palace)) == before


def test_types_survive(small_palace, fresh_db, tmp_path):
    engine.migrate(_opts(small_palace, fresh_db, tmp_path))
    with psycopg.connect(fresh_db) as conn:
        kinds = dict(conn.execute(
            "SELECT key, array_agg(DISTINCT jsonb_typeof(value)) FROM mempalace.drawers, "
            "jsonb_each(metadata) GROUP BY key").fetchall())
        assert kinds["is_sentinel"] == ["boolean"]
        assert kinds["chunk_index"] == ["number"]
        dims = dict(conn.execute("SELECT table_name, dimension FROM mempalace.collections").fetchall())
        assert dims["drawers"] == 384 and dims["assets"] == 768
        no_wing = conn.execute("SELECT count(*) FROM mempalace.drawers WHERE wing IS NULL").fetchone()[0]
        assert no_wing > 0  # sweeper rows have no wing, and are carried


def test_rerun_of_a_finished_migration_writes_nothing(small_palace, fresh_db, tmp_path):
    engine.migrate(_opts(small_palace, fresh_db, tmp_path))
    with connect(fresh_db) as conn:
        checkpoints = state.checkpoint_table(conn)
        runs = state.runs(conn)
    fp = _fingerprint(fresh_db)
    again = engine.migrate(_opts(small_palace, fresh_db, tmp_path))
    assert again["status"] == "already-done" and again["wrote"] == "nothing"
    with connect(fresh_db) as conn:
        assert state.checkpoint_table(conn) == checkpoints
        assert state.runs(conn) == runs
    assert _fingerprint(fresh_db) == fp


@pytest.mark.parametrize("phase", ["schema", "drawers", "collections", "indexes", "kg", "verify"])
def test_interrupted_in_each_phase_resumes_identical_to_a_clean_run(phase, small_palace, pg_server, fresh_db,
                                                                    tmp_path):
    clean = _clean_fingerprint(small_palace, pg_server, tmp_path)
    seen = {"n": 0}

    def crash_midway(event):
        if event.phase == phase:
            seen["n"] += 1
            if seen["n"] == 2:
                raise Crash(phase)

    with pytest.raises(Crash):
        engine.migrate(_opts(small_palace, fresh_db, tmp_path), progress=crash_midway)
    with connect(fresh_db) as conn:
        assert not state.is_done(conn, "done")
    resumed = engine.migrate(_opts(small_palace, fresh_db, tmp_path))
    assert resumed["status"] == "done"
    assert resumed["resumed"]
    assert _fingerprint(fresh_db) == clean


def test_a_changed_source_is_refused_unless_restart(small_palace, fresh_db, tmp_path):
    engine.migrate(_opts(small_palace, fresh_db, tmp_path, only=["schema", "drawers"]))
    (small_palace / ".mempalace" / "origin.json").write_text('{"changed": true}')
    with pytest.raises(PreflightRefused) as refused:
        engine.migrate(_opts(small_palace, fresh_db, tmp_path))
    assert any(c.name == "target_state" and "changed" in c.detail for c in refused.value.checks)
    summary = engine.migrate(_opts(small_palace, fresh_db, tmp_path, restart=True))
    assert summary["status"] == "done"


def test_a_second_migrator_is_refused(small_palace, fresh_db, tmp_path):
    holder = connect(fresh_db, autocommit=True)
    try:
        assert state.try_lock(holder)
        with pytest.raises(MigrationLocked):
            engine.migrate(_opts(small_palace, fresh_db, tmp_path))
    finally:
        holder.close()


def test_dry_run_changes_nothing(small_palace, fresh_db, tmp_path):
    result = engine.plan(_opts(small_palace, fresh_db, tmp_path))
    assert result["preflight"]["ok"]
    assert [p["phase"] for p in result["phases"]] == ["schema", "drawers", "collections", "indexes", "kg", "verify",
                                                       "done"]
    with connect(fresh_db) as conn:
        assert not state.schema_exists(conn)


def test_another_palace_is_refused(small_palace, fresh_db, tmp_path):
    from palace_pg.testing.chroma import copy_of
    from palaces import generated

    engine.migrate(_opts(small_palace, fresh_db, tmp_path))
    other = copy_of(generated(120, 99), tmp_path / "other")
    with pytest.raises(PreflightRefused) as refused:
        engine.migrate(_opts(other, fresh_db, tmp_path))
    assert any(c.name == "target_state" and "another palace" in c.detail for c in refused.value.checks)


def test_a_kill_as_the_schema_phase_commits_leaves_no_palace_without_its_id(small_palace, pg_server, fresh_db,
                                                                             tmp_path):
    """The runner marks a phase done in the transaction of its last unit: a SIGKILL at `phase-done`
    (schema's row written, nothing committed) leaves the target empty; the rerun ends with a palace_id
    and the same fingerprint as an uninterrupted run (issue 15.3's window)."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "palace_pg.cli", "migrate", "--palace", str(small_palace), "--dsn", fresh_db,
           "--batch-size", "64", "--work-dir", str(tmp_path / "work"), "--no-progress", "--allow-rejects"]
    killed = subprocess.run(cmd, env={**os.environ, "PALACE_PG_CRASH_AT": "phase-done:1"}, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    with connect(fresh_db) as conn:
        assert state.applied(conn) == set()
        assert state.get_meta(conn, "palace_id") is None
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    with connect(fresh_db) as conn:
        assert {"schema", "verify", "done"} <= state.applied(conn)
        assert state.get_meta(conn, "palace_id")
    assert _fingerprint(fresh_db) == _clean_fingerprint(small_palace, pg_server, tmp_path)
