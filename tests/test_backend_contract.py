"""The postgres backend's own contract tests, on the real server (no mocks).

Where Chroma defines the behaviour, chromadb itself (an in-memory client on the
same rows) is the oracle.
"""

from __future__ import annotations

import json
import os
import uuid

import chromadb
import numpy as np
import pytest
from mempalace.backends import PalaceRef
from mempalace.backends.base import (
    BackendMismatchError,
    CollectionNotInitializedError,
    DimensionMismatchError,
    EmbedderIdentity,
    PalaceNotFoundError,
    UnsupportedCapabilityError,
    UnsupportedFilterError,
)
from psycopg.conninfo import conninfo_to_dict

from palace_pg.backend import PostgresBackend
from palace_pg.marker import MARKER_NAME, read_marker


@pytest.fixture
def backend():
    b = PostgresBackend()
    yield b
    b.close()


@pytest.fixture
def open_col(backend, tmp_path, fresh_db):
    def make(name="mempalace_drawers", path=None, create=True, **options):
        path = path or tmp_path / "palace"
        ref = PalaceRef(id=str(path), local_path=str(path))
        return backend.get_collection(palace=ref, collection_name=name, create=create,
                                      options={"dsn": fresh_db, **options})
    return make


# Rows with every type Chroma keeps apart, for the oracle tests.
ROWS = {
    "i1": ({"v": 1, "tag": "a"}, "Hello World"),
    "f1": ({"v": 1.0, "tag": "b"}, "hello"),
    "b1": ({"v": True, "tag": "a"}, "HELLO wor"),
    "s1": ({"v": "1", "tag": "c"}, "x marks"),
    "miss": ({"other": 1}, "nothing here"),
    "i2": ({"v": 2, "tag": "a"}, "a%b"),
    "f15": ({"v": 1.5}, "a_b"),
    "bF": ({"v": False, "tag": "b"}, "ü umlaut"),
    "arr": ({"v": [1, 2], "tags": ["x", "y"]}, "zeta"),
    "ts1": ({"filed_at": "2026-01-02T10:00:00", "v": 3}, "later note"),
}

WHERES = [
    {"v": 1}, {"v": 1.0}, {"v": True}, {"v": "1"}, {"v": False}, {"v": {"$eq": 0}},
    {"v": {"$ne": 1}}, {"v": {"$ne": True}}, {"v": {"$gt": 1}}, {"v": {"$gte": 1}}, {"v": {"$lt": 2}},
    {"v": {"$lte": 1.5}}, {"v": {"$nin": [1]}}, {"v": {"$in": [1, 2]}}, {"tag": {"$in": ["a", "c"]}},
    {"tag": {"$nin": ["a"]}}, {"other": {"$ne": 5}}, {"v": {"$contains": 1}}, {"v": {"$not_contains": 1}},
    {"tags": {"$contains": "x"}}, {"$or": [{"v": 1}, {"v": "1"}]},
    {"$and": [{"tag": "a"}, {"v": {"$gte": 1}}]}, {"$or": [{"tag": "b"}, {"$and": [{"v": {"$gt": 1}}, {"v": {"$lt": 3}}]}]},
]
WHERE_DOCUMENTS = [
    {"$contains": "hello"}, {"$contains": "Hello"}, {"$not_contains": "hello"}, {"$contains": "a%b"},
    {"$contains": "%"}, {"$contains": "_"}, {"$or": [{"$contains": "x"}, {"$contains": "ü"}]},
    {"$and": [{"$contains": "H"}, {"$not_contains": "World"}]},
]


@pytest.fixture(scope="module")
def chroma_oracle():
    client = chromadb.EphemeralClient()
    col = client.create_collection(f"oracle-{uuid.uuid4().hex[:8]}", metadata={"hnsw:space": "cosine"},
                                   embedding_function=None)
    ids = list(ROWS)
    col.add(ids=ids, metadatas=[ROWS[i][0] for i in ids], documents=[ROWS[i][1] for i in ids],
            embeddings=[[1.0, float(n)] for n in range(len(ids))])
    return col


@pytest.fixture
def seeded(open_col):
    col = open_col()
    ids = list(ROWS)
    col.add(ids=ids, metadatas=[ROWS[i][0] for i in ids], documents=[ROWS[i][1] for i in ids],
            embeddings=[[1.0, float(n)] for n in range(len(ids))])
    return col


@pytest.mark.parametrize("where", WHERES, ids=json.dumps)
def test_where_matches_chroma(seeded, chroma_oracle, where):
    expected = sorted(chroma_oracle.get(where=where)["ids"])
    assert sorted(seeded.get(where=where).ids) == expected
    # the same filter through query() (exact plan: a filter on 10 rows)
    hits = seeded.query(query_embeddings=[[1.0, 0.0]], n_results=20, where=where).ids[0]
    assert sorted(hits) == expected


@pytest.mark.parametrize("where_document", WHERE_DOCUMENTS, ids=json.dumps)
def test_where_document_matches_chroma(seeded, chroma_oracle, where_document):
    expected = sorted(chroma_oracle.get(where_document=where_document)["ids"])
    assert sorted(seeded.get(where_document=where_document).ids) == expected


def test_string_comparison_is_codepoint_order(seeded):
    assert seeded.get(where={"filed_at": {"$gte": "2026-01-01"}}).ids == ["ts1"]
    assert seeded.get(where={"filed_at": {"$lt": "2026-01-01"}}).ids == []


@pytest.mark.parametrize("where", [{"v": {"$regex": "x"}}, {"$not": {"v": 1}}, {"v": {"$exists": True}}])
def test_unknown_where_operator_raises(seeded, where):
    with pytest.raises(UnsupportedFilterError):
        seeded.get(where=where)
    with pytest.raises(UnsupportedFilterError):
        seeded.query(query_embeddings=[[1.0, 0.0]], where=where)


def test_unknown_where_document_operator_raises(seeded):
    with pytest.raises(UnsupportedFilterError):
        seeded.get(where_document={"$regex": "^h"})


@pytest.mark.parametrize("where", [{"v": {"$gt": True}}, {"v": [1, 2]}, {"v": None}, {"$and": {"v": 1}}])
def test_malformed_filters_are_value_errors(seeded, where):
    with pytest.raises(ValueError):
        seeded.get(where=where)


def test_filters_bind_values_never_splice(seeded):
    nasty = "x'); DROP TABLE mempalace.drawers; --"
    assert seeded.get(where={nasty: nasty}).ids == []
    assert seeded.get(where_document={"$contains": nasty}).ids == []
    assert seeded.count() == len(ROWS)


TYPED = {
    "int": 1, "float": 1.0, "bool": True, "str_one": "1", "zero": 0, "false": False,
    "int64_max": 2**63 - 1, "int64_min": -(2**63), "big_float": 1e300, "float_1e16": 1e16,
    "tiny": 5e-324, "neg": -0.5, "emoji": "drawer 😀 🏛", "ls": "line\u2028sep\u2029para",
    "empty": "", "quote": "it's \"quoted\" \\ back", "list": [1, "a", 2.5, True],
}


def test_typed_metadata_roundtrips_exactly(open_col):
    col = open_col()
    col.add(ids=["t"], documents=["typed"], metadatas=[TYPED], embeddings=[[1.0, 0.0]])
    back = col.get(ids=["t"]).metadatas[0]
    assert back == TYPED
    for key, value in TYPED.items():
        assert type(back[key]) is type(value), key
        if isinstance(value, list):
            assert [type(x) for x in back[key]] == [type(x) for x in value]
    # and through query() / get_all_rows / lexical paths
    assert col.query(query_embeddings=[[1.0, 0.0]], n_results=1).metadatas[0][0] == TYPED
    assert col.get_all_rows(include=["metadatas"]).metadatas == [TYPED]
    for key in ("int", "float", "bool", "int64_max", "int64_min", "emoji", "ls"):
        assert col.get(where={key: TYPED[key]}).ids == ["t"], key
    assert col.get(where={"int": "1"}).ids == []
    assert col.get(where={"bool": 1}).ids == []
    assert col.get(where={"int64_max": {"$gt": 2**63 - 2}}).ids == ["t"]


def test_nan_metadata_is_refused(open_col):
    col = open_col()
    with pytest.raises(ValueError, match="NaN"):
        col.add(ids=["n"], documents=["d"], metadatas=[{"f": float("nan")}], embeddings=[[1.0, 0.0]])


def test_nul_and_lone_surrogates_are_cleaned(open_col):
    col = open_col()
    col.add(ids=["n"], documents=["a\x00b\ud800c"], metadatas=[{"k": "x\x00y"}], embeddings=[[1.0, 0.0]])
    got = col.get(ids=["n"])
    # NUL is dropped; a lone surrogate becomes U+FFFD (mempalace.config.strip_lone_surrogates)
    assert got.documents == ["ab\ufffdc"] and got.metadatas == [{"k": "xy"}]


def test_add_upsert_update_follow_chroma(open_col):
    client = chromadb.EphemeralClient()
    oracle = client.create_collection(f"o-{uuid.uuid4().hex[:8]}", embedding_function=None)
    col = open_col()
    steps = [
        ("add", dict(ids=["a", "b"], documents=["A", "B"], metadatas=[{"k": 1, "z": "keep"}, {"k": 2}],
                     embeddings=[[1.0, 0.0], [0.0, 1.0]])),
        ("add", dict(ids=["a"], documents=["dup"], metadatas=[{"k": 9}], embeddings=[[0.5, 0.5]])),
        ("upsert", dict(ids=["a", "c"], documents=["A2", "C"], metadatas=[{"k": 3, "new": True}, {"k": 4}],
                        embeddings=[[1.0, 0.1], [0.2, 1.0]])),
        ("upsert", dict(ids=["b"], documents=["B2"], embeddings=[[0.0, 1.0]])),
        ("update", dict(ids=["a"], metadatas=[{"new": None, "u": 1.5}])),
        ("update", dict(ids=["c"], documents=["C2"], embeddings=[[0.3, 1.0]])),
        ("update", dict(ids=["missing"], metadatas=[{"x": 1}])),
        ("upsert", dict(ids=["c"], documents=["C3"], metadatas=[{"k": None}], embeddings=[[0.3, 1.0]])),
    ]
    for method, kwargs in steps:
        getattr(oracle, method)(**kwargs)
        getattr(col, method)(**kwargs)
    want = oracle.get(include=["documents", "metadatas"])
    got = col.get(include=["documents", "metadatas"])
    assert dict(zip(got.ids, zip(got.documents, got.metadatas))) == \
        dict(zip(want["ids"], zip(want["documents"], want["metadatas"])))
    assert col.upsert_merges_metadata is True


def test_get_order_limit_offset_and_include(open_col):
    col = open_col()
    ids = [f"r{i:02d}" for i in range(30)][::-1]  # insertion order differs from id order
    col.add(ids=ids, documents=[f"doc {i}" for i in ids], metadatas=[{"n": i} for i in range(30)],
            embeddings=[[1.0, i / 30] for i in range(30)])
    assert col.get(include=[]).ids == ids  # storage order, as Chroma
    pages = [col.get(limit=7, offset=o, include=[]).ids for o in range(0, 30, 7)]
    assert sum(pages, []) == ids
    assert col.get(ids=[ids[5], ids[1]], include=[]).ids == [ids[1], ids[5]]
    got = col.get(ids=[ids[0]], include=["embeddings"])
    assert got.documents == [] and got.metadatas == [] and got.embeddings == [[1.0, 0.0]]
    assert col.get(limit=0).ids == []
    assert col.get(ids=[]).ids == []
    with pytest.raises(ValueError):
        col.get(limit=-1)


def test_delete_needs_ids_or_where(open_col):
    col = open_col()
    col.add(ids=["a", "b", "c"], documents=["a", "b", "c"], metadatas=[{"w": 1}, {"w": 2}, {"w": 2}],
            embeddings=[[1, 0], [0, 1], [1, 1]])
    with pytest.raises(ValueError):
        col.delete()
    col.delete(ids=["a", "zzz"])
    col.delete(ids=["b", "c"], where={"w": 1})  # AND: nothing
    assert col.count() == 2
    col.delete(where={"w": 2})
    assert col.count() == 0


def test_query_shapes_and_errors(open_col):
    col = open_col()
    col.add(ids=["a", "b"], documents=["a", "b"], metadatas=[{}, {"k": 1}], embeddings=[[1, 0], [0, 1]])
    res = col.query(query_embeddings=[[1, 0], [0, 1]], n_results=5, include=["distances"])
    assert res.ids == [["a", "b"], ["b", "a"]]
    assert res.documents == [[], []] and res.metadatas == [[], []] and res.embeddings is None
    assert res.distances[0] == pytest.approx([0.0, 1.0], abs=1e-6)
    full = col.query(query_embeddings=[[1, 0]], n_results=1)
    assert full.metadatas == [[None]]  # no metadata stored: None, as Chroma returns
    with pytest.raises(ValueError):
        col.query()
    with pytest.raises(ValueError):
        col.query(query_texts=["q"], query_embeddings=[[1, 0]])
    with pytest.raises(ValueError):
        col.query(query_embeddings=[])
    with pytest.raises(ValueError, match="query_embeddings"):
        col.query(query_texts=["q"])


def test_dimension_mismatch_names_both_sides(open_col):
    col = open_col()
    col.set_embedder_identity(EmbedderIdentity("minilm", 0))
    col.add(ids=["a"], documents=["a"], embeddings=[[1.0, 0.0, 0.0]])
    assert col.get_stored_embedder_identity() == EmbedderIdentity("minilm", 3)
    with pytest.raises(DimensionMismatchError, match=r"3-dim.*'minilm'.*4-dim"):
        col.upsert(ids=["b"], documents=["b"], embeddings=[[1.0, 0.0, 0.0, 0.0]])
    with pytest.raises(DimensionMismatchError, match=r"3-dim.*2-dim"):
        col.query(query_embeddings=[[1.0, 0.0]])
    with pytest.raises(DimensionMismatchError):
        col.update(ids=["a"], embeddings=[[1.0, 0.0]])
    with pytest.raises(ValueError, match="explicit embeddings"):
        col.add(ids=["c"], documents=["c"])
    with pytest.raises(ValueError, match="unique"):
        col.add(ids=["x", "x"], documents=["x", "y"], embeddings=[[1, 0, 0], [0, 1, 0]])


def test_embedder_identity_mismatch_through_core(tmp_path, fresh_db, monkeypatch):
    """Core's check at open compares the stored identity with the configured model, naming both."""
    from mempalace.backends.base import EmbedderIdentityMismatchError
    from mempalace.palace import clear_validated_embedder_identity, get_collection

    monkeypatch.setenv("MEMPALACE_CONFIG_DIR", str(tmp_path / "cfg"))
    backend = PostgresBackend()
    ref = PalaceRef(id=str(tmp_path / "p"), local_path=str(tmp_path / "p"))
    col = backend.get_collection(palace=ref, collection_name="mempalace_drawers", create=True,
                                 options={"dsn": fresh_db})
    col.set_embedder_identity(EmbedderIdentity("embeddinggemma", 384))
    backend.close()
    clear_validated_embedder_identity()
    monkeypatch.setenv("MEMPALACE_EMBEDDING_MODEL", "minilm")
    with pytest.raises(EmbedderIdentityMismatchError, match=r"embeddinggemma.*minilm"):
        get_collection(str(tmp_path / "p"), create=False, backend="postgres")


def test_identity_stored_in_backend_meta_and_sidecar_fallback(open_col, tmp_path):
    col = open_col()
    assert col.get_stored_embedder_identity() is None
    (tmp_path / "palace" / "mempalace_embedder.json").write_text(
        json.dumps({"mempalace_drawers": {"model_name": "minilm", "dimension": 384}}))
    assert col.get_stored_embedder_identity() == EmbedderIdentity("minilm", 384)
    col.set_embedder_identity(EmbedderIdentity("openai-compat", 8))
    assert col.get_stored_embedder_identity() == EmbedderIdentity("openai-compat", 8)


def test_facets_recent_and_counts(open_col):
    col = open_col()
    metas = [{"wing": "w1", "room": "r1", "filed_at": "2026-01-03"}, {"wing": "w1", "room": "r2", "filed_at": "2026-01-01"},
             {"wing": "w2", "filed_at": ""}, {"wing": "w2", "room": "r1", "filed_at": "2026-01-02"}, {"room": "r9"}]
    col.add(ids=list("abcde"), documents=list("abcde"), metadatas=metas, embeddings=[[1, i] for i in range(5)])
    assert col.facet_counts("wing") == {"w1": 2, "w2": 2}
    assert col.facet_counts("room", where={"wing": "w1"}) == {"r1": 1, "r2": 1}
    assert col.get_recent(limit=10, include=[]).ids == ["a", "d", "b", "c", "e"]
    assert col.get_recent(limit=2, where={"wing": "w2"}, include=["metadatas"]).metadatas[0]["room"] == "r1"
    assert col.count() == 5 and col.estimated_count() >= 0


def test_lexical_search_bm25_in_sql(open_col):
    col = open_col("mempalace_closets")
    docs = {"a": "alpha backend note", "b": "rareterm pgvector backend note", "c": "frontend design note",
            "d": "backends plural only", "e": "nothing relevant"}
    col.add(ids=list(docs), documents=list(docs.values()), metadatas=[{"wing": "p"}] * 4 + [{"wing": "q"}],
            embeddings=[[1, i] for i in range(5)])
    hits = col.lexical_search(query="rareterm backend", n_results=5).hits
    assert [h.id for h in hits] == ["b", "a"]  # "backends" is a prefix match but scores 0, as in Chroma
    assert hits[0].score > hits[1].score > 0
    assert col.lexical_search(query="note", n_results=5, where={"wing": "q"}).hits == []
    assert col.lexical_search(query="", n_results=5).hits == []


def test_lexical_scores_match_mempalace_bm25(open_col):
    """Same window, same tokenizer, same formula: the scores equal MemPalace's Python BM25."""
    from mempalace.backends.pgvector import _bm25_scores

    rng = np.random.default_rng(3)
    words = ["vector", "graph", "palace", "drawer", "memory", "wing", "room", "note", "backend", "x_y"]
    docs = [" ".join(rng.choice(words, rng.integers(3, 30))) for _ in range(60)]
    col = open_col()
    col.add(ids=[f"d{i}" for i in range(60)], documents=docs, metadatas=[{"i": i} for i in range(60)],
            embeddings=[[1, i] for i in range(60)])
    query = "palace drawer x_y"
    hits = col.lexical_search(query=query, n_results=60).hits
    matching = [i for i, d in enumerate(docs) if set(d.split()) & {"palace", "drawer", "x_y"}]
    expected = _bm25_scores(query, [docs[i] for i in matching])
    want = {f"d{i}": s for i, s in zip(matching, expected) if s > 0}
    assert {h.id: pytest.approx(h.score, rel=1e-9) for h in hits} == {k: pytest.approx(v, rel=1e-9) for k, v in want.items()}


def test_maintenance_kinds(open_col):
    col = open_col()
    col.add(ids=["a", "b"], documents=["a", "b"], metadatas=[{"wing": "x"}, {"wing": "y"}], embeddings=[[1, 0], [0, 1]])
    state = col.maintenance_state()
    assert state["vector_index"] == "hnsw" and state["index_build_complete"] and state["row_count"] == 2
    assert state["vector_storage"] == "main"
    assert col.run_maintenance("analyze").status == "ran"
    assert col.run_maintenance("reindex").status == "noop"
    assert col.run_maintenance("compact").status == "ran"
    assert col.get(include=[]).ids == ["a", "b"]
    assert col.health().ok
    from mempalace.backends.base import UnsupportedMaintenanceKindError

    with pytest.raises(UnsupportedMaintenanceKindError):
        col.run_maintenance("vacuum_everything")


def test_open_states_and_detection(backend, tmp_path, fresh_db):
    path = tmp_path / "p"
    ref = PalaceRef(id=str(path), local_path=str(path))
    with pytest.raises(PalaceNotFoundError):
        backend.get_collection(palace=ref, collection_name="mempalace_drawers", options={"dsn": fresh_db})
    assert not PostgresBackend.detect(str(path))
    col = backend.get_collection(palace=ref, collection_name="mempalace_drawers", create=True,
                                 options={"dsn": fresh_db})
    assert PostgresBackend.detect(str(path)) and col._backend is backend
    marker = read_marker(path)
    assert "password" not in (path / MARKER_NAME).read_text().lower()
    assert marker.target["dbname"] == conninfo_to_dict(fresh_db)["dbname"]
    with pytest.raises(CollectionNotInitializedError):
        backend.get_collection(palace=ref, collection_name="mempalace_closets")
    # legacy positional form, and the marker alone finds the database
    again = PostgresBackend().get_collection(str(path), "mempalace_drawers", False)
    assert again.count() == 0
    with pytest.raises(UnsupportedCapabilityError):
        backend.get_collection(palace=PalaceRef(id="x", local_path=str(path), namespace="t"),
                               collection_name="mempalace_drawers")


def test_one_database_holds_one_palace(backend, tmp_path, fresh_db):
    first = PalaceRef(id=str(tmp_path / "a"), local_path=str(tmp_path / "a"))
    backend.get_collection(palace=first, collection_name="mempalace_drawers", create=True, options={"dsn": fresh_db})
    second = PalaceRef(id=str(tmp_path / "b"), local_path=str(tmp_path / "b"))
    with pytest.raises(BackendMismatchError, match="already holds palace"):
        backend.get_collection(palace=second, collection_name="mempalace_drawers", create=True,
                               options={"dsn": fresh_db})
    # a copied marker with another id is refused too
    (tmp_path / "b").mkdir(exist_ok=True)
    text = (tmp_path / "a" / MARKER_NAME).read_text().replace(read_marker(tmp_path / "a").palace_id, str(uuid.uuid4()))
    (tmp_path / "b" / MARKER_NAME).write_text(text)
    with pytest.raises(BackendMismatchError, match="names palace"):
        PostgresBackend().get_collection(palace=second, collection_name="mempalace_drawers")


def test_explicit_dsn_must_match_marker(open_col, backend, tmp_path):
    open_col()
    ref = PalaceRef(id=str(tmp_path / "palace"), local_path=str(tmp_path / "palace"))
    with pytest.raises(BackendMismatchError):
        backend.get_collection(palace=ref, collection_name="mempalace_drawers",
                               options={"dsn": "postgresql://other-host:5432/other"})


def test_new_palace_dsn_from_environment(tmp_path, fresh_db, monkeypatch):
    monkeypatch.setenv("PALACE_PG_DSN", fresh_db)
    b = PostgresBackend()
    try:
        col = b.get_collection(str(tmp_path / "p"), collection_name="mempalace_drawers", create=True)
        col.add(ids=["a"], documents=["a"], embeddings=[[1, 0]])
        assert col.count() == 1
    finally:
        b.close()
    assert os.path.isfile(tmp_path / "p" / MARKER_NAME)


def test_read_only_open_refuses_writes(open_col):
    open_col().add(ids=["a"], documents=["a"], embeddings=[[1, 0]])
    ro = open_col(create=False, read_only=True)
    assert ro.count() == 1
    with pytest.raises(PermissionError):
        ro.add(ids=["b"], documents=["b"], embeddings=[[1, 0]])


def test_concurrent_writers_on_distinct_connections(open_col, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    seed = open_col()
    seed.add(ids=["seed"], documents=["seed"], embeddings=[[1, 0]])
    errors = []

    def writer(worker):
        b = PostgresBackend()
        try:
            col = b.get_collection(str(tmp_path / "palace"), "mempalace_drawers", True)
            for i in range(20):
                col.upsert(ids=[f"w{worker}-{i}"], documents=["d"], metadatas=[{"w": worker}], embeddings=[[1, i]])
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            b.close()

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(writer, range(6)))
    assert errors == []
    assert seed.count() == 121
    seqs = seed.get_all_rows(include=[]).ids
    assert len(set(seqs)) == 121
