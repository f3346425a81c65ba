"""Bad and odd input: carried losslessly, kept in rejects with a reason, or refused with a clear error."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import psycopg
import pytest

from palace_pg import engine
from palace_pg.errors import PreflightRefused, SourceError, VerificationFailed
from palace_pg.phases.base import MigrationOptions
from palace_pg.source.snapshot import hash_palace

from palace_pg.testing.chroma import build_palace, unit_vectors


def _migrate(palace, dsn, tmp_path, **kw):
    return engine.migrate(MigrationOptions(palace=palace, dsn=dsn, batch_size=kw.pop("batch_size", 500),
                                           work_dir=tmp_path / "work", recall_queries=20, **kw))


def _rows(n, seed=0, meta=None):
    vecs = unit_vectors(n, seed=seed)
    return [(f"drawer_w_r_{i:024x}", f"document {i}", dict(meta or {"wing": "w", "room": "r", "chunk_index": i}),
             vecs[i]) for i in range(n)]


def test_fidelity_of_odd_but_valid_values(tmp_path, fresh_db):
    rows = _rows(40)
    sub = unit_vectors(1, seed=5)[0].copy()
    sub[1], sub[2] = -0.0, np.float32(1e-42)  # a negative zero and a subnormal, bit-exact
    odd = [
        ("odd_int", "one", {"v": 1, "wing": "w"}, rows[0][3]),
        ("odd_float", "one point oh", {"v": 1.0, "wing": "w"}, rows[1][3]),
        ("odd_bool", "true", {"v": True, "wing": "w"}, rows[2][3]),
        ("odd_extremes", "int64", {"max": 2**63 - 1, "min": -2**63, "big_float": 1.5e17, "tiny": 5e-324}, rows[3][3]),
        ("odd_text", "emoji 😀 and \u2028 line sep", {"we'ird \"$$\" key": "\u2028😀", "empty": "", "x": "'; DROP"},
         rows[4][3]),
        ("odd_nowing", "sweeper row", {"session_id": "s", "ingest_mode": "sweep"}, rows[5][3]),
        ("odd_big", "x" * 1_000_000, {"wing": "w"}, rows[6][3]),
        ("odd_bits", "subnormal", {"wing": "w"}, sub),
    ]
    palace = build_palace(tmp_path / "src" / "palace", rows[8:] + odd)
    summary = _migrate(palace, fresh_db, tmp_path)
    assert summary["results"]["verify"]["differences"] == 0
    with psycopg.connect(fresh_db) as conn:
        meta = dict(conn.execute("SELECT id, metadata FROM mempalace.drawers WHERE id LIKE 'odd_%'").fetchall())
        vec = conn.execute("SELECT vector_send(embedding) FROM mempalace.drawers WHERE id = 'odd_bits'").fetchone()[0]
    assert type(meta["odd_int"]["v"]) is int and type(meta["odd_float"]["v"]) is float
    assert meta["odd_bool"]["v"] is True
    assert meta["odd_extremes"] == {"max": 2**63 - 1, "min": -2**63, "big_float": 1.5e17, "tiny": 5e-324}
    assert type(meta["odd_extremes"]["big_float"]) is float
    assert meta["odd_text"]["we'ird \"$$\" key"] == "\u2028😀"
    got = np.frombuffer(bytes(vec)[4:], dtype=">f4")
    # Chroma renormalises cosine vectors; what it stored is compared bit-exactly by verify,
    # and the negative zero and the subnormal survive both hops
    assert got[1] == 0 and np.signbit(got[1])
    assert 0 < abs(got[2]) < np.finfo(np.float32).tiny


def test_nul_bytes_go_to_rejects_with_a_reason(tmp_path, fresh_db):
    rows = _rows(30)
    rows.append(("bad_doc", "a\x00b", {"wing": "w"}, rows[0][3]))
    rows.append(("bad_meta", "fine", {"wing": "w", "k": "x\x00y"}, rows[1][3]))
    palace = build_palace(tmp_path / "src" / "palace", rows)
    summary = _migrate(palace, fresh_db, tmp_path)
    drawers = summary["results"]["verify"]["collections"]["mempalace_drawers"]
    assert drawers["rejected"] == 2 and drawers["target_rows"] == 30
    with psycopg.connect(fresh_db) as conn:
        rejects = {r[0]: (r[1], json.loads(bytes(r[2]))) for r in
                   conn.execute("SELECT id, reason, payload FROM mempalace.rejects").fetchall()}
    assert "NUL" in rejects["bad_doc"][0] and rejects["bad_doc"][1]["document"] == "a\x00b"
    assert rejects["bad_meta"][1]["metadata"]["k"] == "x\x00y"


def test_the_cli_exits_5_on_rejected_rows_unless_they_are_allowed(tmp_path, fresh_db, capsys):
    from palace_pg.cli import main

    rows = _rows(10)
    rows.append(("bad_doc", "a\x00b", {"wing": "w"}, rows[0][3]))
    palace = build_palace(tmp_path / "src" / "palace", rows)
    args = ["migrate", "--palace", str(palace), "--dsn", fresh_db, "--work-dir", str(tmp_path / "w"), "--no-progress"]
    assert main(args) == 5
    err = capsys.readouterr().err
    assert "bad_doc" in err and "mempalace.rejects" in err and "--allow-rejects" in err
    assert main(args + ["--allow-rejects"]) == 0  # already done: nothing written, the rejects accepted


def test_pending_queue_rows_past_the_hnsw_segment_are_migrated(tmp_path, fresh_db):
    # sync_threshold 1000: the first 1000 are flushed to the segment, the rest sit in embeddings_queue
    palace = build_palace(tmp_path / "src" / "palace", _rows(1500))
    report = engine.preflight(palace, fresh_db, work_dir=tmp_path / "w")
    assert report.facts["collections"]["mempalace_drawers"]["rows"] == 1500
    summary = _migrate(palace, fresh_db, tmp_path)
    assert summary["results"]["verify"]["collections"]["mempalace_drawers"]["target_rows"] == 1500


def test_kg_facts_only_in_the_wal_are_migrated(tmp_path, fresh_db):
    from mempalace.knowledge_graph import KnowledgeGraph

    palace = build_palace(tmp_path / "src" / "palace", _rows(20), kg=False)
    live = tmp_path / "live"
    live.mkdir()
    graph = KnowledgeGraph(str(live / "knowledge_graph.sqlite3"))
    for i in range(30):
        graph.add_triple(f"Person {i}", "knows", f"Person {i + 1}", valid_from="2026-01-01")
    # copy while the writer is still open: the newest facts are only in the -wal
    for suffix in ("", "-wal", "-shm"):
        src = live / f"knowledge_graph.sqlite3{suffix}"
        if src.exists():
            shutil.copy2(src, palace / src.name)
    graph.close()
    assert (palace / "knowledge_graph.sqlite3-wal").stat().st_size > 0
    with sqlite3.connect(f"file:{palace / 'knowledge_graph.sqlite3'}?mode=ro&immutable=1", uri=True) as db:
        try:  # the main file alone (what a plain file copy would migrate)
            without_wal = db.execute("SELECT count(*) FROM triples").fetchone()[0]
        except sqlite3.OperationalError:  # even the table exists only in the -wal
            without_wal = 0
    before = hash_palace(palace, palace / "knowledge_graph.sqlite3")
    summary = _migrate(palace, fresh_db, tmp_path)
    assert summary["results"]["verify"]["kg"]["triple_target"] == 30 > without_wal
    assert hash_palace(palace, palace / "knowledge_graph.sqlite3") == before


def test_a_missing_kg_warns_and_migrates_an_empty_graph(tmp_path, fresh_db):
    palace = build_palace(tmp_path / "src" / "palace", _rows(20), kg=False)
    report = engine.preflight(palace, fresh_db, work_dir=tmp_path / "w")
    kg = next(c for c in report.checks if c.name == "knowledge_graph")
    assert kg.status == "warn" and kg.fix
    summary = _migrate(palace, fresh_db, tmp_path)
    assert summary["results"]["verify"]["kg"]["triple_source"] == 0


def test_a_corrupt_chroma_sqlite_is_refused_clearly(tmp_path, fresh_db):
    palace = build_palace(tmp_path / "src" / "palace", _rows(20))
    data = bytearray((palace / "chroma.sqlite3").read_bytes())
    data[0:100] = b"\xff" * 100
    (palace / "chroma.sqlite3").write_bytes(bytes(data))
    with pytest.raises(SourceError) as err:
        engine.preflight(palace, fresh_db, work_dir=tmp_path / "w")
    assert "chroma.sqlite3" in err.value.problem and err.value.fix


def test_a_truncated_hnsw_segment_is_refused_or_carried(tmp_path, fresh_db):
    palace = build_palace(tmp_path / "src" / "palace", _rows(1200), closets=0)
    level0 = next(palace.glob("*/data_level0.bin"))
    level0.write_bytes(level0.read_bytes()[: level0.stat().st_size // 3])
    before = hash_palace(palace, palace / "knowledge_graph.sqlite3")
    # chromadb's behaviour on a damaged segment varies from run to run; the contract does not:
    # a clear refusal, or a verification that catches what is wrong, or every row proven equal
    try:
        summary = _migrate(palace, fresh_db, tmp_path)
    except (PreflightRefused, SourceError) as exc:
        text = str(exc)
        assert "chromadb" in text or "segment" in text or "damaged" in text
        assert exc.fix
    except VerificationFailed as exc:
        assert exc.differences
    else:  # if chromadb reads it anyway, every row must still be proven
        assert summary["results"]["verify"]["differences"] == 0
    assert hash_palace(palace, palace / "knowledge_graph.sqlite3") == before


@pytest.mark.slow
def test_more_than_32766_drawers(tmp_path, fresh_db):
    palace = build_palace(tmp_path / "src" / "palace", _rows(33_000), closets=0)
    summary = _migrate(palace, fresh_db, tmp_path, batch_size=40_000)  # capped at chromadb's 32,766 page limit
    assert summary["results"]["verify"]["collections"]["mempalace_drawers"]["target_rows"] == 33_000
