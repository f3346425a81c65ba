"""Export from PostgreSQL back to Chroma + sqlite: round trip, MemPalace on the result, rollback --with-writes.

Real embedded PostgreSQL, real generated palaces, MemPalace 3.11 and chromadb on the exported palace.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from palace_pg import engine
from palace_pg.cli import main as cli_main
from palace_pg.cutover import cutover
from palace_pg.dsn import connect
from palace_pg.errors import PalacePgError, VerificationFailed
from palace_pg.export import export_palace, verify_export
from palace_pg.export.digests import changed_rows, chroma_preimage, chroma_returns
from palace_pg.marker import has_marker
from palace_pg.phases.base import MigrationOptions
from palace_pg.target_db.fingerprint import target_fingerprint

from palaces import small_palace  # noqa: F401  (fixture)


def _migrate(palace, dsn, tmp_path) -> None:
    engine.migrate(MigrationOptions(palace=palace, dsn=dsn, work_dir=tmp_path / "work", recall_queries=10))


def _fingerprint(dsn: str) -> dict:
    with connect(dsn) as conn:
        return target_fingerprint(conn)


def _bookkeeping(dsn: str) -> list:
    with connect(dsn) as conn:
        return conn.execute("SELECT phase, unit, state, rows_done, updated_at FROM mempalace.checkpoints "
                            "ORDER BY 1, 2").fetchall() + conn.execute(
            "SELECT key, value::text, updated_at FROM mempalace.backend_meta ORDER BY 1").fetchall()


def test_round_trip_palace_migrate_export_migrate_gives_the_same_fingerprint(small_palace, fresh_db, pg_server, tmp_path):
    _migrate(small_palace, fresh_db, tmp_path)
    before, books = _fingerprint(fresh_db), _bookkeeping(fresh_db)
    out = tmp_path / "exported" / "palace"
    out.parent.mkdir()
    summary = export_palace(fresh_db, out)
    assert summary["verification"]["differences"] == 0
    assert all(c["renormalised_by_chroma"] == 0 for c in summary["verification"]["collections"].values())
    assert (out / "chroma.sqlite3").is_file() and not (out.parent / "palace.partial").exists()
    assert (out.parent / "hallways.json").read_bytes() == (small_palace.parent / "hallways.json").read_bytes()
    assert (out.parent / "tunnels.json").read_bytes() == (small_palace.parent / "tunnels.json").read_bytes()
    # the database was only read
    assert _fingerprint(fresh_db) == before and _bookkeeping(fresh_db) == books

    name = f"again_{tmp_path.name[-20:].replace('-', '_')}"
    second = pg_server.create_database(name)
    try:
        _migrate(out, second, tmp_path)
        again = _fingerprint(second)
    finally:
        pg_server.drop_database(name)
    assert set(again) == set(before)
    assert {t: again[t] == before[t] for t in before} == {t: True for t in before}

    # an existing OUT is refused; a leftover partial of an interrupted export is replaced
    with pytest.raises(PalacePgError, match="already exists"):
        export_palace(fresh_db, out)
    redo = tmp_path / "redo"
    (tmp_path / "redo.partial").mkdir()
    (tmp_path / "redo.partial" / ".palace_pg-export-in-progress").write_text("x")
    (tmp_path / "redo.partial" / "junk").write_text("half-written")
    export_palace(fresh_db, redo, verify=False)
    assert not (redo / "junk").exists()
    # a changed KG column in the export is found by the read-back
    db = sqlite3.connect(redo / "knowledge_graph.sqlite3")
    db.execute("UPDATE triples SET source_file = 'tampered' WHERE rowid = (SELECT min(rowid) FROM triples)")
    db.commit()
    db.close()
    with pytest.raises(VerificationFailed) as failed:
        verify_export(fresh_db, redo)
    assert [d["column"] for d in failed.value.differences] == ["source_file"]

    # a row kept in mempalace.rejects is not exported, and said so; a row without a vector refuses the export
    with connect(fresh_db, autocommit=True) as conn:
        conn.execute("INSERT INTO mempalace.rejects (collection, id, reason, payload, vector) VALUES "
                     "('mempalace_drawers', 'drawer_nul', 'document: NUL', '{}'::bytea, NULL)")
        kept = export_palace(fresh_db, tmp_path / "with_reject", verify=True)
        assert kept["rejected_rows_not_exported"] == {"mempalace_drawers": 1}
        victim = conn.execute("SELECT id FROM mempalace.drawers ORDER BY seq LIMIT 1").fetchone()[0]
        conn.execute("UPDATE mempalace.drawers SET embedding = NULL WHERE id = %s", (victim,))
    with pytest.raises(PalacePgError, match="without an embedding") as refused:
        export_palace(fresh_db, tmp_path / "null_vector")
    assert refused.value.data["rows_without_embedding"] == {"mempalace_drawers": 1} and victim in str(refused.value)
    assert not (tmp_path / "null_vector").exists() and not (tmp_path / "null_vector.partial").exists()


def test_chroma_returns_predicts_renormalisation():
    rng = np.random.default_rng(3)
    v = rng.normal(size=(400, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    returned = chroma_returns(v, "cosine")
    assert changed_rows(v, returned).any()  # ordinary unit vectors: some change in their last bit
    assert not changed_rows(returned, chroma_returns(returned, "l2")).any()


def test_pre_images_make_chroma_return_the_database_bits(tmp_path):
    """Real chromadb: vectors Chroma itself returned change again when re-added, their pre-images do not."""
    import chromadb
    from chromadb.config import Settings

    rng = np.random.default_rng(4)
    v = rng.normal(size=(1500, 384)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    from_chroma = chroma_returns(v, "cosine")  # what a real palace's get() gave the migration
    client = chromadb.PersistentClient(path=str(tmp_path / "c"), settings=Settings(anonymized_telemetry=False))
    got = {}
    for label, vectors in (("plain", from_chroma), ("pre-images", chroma_preimage(from_chroma, "cosine"))):
        col = client.create_collection(label, metadata={"hnsw:space": "cosine"}, embedding_function=None)
        ids = [f"r{i}" for i in range(len(v))]
        col.add(ids=ids, embeddings=vectors)
        got[label] = np.asarray(col.get(ids=ids, include=["embeddings"])["embeddings"], dtype=np.float32)
        assert np.array_equal(got[label].view(np.uint32), chroma_returns(vectors, "cosine").view(np.uint32))
    plain, exact = changed_rows(from_chroma, got["plain"]).sum(), changed_rows(from_chroma, got["pre-images"]).sum()
    assert plain > 100 and exact < plain / 5
    assert not changed_rows(v, chroma_preimage(v, "l2")).any()  # other spaces are stored as given


@pytest.fixture
def mempalace_env(tmp_path, monkeypatch):
    values = {"HOME": str(tmp_path / "home"), "MEMPALACE_CONFIG_DIR": str(tmp_path / "config")}
    (tmp_path / "home").mkdir()
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MEMPALACE_KG_BACKEND", raising=False)
    monkeypatch.delenv("MEMPALACE_BACKEND", raising=False)
    return {**os.environ, **values}


def _write_through_postgres(palace, dsn):
    """MemPalace-style writes after the cutover: a new drawer (an ordinary unit vector), a metadata edit, KG facts."""
    from palace_pg.backend.postgres_backend import PostgresBackend
    from palace_pg.kg.graph import AgeKnowledgeGraph

    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(3, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    backend = PostgresBackend()
    drawers = backend.get_collection(str(palace), "mempalace_drawers")
    meta = {"wing": "after_cutover", "room": "notes", "source_file": "", "chunk_index": 0, "added_by": "mcp",
            "filed_at": "2026-12-03T10:00:00", "weight": 1.0, "pinned": True, "count": 1, "big": 2 ** 62,
            "huge": 1e300}
    ids = [f"drawer_after_cutover_notes_{i:024d}" for i in range(3)]
    drawers.add(ids=ids, documents=[f"lighthouse keeper log {i}" for i in range(3)],
                metadatas=[dict(meta, chunk_index=i) for i in range(3)], embeddings=vectors.tolist())
    backend.close()
    graph = AgeKnowledgeGraph(dsn=dsn)
    graph.add_triple("Lighthouse Keeper", "tends", "North Light", valid_from="2026-12-01", source_drawer_id=ids[0],
                     adapter_name="test")
    graph.add_entity("North Light", "place", {"height_m": 31})
    graph.invalidate("Lighthouse Keeper", "tends", "North Light", ended="2026-12-02")
    graph.add_triple("Lighthouse Keeper", "tends", "South Light", valid_from="2026-12-02")
    graph.close()
    return ids, vectors


def test_rollback_with_writes_keeps_postgres_writes_and_mempalace_opens_it(small_palace, fresh_db, tmp_path,
                                                                           mempalace_env):
    _migrate(small_palace, fresh_db, tmp_path)
    done = cutover(small_palace, fresh_db)
    ids, vectors = _write_through_postgres(small_palace, fresh_db)
    assert cli_main(["rollback", "--palace", str(small_palace), "--with-writes", "--yes", "--no-progress"]) == 0
    assert not has_marker(small_palace) and (small_palace / "chroma.sqlite3").is_file()
    assert (small_palace.parent / done["backup"].split("/")[-1]).is_dir()  # the pre-cutover backup is kept
    kept = list(small_palace.parent.glob(f"{small_palace.name}.postgres-*"))
    assert len(kept) == 1 and has_marker(kept[0])
    assert verify_export(fresh_db, small_palace)["differences"] == 0

    # MemPalace 3.11 on Chroma: status counts the new drawers
    proc = subprocess.run([sys.executable, "-m", "mempalace", "--palace", str(small_palace), "status"],
                          env=mempalace_env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "after_cutover" in proc.stdout

    # a search with a query vector finds the new drawer; Chroma returns exactly the bits predicted
    from mempalace.backends.chroma import ChromaBackend

    collection = ChromaBackend().get_collection(str(small_palace), "mempalace_drawers")
    hits = collection.query(query_embeddings=[vectors[1].tolist()], n_results=3, include=["metadatas", "distances"])
    assert hits.ids[0][0] == ids[1]
    row = collection.get(ids=[ids[1]], include=["metadatas", "embeddings"])
    meta = row.metadatas[0]
    assert (type(meta["weight"]), type(meta["pinned"]), type(meta["count"])) == (float, bool, int)
    assert meta["big"] == 2 ** 62 and meta["huge"] == 1e300
    got = np.asarray(row.embeddings[0], dtype=np.float32)
    predicted = chroma_returns(chroma_preimage(vectors[1:2], "cosine"), "cosine")[0]  # the database's bits if found
    assert np.array_equal(got.view(np.uint32), predicted.view(np.uint32))

    # the KG, through mempalace's own sqlite KnowledgeGraph
    from mempalace.knowledge_graph import KnowledgeGraph

    graph = KnowledgeGraph(str(small_palace / "knowledge_graph.sqlite3"))
    try:
        facts = graph.query_entity("Lighthouse Keeper")
        assert sorted((f["object"], f["valid_to"]) for f in facts) == [("North Light", "2026-12-02"),
                                                                       ("South Light", None)]
        assert [f["object"] for f in graph.query_entity("Lighthouse Keeper", as_of="2026-12-01")] == ["North Light"]
        entity = graph._conn().execute("SELECT type, properties FROM entities WHERE id = 'north_light'").fetchone()
        assert (entity[0], json.loads(entity[1])) == ("place", {"height_m": 31})
        provenance = graph._conn().execute("SELECT source_drawer_id, adapter_name FROM triples WHERE "
                                           "object = 'north_light'").fetchone()
        assert tuple(provenance) == (ids[0], "test")
    finally:
        graph.close()
