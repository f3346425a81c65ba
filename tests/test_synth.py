"""The palace generator: MemPalace 3.11's exact format, every writer kind, deterministic for a seed.

Real chromadb, real MemPalace code, no mocks.  Palaces are read back from copies
so that opening them (which checkpoints the KG's WAL away) never changes the
generated files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from palace_pg import synth
from palace_pg.errors import PalacePgError
from palace_pg.synth import ASSETS, CLOSETS, DRAWERS, make_palace
from palace_pg.synth.vectors import with_probe_components

DRAWER_COUNT = 240
MEMPALACE_CLI = Path(sys.executable).with_name("mempalace")
EXPECTED_COLLECTION_METADATA = {
    "hnsw:space": "cosine",
    "hnsw:num_threads": 1,
    "hnsw:batch_size": 100,
    "hnsw:sync_threshold": 1000,
}


# ── Fixtures and readers ────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def isolated_env(tmp_path_factory):
    """HOME and MEMPALACE_CONFIG_DIR in temp folders, so nothing reads or writes the real ~."""
    root = tmp_path_factory.mktemp("env")
    env = {"HOME": str(root / "home"), "MEMPALACE_CONFIG_DIR": str(root / "config")}
    for path in env.values():
        os.makedirs(path)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield env


def _generate(tmp_path_factory, name: str, **kwargs) -> dict:
    return make_palace(tmp_path_factory.mktemp(name) / "palace", **kwargs)


@pytest.fixture(scope="module")
def palace(isolated_env, tmp_path_factory) -> dict:
    return _generate(tmp_path_factory, "a", drawers=DRAWER_COUNT, seed=7, vectors="synthetic")


@pytest.fixture(scope="module")
def twin(isolated_env, tmp_path_factory) -> dict:
    # Built in place, while ``palace`` is built on tmpfs and copied: both must give the same palace.
    return _generate(tmp_path_factory, "b", drawers=DRAWER_COUNT, seed=7, vectors="synthetic", scratch=None)


@pytest.fixture(scope="module")
def copy_of(tmp_path_factory):
    """Copy a palace and its parent folder's sidecars; return the copied palace path."""
    counter = iter(range(1_000_000))

    def _copy(facts: dict) -> Path:
        target = tmp_path_factory.mktemp(f"copy{next(counter)}")
        shutil.copytree(facts["parent"], target, dirs_exist_ok=True)
        return target / Path(facts["palace"]).name

    return _copy


def _typed(metadata: dict) -> list[tuple[str, str, str]]:
    """Metadata compared with its types: 1, 1.0 and True are equal in Python but not in a palace."""
    return sorted((key, type(value).__name__, repr(value)) for key, value in metadata.items())


def read_collection(palace_path: Path, name: str) -> dict[str, dict]:
    """Every row through chromadb, paged below the 32,766-row metadata limit."""
    import chromadb

    client = chromadb.PersistentClient(path=str(palace_path))
    try:
        collection = client.get_collection(name)
        rows: dict[str, dict] = {}
        offset = 0
        while True:
            page = collection.get(limit=1000, offset=offset, include=["documents", "metadatas", "embeddings"])
            if not page["ids"]:
                break
            vectors = np.asarray(page["embeddings"], dtype=np.float32)
            for index, row_id in enumerate(page["ids"]):
                rows[row_id] = {
                    "document": page["documents"][index],
                    "metadata": page["metadatas"][index],
                    "vector": vectors[index],
                }
            offset += len(page["ids"])
        return rows
    finally:
        client.close()


@pytest.fixture(scope="module")
def drawers(palace, copy_of) -> dict[str, dict]:
    return read_collection(copy_of(palace), DRAWERS)


@pytest.fixture(scope="module")
def closets(palace, copy_of) -> dict[str, dict]:
    return read_collection(copy_of(palace), CLOSETS)


def read_kg(palace_path: Path) -> dict[str, list[tuple]]:
    connection = sqlite3.connect(str(palace_path / "knowledge_graph.sqlite3"))
    try:
        return {
            "entities": connection.execute("SELECT * FROM entities ORDER BY id").fetchall(),
            "triples": connection.execute("SELECT * FROM triples ORDER BY id").fetchall(),
        }
    finally:
        connection.close()


def _by_kind(drawers: dict[str, dict], predicate) -> dict[str, dict]:
    return {row_id: row for row_id, row in drawers.items() if predicate(row_id, row["metadata"])}


# ── Determinism ─────────────────────────────────────────────────────────────


def test_same_seed_gives_the_same_palace(palace, twin, copy_of):
    first, second = copy_of(palace), copy_of(twin)
    for name in (DRAWERS, CLOSETS, ASSETS):
        a, b = read_collection(first, name), read_collection(second, name)
        assert sorted(a) == sorted(b), name
        for row_id, row in a.items():
            other = b[row_id]
            assert row["document"] == other["document"], row_id
            assert _typed(row["metadata"]) == _typed(other["metadata"]), row_id
            assert np.array_equal(row["vector"].view(np.uint32), other["vector"].view(np.uint32)), row_id
    assert read_kg(first) == read_kg(second)
    for relative in ("mempalace_embedder.json", ".mempalace/origin.json", "../hallways.json", "../tunnels.json"):
        assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
    ignore = ("palace", "parent", "kg_path", "embedder_sidecar", "origin_path", "hallways_path", "tunnels_path", "timings",
              "built_in")
    assert {k: v for k, v in palace.items() if k not in ignore} == {k: v for k, v in twin.items() if k not in ignore}


def test_another_seed_gives_another_palace(isolated_env, tmp_path_factory, palace, drawers, copy_of):
    other = _generate(tmp_path_factory, "c", drawers=DRAWER_COUNT, seed=8, vectors="synthetic", assets=False)
    other_ids = set(read_collection(copy_of(other), DRAWERS))
    assert len(other_ids) == DRAWER_COUNT
    # Ids that hash only a path (sentinels, a file's first chunk) can recur; contents do not.
    assert len(other_ids & set(drawers)) < DRAWER_COUNT // 10
    assert set(other["collections"]) == {DRAWERS, CLOSETS}


# ── Facts ───────────────────────────────────────────────────────────────────


def test_facts_describe_the_palace(palace, drawers):
    assert palace["collections"][DRAWERS] == len(drawers) == DRAWER_COUNT
    assert palace["dimension"] == 384 and palace["asset_dimension"] == 768
    assert palace["vectors"] == "synthetic-clustered"
    assert palace["seed"] == 7
    assert sum(palace["kinds"].values()) == DRAWER_COUNT
    shares = palace["wing_shares"]
    assert len(shares) == 10 and 0.01 in shares.values() and 0.11 in shares.values()
    assert abs(sum(shares.values()) - 1) < 1e-9
    wings = Counter_of(drawers, "wing")
    assert {w: wings.get(w, 0) for w in shares} == palace["wings"]
    assert wings.get(None, 0) == palace["drawers_without_wing"] > 0
    with_wing = DRAWER_COUNT - palace["drawers_without_wing"]
    for wing, share in shares.items():
        assert abs(palace["wings"][wing] / with_wing - share) < 0.025, wing
    assert Path(palace["hallways_path"]).parent == Path(palace["palace"]).parent
    assert palace["built_in"] in ("/dev/shm", "place")


def Counter_of(rows: dict[str, dict], key: str) -> dict:
    counts: dict = {}
    for row in rows.values():
        value = row["metadata"].get(key)
        counts[value] = counts.get(value, 0) + 1
    return counts


def test_progress_reaches_its_total(isolated_env, tmp_path):
    calls: list[tuple[int, int]] = []
    stages: list[str] = []
    scratch = tmp_path / "scratch"

    def progress(stage: str, done: int, total: int) -> None:
        calls.append((done, total))
        if not stages or stages[-1] != stage:
            stages.append(stage)

    facts = make_palace(tmp_path / "p" / "palace", drawers=60, seed=1, vectors="synthetic", scratch=scratch,
                        progress=progress)
    assert facts["built_in"] == str(scratch) and not any(scratch.iterdir())  # built there, copied, cleaned up
    assert (tmp_path / "p" / "hallways.json").is_file() and (tmp_path / "p" / "palace" / "chroma.sqlite3").is_file()
    assert calls and calls[-1][0] == calls[-1][1]
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
    assert calls[-1][1] == sum(facts["collections"].values()) + facts["kg"]["triples"]
    assert {total for _, total in calls} == {calls[-1][1]}  # the total is known from the first call
    assert stages == ["drawers", "closets", "assets", "kg"]


# ── Collections ─────────────────────────────────────────────────────────────


def test_collections_carry_mempalace_metadata_and_widths(palace, copy_of):
    import chromadb

    path = copy_of(palace)
    client = chromadb.PersistentClient(path=str(path))
    try:
        for name, width in ((DRAWERS, 384), (CLOSETS, 384), (ASSETS, 768)):
            collection = client.get_collection(name)
            assert collection.metadata == EXPECTED_COLLECTION_METADATA, name
            vectors = np.asarray(collection.get(limit=50, include=["embeddings"])["embeddings"], dtype=np.float32)
            assert vectors.shape[1] == width, name
            assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6), name
    finally:
        client.close()
    # The embedding function MemPalace records: "default" (MiniLM, spoofed name) and EmbeddingGemma 2.
    db = sqlite3.connect(str(path / "chroma.sqlite3"))
    schemas = {name: json.loads(text) for name, text in db.execute("SELECT name, schema_str FROM collections")}
    dimensions = dict(db.execute("SELECT name, dimension FROM collections"))
    db.close()
    assert dimensions == {DRAWERS: 384, CLOSETS: 384, ASSETS: 768}
    functions = {}
    for name, schema in schemas.items():
        config = schema["keys"]["#embedding"]["float_list"]["vector_index"]["config"]
        assert config["space"] == "cosine"
        assert config["hnsw"] | {} == {"ef_construction": 100, "max_neighbors": 16, "ef_search": 100, "num_threads": 1,
                                       "batch_size": 100, "sync_threshold": 1000, "resize_factor": 1.2}
        functions[name] = config["embedding_function"]["name"]
    assert functions == {DRAWERS: "default", CLOSETS: "default", ASSETS: "embeddinggemma2"}
    sidecar = json.loads((path / "mempalace_embedder.json").read_text())
    assert sidecar[DRAWERS] == {"model_name": "minilm", "dimension": 0}
    assert sidecar[ASSETS]["model_name"].startswith("embeddinggemma2:") and ":768:" in sidecar[ASSETS]["model_name"]


def test_metadata_values_use_every_scalar_type(drawers):
    types = {type(value) for row in drawers.values() for value in row["metadata"].values()}
    assert types == {str, int, float, bool}


# ── Writer kinds and id recipes (research/mempalace.md §1.5-1.6) ────────────


def test_project_miner_chunks(drawers):
    from mempalace.ids import make_drawer_id_from_chunk

    rows = _by_kind(drawers, lambda i, m: "line_start" in m or ("chunk_total" in m and "ingest_mode" not in m))
    assert rows
    for row_id, row in rows.items():
        m = row["metadata"]
        assert row_id == make_drawer_id_from_chunk(m["wing"], m["room"], m["source_file"], m["chunk_index"])
        assert m["id_recipe"] == "v3" and m["normalize_version"] == 2 and m["added_by"]
        assert isinstance(m["source_mtime"], float) and isinstance(m["chunk_total"], int)
        assert m["last_modified"] == m["filed_at"]
        assert len(row["document"]) <= 800
    tier6a = [r for r in rows.values() if "line_start" in r["metadata"]]
    assert tier6a and all(r["metadata"]["content_date_source"] in ("filename", "frontmatter", "body", "mtime") for r in tier6a)
    assert any("line_start" not in r["metadata"] for r in rows.values())  # legacy, pre-Tier-6a drawers


def test_convo_miner_chunks_and_registry_sentinels(drawers):
    from mempalace.ids import make_convo_drawer_id, make_convo_sentinel_id

    convo = _by_kind(drawers, lambda i, m: m.get("ingest_mode") == "convos" and "chunk_total" in m)
    modes = {row["metadata"]["extract_mode"] for row in convo.values()}
    assert modes == {"exchange", "general"}
    for row_id, row in convo.items():
        m = row["metadata"]
        assert row_id == make_convo_drawer_id(m["wing"], m["room"], m["source_file"], m["extract_mode"], m["chunk_index"])
        assert ("convo_chunker_version" in m) == (m["extract_mode"] == "exchange")
        assert ("content_hash" in m) == (m["chunk_index"] == 0)
    registry = _by_kind(drawers, lambda i, m: m.get("room") == "_registry")
    assert registry
    for row_id, row in registry.items():
        m = row["metadata"]
        assert m["ingest_mode"] == "registry" and "chunk_index" not in m
        assert row_id == make_convo_sentinel_id(m["source_file"], m["extract_mode"])
        assert row["document"] == f"[registry] {m['source_file']}"


def test_live_exchanges(drawers):
    from mempalace.ids import make_exchange_drawer_id

    live = _by_kind(drawers, lambda i, m: m.get("ingest_mode") == "convos" and "chunk_total" not in m)
    assert len(live) >= len(synth.TRICKY_ROWS) - 1
    for row_id, row in live.items():
        m = row["metadata"]
        assert row_id == make_exchange_drawer_id(m["wing"], m["room"], m["source_file"], m["filed_at"], row["document"])


def test_format_miner_sentinels(drawers):
    sentinels = _by_kind(drawers, lambda i, m: i.startswith("sentinel_"))
    assert sentinels
    for row_id, row in sentinels.items():
        m = row["metadata"]
        assert m["is_sentinel"] is True and m["chunk_index"] == -1 and row["document"] == "[empty]"
        assert row_id == f"sentinel_{m['wing']}_{hashlib.sha256(m['source_file'].encode()).hexdigest()[:24]}"
        assert (m["ingest_mode"], m["extract_mode"]) == ("extract", "format")


def test_mcp_drawers_single_and_chunked(drawers):
    from mempalace.ids import make_drawer_id_from_content

    mcp = _by_kind(drawers, lambda i, m: m.get("added_by") in ("mcp", "claude") and "ingest_mode" not in m and "type" not in m
                   and "normalize_version" not in m)
    singles = {i: r for i, r in mcp.items() if "parent_drawer_id" not in r["metadata"]}
    chunks = {i: r for i, r in mcp.items() if "parent_drawer_id" in r["metadata"]}
    assert singles and chunks
    for row_id, row in singles.items():
        m = row["metadata"]
        assert row_id == make_drawer_id_from_content(m["wing"], m["room"], row["document"])
        assert m["chunk_index"] == 0
    groups: dict[str, list] = {}
    for row_id, row in chunks.items():
        groups.setdefault(row["metadata"]["parent_drawer_id"], []).append((row["metadata"]["chunk_index"], row_id, row))
    for parent, members in groups.items():
        members.sort()
        assert parent not in drawers  # the logical id is a handle, not a row
        content = "".join(row["document"] for _, _, row in members)
        m = members[0][2]["metadata"]
        assert parent == make_drawer_id_from_content(m["wing"], m["room"], content)
        assert [row_id for _, row_id, _ in members] == [f"{parent}_chunk_{k:06d}" for k in range(len(members))]
        assert len(members) >= 2 and all(len(r["document"]) <= 800 for _, _, r in members)


def test_diary_rows_have_no_source_file(drawers):
    diary = _by_kind(drawers, lambda i, m: m.get("type") == "diary_entry")
    assert diary
    chunked = [r for r in diary.values() if "parent_entry_id" in r["metadata"]]
    assert chunked and all(r["metadata"]["parent_drawer_id"] == r["metadata"]["parent_entry_id"] for r in chunked)
    for row_id, row in diary.items():
        m = row["metadata"]
        assert "source_file" not in m and m["room"] == "diary" and m["hall"] == "hall_diary"
        assert re.fullmatch(rf"diary_{m['wing']}_\d{{8}}_\d{{12}}_[0-9a-f]{{12}}(_chunk_\d{{6}})?", row_id)
        if "parent_entry_id" not in m:
            assert row_id.endswith(hashlib.sha256(row["document"].encode()).hexdigest()[:12])


def test_sweeper_rows_have_no_wing_room_or_chunk_index(drawers):
    sweep = _by_kind(drawers, lambda i, m: i.startswith("sweep_"))
    assert sweep
    for row_id, row in sweep.items():
        m = row["metadata"]
        assert not {"wing", "room", "hall", "chunk_index"} & set(m)
        assert m["ingest_mode"] == "sweep" and row_id == f"sweep_{m['session_id']}_{m['message_uuid']}"
        assert row["document"].startswith(("USER: ", "ASSISTANT: "))


def test_closets_are_pointer_lines_to_real_drawers(closets, drawers):
    assert closets
    pointer = re.compile(r"^[^|\n]*\|[^|\n]*\|(\d{4}-\d{2}-\d{2}:L\d+-L\d+\|)?→([^|\n]+)$")
    forms = set()
    for closet_id, row in closets.items():
        m = row["metadata"]
        assert closet_id.startswith(f"closet_{m['wing']}_{m['room']}_{hashlib.sha256(m['source_file'].encode()).hexdigest()[:24]}_")
        assert re.search(r"_\d{2}$", closet_id) and len(row["document"]) <= 1500
        assert isinstance(m["drawer_count"], int) and m["normalize_version"] == 2
        for line in row["document"].split("\n"):
            match = pointer.match(line)
            assert match, line
            forms.add(match.group(1) is not None)
            refs = match.group(2).split(",")
            assert 1 <= len(refs) <= 3 and all(ref in drawers for ref in refs)
    assert forms == {True, False}  # Tier 6a and legacy 3-segment lines


def test_assets(palace, copy_of, drawers):
    assets = read_collection(copy_of(palace), ASSETS)
    assert len(assets) == palace["collections"][ASSETS] >= 3
    for asset_id, row in assets.items():
        m = row["metadata"]
        assert asset_id == "media_" + hashlib.sha256(m["source_file"].encode()).hexdigest()
        assert m["room"] == "media" and m["embedding_dimension"] == 768 and isinstance(m["file_exists"], bool)
        assert row["document"] == f"{m['media_type'].title()} asset: {m['title']}"
        if "related_drawer_id" in m:
            assert m["related_drawer_id"] in drawers


# ── Tricky rows ─────────────────────────────────────────────────────────────


def test_tricky_rows_survive_with_types(palace, drawers):
    tricky = {name: drawers[row_id] for name, row_id in palace["tricky"].items()}
    assert set(tricky) == set(synth.TRICKY_ROWS)
    priorities = [tricky[f"priority_{t}"]["metadata"]["priority"] for t in ("int", "float", "bool")]
    assert [type(p) for p in priorities] == [int, float, bool] and priorities == [1, 1.0, True]
    assert tricky["int64_max"]["metadata"]["counter"] == 2**63 - 1
    assert tricky["int64_min"]["metadata"]["counter"] == -(2**63)
    assert tricky["int64_min"]["metadata"]["counter_neg"] == -(2**63 - 1)
    assert tricky["empty_strings"]["metadata"]["note"] == "" and tricky["empty_strings"]["metadata"]["entities"] == ""
    assert "🚀" in tricky["unicode"]["document"] and "\u2028" in tricky["unicode"]["document"]
    assert tricky["unicode"]["metadata"]["topic"] == "launch 🚀\u2028retro 🎉\u2029done"
    assert tricky["odd_key"]["metadata"]['label "quoted" $$dollar$$'] == 'it\'s "quoted" and costs $$'
    floats = tricky["float_extremes"]["metadata"]
    assert (floats["tiny"], floats["neg_tiny"], floats["huge"]) == (5e-324, -5e-324, 1.7976931348623157e308)
    assert len(tricky["long_document"]["document"]) == palace["long_doc_chars"] == 100_000


def test_probe_vector_keeps_subnormals_and_signed_zero_bit_for_bit(palace, drawers):
    probe = palace["probe_vector"]
    stored = drawers[probe["id"]]["vector"].view(np.uint32)
    assert {index: int(stored[int(index)]) for index in probe["components"]} == probe["components"]
    bits = {int(i): b for i, b in probe["components"].items()}
    assert 0 < bits[5] < 0x00800000  # positive float32 subnormal
    assert bits[6] == 0x80000000 and bits[8] == 0  # -0.0 and +0.0
    assert 0x80000000 < bits[7] < 0x80800000  # negative subnormal


def test_chroma_stable_vectors_are_stored_bit_for_bit(tmp_path):
    """Chroma renormalises cosine vectors; chroma_stable rows come back unchanged (past the HNSW flush too)."""
    import chromadb
    from mempalace.backends.chroma import _hnsw_creation_metadata

    rng = np.random.default_rng(3)
    raw = rng.standard_normal((1500, 384))
    vectors = synth.chroma_stable((raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(np.float32))
    vectors[0] = with_probe_components(vectors[0])
    client = chromadb.PersistentClient(path=str(tmp_path / "c"))
    try:
        collection = client.create_collection("bits", metadata=_hnsw_creation_metadata(None), embedding_function=None)
        ids = [f"v{i:05d}" for i in range(len(vectors))]
        for start in range(0, len(ids), 500):
            collection.add(ids=ids[start : start + 500], embeddings=vectors[start : start + 500])
        got = collection.get(ids=ids, include=["embeddings"])
        order = {row_id: k for k, row_id in enumerate(got["ids"])}
        stored = np.asarray(got["embeddings"], dtype=np.float32)[[order[i] for i in ids]]
    finally:
        client.close()
    assert np.array_equal(stored.view(np.uint32), vectors.view(np.uint32))


# ── Knowledge graph ─────────────────────────────────────────────────────────


def test_kg_is_left_in_wal_mode_with_recent_facts_in_the_wal(palace, copy_of):
    kg_path = Path(palace["kg_path"])
    wal = Path(f"{kg_path}-wal")
    assert wal.exists() and wal.stat().st_size > 0
    with open(kg_path, "rb") as handle:
        header = handle.read(20)
    assert header[18:20] == b"\x02\x02"  # file format versions 2/2: WAL mode, persistent
    from mempalace.knowledge_graph import KnowledgeGraph

    copied = copy_of(palace) / "knowledge_graph.sqlite3"
    main_only = copied.with_name("main_only.sqlite3")
    shutil.copyfile(copied, main_only)
    with KnowledgeGraph(str(copied)) as kg:
        stats = kg.stats()
    assert stats["entities"] == palace["kg"]["entities"] and stats["triples"] == palace["kg"]["triples"]
    assert stats["current_facts"] + stats["expired_facts"] == stats["triples"]
    connection = sqlite3.connect(str(main_only))  # without its -wal the file misses the latest facts
    assert connection.execute("SELECT COUNT(*) FROM triples").fetchone()[0] < stats["triples"]
    connection.close()


def test_kg_rows_cover_names_types_provenance_and_time(palace, copy_of):
    kg = read_kg(copy_of(palace))
    entities, triples = kg["entities"], kg["triples"]
    assert len(entities) == palace["kg"]["entities"] == DRAWER_COUNT // 8
    assert len(triples) == palace["kg"]["triples"] == round(DRAWER_COUNT * 0.625)
    assert sum(1 for e in entities if e[1] != e[0]) > len(entities) // 2  # display names differ from ids
    assert {e[2] for e in entities} >= {"person", "unknown"}
    assert any(json.loads(e[3]) for e in entities) and all(isinstance(json.loads(e[3]), dict) for e in entities)
    ids = {e[0] for e in entities}
    columns = ["id", "subject", "predicate", "object", "valid_from", "valid_to", "confidence",
               "source_closet", "source_file", "source_drawer_id", "adapter_name", "extracted_at"]
    rows = [dict(zip(columns, t)) for t in triples]
    for row in rows:
        assert row["subject"] in ids and row["object"] in ids
        assert row["id"].startswith(f"t_{row['subject']}_{row['predicate']}_{row['object']}_")
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", row["extracted_at"])
    for column in ("source_closet", "source_file", "source_drawer_id", "adapter_name"):
        assert any(row[column] for row in rows), column
    bounds = [row[c] for row in rows for c in ("valid_from", "valid_to") if row[c]]
    assert any(len(b) == 10 for b in bounds) and any(b.endswith("Z") and "T" in b for b in bounds)
    assert any(row["valid_to"] for row in rows)  # invalidated facts
    closing = {(r["subject"], r["predicate"], r["valid_to"]) for r in rows if r["valid_to"]}
    assert any((r["subject"], r["predicate"], r["valid_from"]) in closing for r in rows)  # supersede pairs
    assert palace["kg"]["written_by_class"]["supersede"] > 0 and palace["kg"]["written_by_class"]["invalidate"] > 0


# ── Sidecars and MemPalace itself ───────────────────────────────────────────


def test_sidecars_beside_and_inside_the_palace(palace):
    parent = Path(palace["parent"])
    hallways = json.loads((parent / "hallways.json").read_text())
    assert hallways["schema_version"] == 1 and hallways["hallways"]
    first = hallways["hallways"][0]
    assert set(first) >= {"id", "wing", "entity_a", "entity_b", "co_occurrence_count", "rooms", "label",
                          "created_at", "created_by", "strength", "stability", "last_activated", "access_count"}
    tunnels = json.loads((parent / "tunnels.json").read_text())
    assert {t["kind"] for t in tunnels} == {"explicit", "topic"}
    assert all({"id", "source", "target", "label", "created_at"} <= set(t) for t in tunnels)
    origin = json.loads(Path(palace["origin_path"]).read_text())
    assert origin["schema_version"] == 1 and "likely_ai_dialogue" in origin["result"]
    palace_dir = Path(palace["palace"])
    assert (palace_dir / ".blob_seq_ids_migrated").exists() and (palace_dir / ".collection_type_fixed").exists()


def test_mempalace_status_reads_the_palace(palace, copy_of, tmp_path):
    home, config = tmp_path / "home", tmp_path / "config"
    home.mkdir()
    config.mkdir()
    env = {**os.environ, "HOME": str(home), "MEMPALACE_CONFIG_DIR": str(config), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([str(MEMPALACE_CLI), "--palace", str(copy_of(palace)), "status"],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"MemPalace Status -- {DRAWER_COUNT} drawers" in result.stdout
    for wing in palace["wings"]:
        assert f"WING: {wing}" in result.stdout


def test_refuses_unsafe_destinations(isolated_env, palace, tmp_path):
    parent = Path(palace["parent"])
    with pytest.raises(PalacePgError, match="beside the palace"):
        make_palace(parent / "second_palace", drawers=60)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(PalacePgError, match="not an empty folder"):
        make_palace(tmp_path / "full", drawers=60)
    with pytest.raises(PalacePgError, match="too small"):
        make_palace(tmp_path / "small" / "palace", drawers=10)


def test_minilm_vectors_never_download(isolated_env, tmp_path):
    from palace_pg.source import minilm

    if minilm.model_available():
        facts = make_palace(tmp_path / "m" / "palace", drawers=60, vectors="minilm", assets=False)
        assert facts["vectors"] == "minilm"
    else:
        with pytest.raises(PalacePgError, match="MiniLM"):
            make_palace(tmp_path / "m" / "palace", drawers=60, vectors="minilm")
        assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_palace_larger_than_chroma_metadata_read_limit(isolated_env, tmp_path, copy_of):
    facts = make_palace(tmp_path / "big" / "palace", drawers=33_000, seed=3, vectors="synthetic", assets=False)
    assert facts["collections"][DRAWERS] == 33_000
    import chromadb

    client = chromadb.PersistentClient(path=facts["palace"])
    try:
        collection = client.get_collection(DRAWERS)
        assert collection.count() == 33_000
        seen = 0
        for offset in range(0, 33_000, 5000):
            seen += len(collection.get(limit=5000, offset=offset, include=["metadatas"])["ids"])
        assert seen == 33_000
    finally:
        client.close()


def test_an_existing_folder_beside_the_palace_keeps_its_mode(tmp_path):
    # mempalace makes the folder beside a palace 0700 when it writes tunnels.json; /tmp must stay 1777
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    make_palace(shared / "palace", drawers=synth.MIN_DRAWERS, seed=1, scratch=None)
    assert shared.stat().st_mode & 0o7777 == 0o1777
