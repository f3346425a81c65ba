"""The direct reader gives exactly what chromadb's own get() gives: same rows, same order, same bits.

Each case builds a real palace with chromadb and compares the two readers row
by row (id, document, type-strict metadata, float32 vector bytes).
"""

from __future__ import annotations

import shutil

import chromadb
import numpy as np
from chromadb.config import Settings

from palace_pg.source.chroma_direct import DirectReader
from palace_pg.source.chroma_reader import ChromaReader, read_collection_facts
from palace_pg.target_db.jsonfmt import canonical
from palace_pg.testing.chroma import HNSW_METADATA, copy_of, unit_vectors
from palaces import generated


def _rows(reader, name):
    out = []
    for batch in reader.batches(name, batch_size=700):
        for i, rid in enumerate(batch.ids):
            out.append((rid, batch.documents[i], canonical(batch.metadatas[i]), batch.embeddings[i].tobytes()))
    return out


def _compare(palace, name="mempalace_drawers"):
    facts = read_collection_facts(palace)
    direct = DirectReader(palace, facts)
    chroma = ChromaReader(palace)
    try:
        got, want = _rows(direct, name), _rows(chroma, name)
        assert direct.count(name) == chroma.count(name) == len(want)
        return got, want, direct
    finally:
        direct.close()
        chroma.close()


def test_a_generated_palace_reads_identically_in_every_collection(tmp_path):
    palace = copy_of(generated(300, 7), tmp_path / "src")
    for facts in read_collection_facts(palace):
        got, want, reader = _compare(palace, facts.name)
        assert got == want, facts.name
        assert facts.name not in reader.fallbacks


def _client(path):
    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def test_updates_upserts_and_deletes_still_in_the_queue_are_replayed(tmp_path):
    path = tmp_path / "palace"
    client = _client(path)
    col = client.create_collection("mempalace_drawers", metadata=HNSW_METADATA)
    vectors = unit_vectors(1300, seed=3)
    ids = [f"d{i:05d}" for i in range(1300)]
    col.add(ids=ids[:1200], embeddings=vectors[:1200], documents=ids[:1200],
            metadatas=[{"wing": "w", "n": i, "flag": i % 2 == 0, "x": i / 3} for i in range(1200)])
    # after the first flush (sync_threshold 1000): an update, an upsert of new and old ids, deletes
    col.update(ids=ids[5:10], metadatas=[{"wing": "changed"}] * 5, embeddings=vectors[1295:1300])
    col.upsert(ids=ids[1190:1250], embeddings=vectors[1190:1250], documents=["u"] * 60,
               metadatas=[{"wing": "up"}] * 60)
    col.delete(ids=ids[20:25] + ids[1195:1197])
    del col, client
    snapshot = tmp_path / "snap"
    shutil.copytree(path, snapshot)
    got, want, reader = _compare(snapshot)
    assert got == want
    # chromadb applied documents and metadata at once: only vectors waited, replayed from the queue itself
    assert not reader.needs_chromadb("mempalace_drawers")
    assert "mempalace_drawers" not in reader.fallbacks  # the flushed rows were still read directly


def test_every_kind_of_queued_vector_write_replays_bit_exactly_without_chromadb(tmp_path):
    path = tmp_path / "palace"
    col = _client(path).create_collection("mempalace_drawers", metadata=HNSW_METADATA)
    rng = np.random.default_rng(11)
    ids = [f"d{i:05d}" for i in range(1300)]
    col.add(ids=ids[:1100], embeddings=unit_vectors(1100, seed=4), documents=ids[:1100],
            metadatas=[{"n": i} for i in range(1100)])  # flushed to the HNSW files at 1000
    fresh = (rng.standard_normal((200, 384)) * rng.uniform(0.01, 50, (200, 1))).astype(np.float32)
    col.add(ids=ids[3:5], embeddings=fresh[:2], documents=["ignored"] * 2)  # ADD of existing ids: ignored
    col.update(ids=ids[10:15], embeddings=fresh[2:7])                       # new vectors, metadata kept
    col.update(ids=ids[15:20], metadatas=[{"n": -1}] * 5)                   # metadata only: vector kept
    col.update(ids=ids[1200:1205], embeddings=fresh[7:12])                  # UPDATE of absent ids: ignored
    col.upsert(ids=ids[1050:1150], embeddings=fresh[12:112], documents=["u"] * 100)  # old and new ids
    col.delete(ids=ids[30:35] + ids[1140:1145])
    col.add(ids=ids[30:32], embeddings=fresh[112:114], documents=["again"] * 2)  # deleted, then added again
    vectors = col.get(ids=ids[1000:1001], include=["embeddings"])  # nothing flushed the new vectors
    del col, vectors
    snapshot = tmp_path / "snap"
    shutil.copytree(path, snapshot)
    got, want, reader = _compare(snapshot)
    assert got == want
    assert not reader.needs_chromadb("mempalace_drawers") and not reader.fallbacks
    raw = {rid: v.tobytes() for rid, v in zip(ids[1050:1150], fresh[12:112])}
    assert any(raw[rid] != vec for rid, _, _, vec in got if rid in raw)  # chromadb's bits, not the raw ones


def test_a_collection_in_another_space_falls_back_to_chromadb(tmp_path):
    path = tmp_path / "palace"
    col = _client(path).create_collection("mempalace_drawers", metadata={"hnsw:space": "l2"})
    col.add(ids=[f"d{i}" for i in range(1100)], embeddings=unit_vectors(1100, 16) * 3,
            documents=["x"] * 1100, metadatas=[{"i": i} for i in range(1100)])
    del col
    got, want, reader = _compare(path)
    assert got == want
    assert "l2" in reader.fallbacks["mempalace_drawers"]


def test_hnsw_files_that_disagree_with_sqlite_fall_back_to_chromadb(tmp_path):
    path = tmp_path / "palace"
    col = _client(path).create_collection("mempalace_drawers", metadata=HNSW_METADATA)
    col.add(ids=[f"d{i}" for i in range(1100)], embeddings=unit_vectors(1100), documents=["x"] * 1100)
    del col
    level0 = next(path.glob("*/data_level0.bin"))
    level0.write_bytes(level0.read_bytes()[: level0.stat().st_size // 2])
    reader = DirectReader(path, read_collection_facts(path))
    assert reader.needs_chromadb("mempalace_drawers")
    assert "shorter" in reader.fallbacks["mempalace_drawers"]
    reader.close()


def test_vectors_are_chromadb_bit_patterns_not_the_normalised_copy(tmp_path):
    # hnswlib stores cosine vectors normalised and their norm in length.bin; get() multiplies back
    palace = copy_of(generated(300, 7), tmp_path / "src")
    got, want, _ = _compare(palace)
    norms = [np.linalg.norm(np.frombuffer(row[3], dtype=np.float32)) for row in got[:50]]
    assert got[:50] == want[:50] and any(n != 1.0 for n in norms)
