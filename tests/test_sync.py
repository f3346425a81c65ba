"""Online migration, sync and cutover with catch-up (issue 16), against real palaces written by MemPalace.

Writes go through MemPalace's own API (``ChromaBackend`` collections with explicit vectors, and
``KnowledgeGraph``), during and after an online migration; every one must arrive, a rerun writes
nothing, and the caught-up target equals a fresh migration of the palace as it is now.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from palaces import generated

from palace_pg import engine
from palace_pg.dsn import connect
from palace_pg.phases.base import MigrationOptions
from palace_pg.source.kg_reader import resolve_kg_path
from palace_pg.source.snapshot import hash_palace
from palace_pg.target_db import state
from palace_pg.target_db.fingerprint import target_fingerprint
from palace_pg.testing.chroma import copy_of, unit_vectors
from palace_pg.testing.mempalace_writes import (
    write_through_mempalace as _write_through_mempalace,
)


def _opts(palace, dsn, tmp_path, **kw) -> MigrationOptions:
    return MigrationOptions(palace=palace, dsn=dsn, batch_size=kw.pop("batch_size", 50), work_dir=tmp_path / "work",
                            recall_queries=kw.pop("recall_queries", 20), **kw)


def _fresh_migration_fingerprint(pg_server, palace, tmp_path, name) -> dict:
    dsn = pg_server.create_database(name)
    try:
        engine.migrate(_opts(palace, dsn, tmp_path / name))
        with connect(dsn) as conn:
            return target_fingerprint(conn, with_seq=False)
    finally:
        pg_server.drop_database(name)


def test_online_migration_then_syncs_carry_every_write(pg_server, fresh_db, tmp_path):
    palace = copy_of(generated(300, 11), tmp_path / "src")
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer():  # MemPalace writing while the online copy runs
        try:
            _write_through_mempalace(palace, 0)
        except BaseException as exc:  # pragma: no cover - shown by the assert below
            errors.append(exc)
        stop.set()

    thread = threading.Thread(target=writer)
    thread.start()
    summary = engine.migrate(_opts(palace, fresh_db, tmp_path, online=True))
    thread.join()
    assert not errors, errors
    assert summary["status"] == "done"

    wrote = _write_through_mempalace(palace, 1)  # and after the copy
    first = engine.sync(_opts(palace, fresh_db, tmp_path, online=True))
    assert first["status"] == "synced" and first["wrote"]
    drawers = first["collections"]["mempalace_drawers"]
    assert drawers["added"] >= 3 and drawers["updated"] >= 2 and drawers["deleted"] >= 1
    # round 0 raced the online copy: its facts arrive either with the copy or now, as added or closed
    assert first["kg"]["triples_added"] >= 3 and first["kg"]["triples_added"] + first["kg"]["triples_changed"] >= 4

    # a sync with nothing new writes nothing
    with connect(fresh_db) as conn:
        before = target_fingerprint(conn)
        runs_before = len(state.runs(conn))
    again = engine.sync(_opts(palace, fresh_db, tmp_path, online=True))
    assert again["status"] == "unchanged" and not again["wrote"]
    with connect(fresh_db) as conn:
        assert target_fingerprint(conn) == before
        assert len(state.runs(conn)) == runs_before
        ids = {r[0] for r in conn.execute("SELECT id FROM mempalace.drawers")}
    assert set(wrote["added"]) <= ids and wrote["deleted"] not in ids

    # proven: verification passes against the final palace, and the target equals a fresh migration of it
    report = engine.verify(_opts(palace, fresh_db, tmp_path))
    assert report["differences"] == 0
    with connect(fresh_db) as conn:
        caught_up = target_fingerprint(conn, with_seq=False)
    assert caught_up == _fresh_migration_fingerprint(pg_server, palace, tmp_path, "t_sync_fresh")


def test_a_killed_sync_resumes_to_the_same_target_and_the_source_is_untouched(pg_server, fresh_db, tmp_path):
    palace = copy_of(generated(300, 12), tmp_path / "src")
    engine.migrate(_opts(palace, fresh_db, tmp_path))
    _write_through_mempalace(palace, 1)
    source_hash = hash_palace(palace, resolve_kg_path(palace))
    cmd = [sys.executable, "-m", "palace_pg.cli", "sync", "--palace", str(palace), "--dsn", fresh_db,
           "--batch-size", "2", "--work-dir", str(tmp_path / "work"), "--json"]
    for n in (1, 2, 3):  # killed after the deletes, after a batch, after the KG
        killed = subprocess.run(cmd, env={**os.environ, "PALACE_PG_CRASH_AT": f"sync:{n}"}, capture_output=True,
                                text=True, timeout=300)
        assert killed.returncode == -9, killed.stdout[-1500:] + killed.stderr[-1500:]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert hash_palace(palace, resolve_kg_path(palace)) == source_hash
    assert engine.verify(_opts(palace, fresh_db, tmp_path))["differences"] == 0
    with connect(fresh_db) as conn:
        resumed = target_fingerprint(conn, with_seq=False)
    # the killed-and-resumed sync left what a fresh migration of the palace as it is now writes
    assert resumed == _fresh_migration_fingerprint(pg_server, palace, tmp_path, "t_sync_clean")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and '"wrote": false' in again.stdout


def test_cutover_with_sync_stops_for_seconds_and_proves_every_row(pg_server, fresh_db, tmp_path):
    from palace_pg.cutover import cutover_with_sync

    palace = copy_of(generated(300, 13), tmp_path / "src")
    engine.migrate(_opts(palace, fresh_db, tmp_path, online=True))
    _write_through_mempalace(palace, 1)
    engine.sync(_opts(palace, fresh_db, tmp_path, online=True))
    _write_through_mempalace(palace, 2)  # the last writes before the writers stop
    result = cutover_with_sync(_opts(palace, fresh_db, tmp_path))
    assert result["verify"]["differences"] == 0
    assert result["downtime_seconds"] > 0 and set(result["downtime_parts"]) >= {"snapshot", "sync", "verify", "rename"}
    assert (palace / "palace_pg.json").is_file()
    assert not list((tmp_path / "work").glob("snapshot-*"))  # the final snapshot's copy, removed after the renames
    with connect(fresh_db) as conn:
        ids = {r[0] for r in conn.execute("SELECT id FROM mempalace.drawers")}
    assert {"drawer_sync_2_0", "drawer_sync_1_0"} <= ids


@pytest.mark.parametrize("tamper", [
    # rows the writes below leave alone (they touch the first rows read): a sync has no reason to look at them
    "UPDATE mempalace.drawers SET document = document || ' ' WHERE seq = 150",
    "UPDATE mempalace.drawers SET metadata = metadata || '{\"n\": 1.0}' WHERE seq = 151",
    "UPDATE mempalace.source_digests SET vector = sha256(vector) "
    "WHERE collection = 'mempalace_closets' AND id = (SELECT id FROM mempalace.closets WHERE seq = 10)",
])
def test_the_cutovers_proofs_of_untouched_rows_still_catch_any_change(pg_server, fresh_db, tmp_path, tamper):
    """Rows proven at the online phase 6 are proven again inside PostgreSQL at the cutover: an edit shows."""
    from palace_pg.cutover import cutover_with_sync
    from palace_pg.errors import VerificationFailed

    palace = copy_of(generated(300, 13), tmp_path / "src")
    engine.migrate(_opts(palace, fresh_db, tmp_path, online=True))
    _write_through_mempalace(palace, 1)
    with connect(fresh_db) as conn:
        conn.execute(tamper)
    with pytest.raises(VerificationFailed) as failed:
        cutover_with_sync(_opts(palace, fresh_db, tmp_path))
    assert len(failed.value.differences) == 1
    assert not (palace / "palace_pg.json").exists()  # no cutover on a target that differs


def test_the_cutovers_verification_reads_out_only_the_rows_the_last_sync_wrote(pg_server, fresh_db, tmp_path):
    from palace_pg.cutover import cutover_with_sync

    palace = copy_of(generated(300, 13), tmp_path / "src")
    engine.migrate(_opts(palace, fresh_db, tmp_path, online=True))
    _write_through_mempalace(palace, 1)
    result = cutover_with_sync(_opts(palace, fresh_db, tmp_path))
    drawers = result["verify"]["collections"]["mempalace_drawers"]
    written = result["sync"]["collections"]["mempalace_drawers"]
    assert drawers["rows_read_out"] == written["added"] + written["updated"]
    assert drawers["rows_compared"] == drawers["target_rows"] > drawers["rows_read_out"]
    kg, kg_written = result["verify"]["kg"], result["sync"]["kg"]
    assert kg["triple_read_back"] == kg_written["triples_added"] + kg_written["triples_changed"] > 0
    assert kg["entity_target"] == kg["entity_source"] and kg["triple_target"] == kg["triple_source"]


@pytest.mark.parametrize("writes", [40])
def test_an_online_snapshot_copies_again_until_the_palace_holds_still(tmp_path, writes):
    from palace_pg.errors import SourceChanged
    from palace_pg.source.snapshot import take_snapshot

    palace = copy_of(generated(300, 7), tmp_path / "src")
    origin = palace / ".mempalace" / "origin.json"

    def writer():
        for n in range(writes):
            origin.write_text(f'{{"n": {n}}}')
            time.sleep(0.002)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with pytest.raises(SourceChanged):
            take_snapshot(palace, tmp_path / "w1", resolve_kg_path(palace))
    except AssertionError:
        pass  # the writer may have finished before the copy began: then offline is fine too
    thread.join()
    thread = threading.Thread(target=writer)
    thread.start()
    snap = take_snapshot(palace, tmp_path / "w2", resolve_kg_path(palace), online=True)
    thread.join()
    copied = (snap.root / "palace" / ".mempalace" / "origin.json").read_text()
    assert copied.startswith('{"n": ') and copied.endswith("}")
    entry = next(e for e in snap.files if e.relpath == "palace/.mempalace/origin.json")
    import hashlib

    assert entry.sha256 == hashlib.sha256(copied.encode()).hexdigest()


def test_preflight_of_a_complete_target_whose_palace_changed_points_at_sync(pg_server, fresh_db, tmp_path):
    palace = copy_of(generated(120, 5), tmp_path / "src")
    engine.migrate(_opts(palace, fresh_db, tmp_path, online=True, recall_queries=0))
    _write_through_mempalace(palace, 1)
    offline = engine.preflight(palace, fresh_db, work_dir=tmp_path / "work")
    check = next(c for c in offline.checks if c.name == "target_state")
    assert check.status == "fail" and "palace-pg sync" in check.fix
    online = engine.preflight(palace, fresh_db, work_dir=tmp_path / "work", online=True)
    assert online.ok and "palace-pg sync" in next(c for c in online.checks if c.name == "target_state").detail


def test_a_cutover_killed_between_its_renames_is_finished_by_the_rerun(pg_server, fresh_db, tmp_path):
    from palace_pg.cutover import BACKUP_INFIX, PREPARED_SUFFIX

    palace = copy_of(generated(120, 6), tmp_path / "src")
    engine.migrate(_opts(palace, fresh_db, tmp_path, online=True, recall_queries=0))
    _write_through_mempalace(palace, 1)
    cmd = [sys.executable, "-m", "palace_pg.cli", "cutover", "--palace", str(palace), "--dsn", fresh_db, "--sync",
           "--yes", "--work-dir", str(tmp_path / "work"), "--no-progress"]
    killed = subprocess.run(cmd, env={**os.environ, "PALACE_PG_CRASH_AT": "cutover:1"}, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not palace.exists()  # between the renames: the Chroma backup and the prepared folder beside it
    assert palace.with_name(palace.name + PREPARED_SUFFIX).is_dir()
    backups = list(palace.parent.glob(f"{palace.name}{BACKUP_INFIX}*"))
    assert len(backups) == 1 and (backups[0] / "chroma.sqlite3").is_file()
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert (palace / "palace_pg.json").is_file() and not palace.with_name(palace.name + PREPARED_SUFFIX).exists()
    with connect(fresh_db) as conn:
        assert state.get_meta(conn, "cutover")["backup"] == str(backups[0])


def test_a_large_delta_is_written_by_two_connections_to_the_same_target_as_a_fresh_migration(pg_server, fresh_db,
                                                                                               tmp_path):
    from mempalace.backends.chroma import ChromaBackend

    from palace_pg.sync.rows import PARALLEL_MIN_ROWS

    palace = copy_of(generated(700, 21), tmp_path / "src")
    engine.migrate(_opts(palace, fresh_db, tmp_path, online=True, recall_queries=0))
    drawers = ChromaBackend().get_collection(str(palace), "mempalace_drawers")
    got = drawers.get(limit=PARALLEL_MIN_ROWS + 40, include=["metadatas"])
    ids = list(got.ids if hasattr(got, "ids") else got["ids"])
    drawers.upsert(ids=ids, documents=[f"rewritten {i}" for i in range(len(ids))],
                   metadatas=[{"wing": "big", "n": i} for i in range(len(ids))],
                   embeddings=unit_vectors(len(ids), seed=70).tolist())
    result = engine.sync(_opts(palace, fresh_db, tmp_path, online=True, batch_size=64))
    assert result["collections"]["mempalace_drawers"]["updated"] == len(ids)
    assert engine.verify(_opts(palace, fresh_db, tmp_path, recall_queries=0))["differences"] == 0
    with connect(fresh_db) as conn:
        caught_up = target_fingerprint(conn, with_seq=False)
    assert caught_up == _fresh_migration_fingerprint(pg_server, palace, tmp_path, "t_sync_fresh_big")
