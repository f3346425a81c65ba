"""kNN plans of the postgres backend on a generated palace, against numpy brute force (no mocks).

The palace is ``palace_pg.testing.backend.synthetic_drawers``: clustered vectors, each
cluster in one of the generator's wings (juniper_notes 1%, delta_infra 11%, atlas_api 30%),
the hard case for HNSW's post-filtering.  Filtered queries must return k rows of the wing at recall 1.0
whatever plan runs; the HNSW settings must be configurable and must not leak
between plans or into other statements on the pooled connections.
"""

from __future__ import annotations

import uuid

import chromadb
import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from palace_pg import metrics
from palace_pg.backend import PostgresBackend
from palace_pg.testing import backend as pg_testing
from palace_pg.backend.filters import _could_be_other_type, compile_where
from palace_pg.backend.search_plan import EXACT, HNSW, ITERATIVE, Columns

ROWS = 6000
K = 10


@pytest.fixture(scope="module")
def generated(pg_server):
    """ROWS generated drawers, loaded and indexed as the migration leaves them; yields (dsn, data)."""
    name = f"t_search_{uuid.uuid4().hex[:10]}"
    dsn = pg_server.create_database(name)
    data = pg_testing.synthetic_drawers(ROWS, n_queries=30, noise=0.75, doc_words=8)
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        table = pg_testing.create_collection_table(conn, "mempalace_drawers", 384)
        with conn.transaction():
            pg_testing.copy_rows(conn, table, data.ids, data.documents, data.metadatas, data.embeddings)
        pg_testing.build_indexes(conn, table)
    yield dsn, data
    pg_server.drop_database(name)


@pytest.fixture
def open_palace(generated, tmp_path):
    dsn, _data = generated
    backends = []

    def make(**options):
        # the generated palace is small enough to be searched exactly when unfiltered: these tests are
        # about the HNSW plans, so the index is used unless a test asks otherwise
        options.setdefault("exact_unfiltered_max_rows", 0)
        path = tmp_path / f"palace_{len(backends)}"
        pg_testing.claim_palace(path, dsn, {"mempalace_drawers": 384})
        backend = PostgresBackend()
        backends.append(backend)
        return backend.get_collection(str(path), "mempalace_drawers", False, options=options or None)

    yield make
    for b in backends:
        b.close()


def _truth(data, query, wing):
    idx = np.array([i for i, m in enumerate(data.metadatas) if wing is None or m["wing"] == wing])
    dist = 1.0 - data.embeddings[idx] @ query
    order = np.argsort(dist, kind="stable")[:K]
    return [data.ids[idx[j]] for j in order], dist[order]


def _session(col, setting):
    with col._handle.pool.connection() as conn:
        return conn.execute("SELECT current_setting(%s)", [setting]).fetchone()[0]


def _plan(col, where):
    with col._handle.pool.connection() as conn:
        return col._handle.planner.choose(conn, col.table, compile_where(where)).kind


@pytest.mark.parametrize("wing", ["juniper_notes", "delta_infra", "atlas_api"])
def test_filtered_query_is_exact(open_palace, generated, wing):
    _dsn, data = generated
    col = open_palace()
    assert _plan(col, {"wing": wing}) == EXACT
    for q in data.queries[:15]:
        res = col.query(query_embeddings=[q], n_results=K, where={"wing": wing},
                        include=["metadatas", "distances", "documents"])
        want_ids, want_dist = _truth(data, q, wing)
        assert set(res.ids[0]) == set(want_ids)  # recall 1.0
        assert all(m["wing"] == wing for m in res.metadatas[0])
        assert all(isinstance(d, str) and d for d in res.documents[0])
        assert res.distances[0] == sorted(res.distances[0])
        np.testing.assert_allclose(res.distances[0], want_dist, atol=1e-5)


def test_unfiltered_query_recall(open_palace, generated):
    _dsn, data = generated
    col = open_palace()
    recalls = []
    for q in data.queries:
        res = col.query(query_embeddings=[q], n_results=K, include=["distances"])
        assert len(res.ids[0]) == K
        recalls.append(len(set(res.ids[0]) & set(_truth(data, q, None)[0])) / K)
    assert np.mean(recalls) >= 0.97


def test_large_subset_takes_the_iterative_plan_and_still_returns_k_rows(open_palace, generated):
    _dsn, data = generated
    col = open_palace(exact_max_rows=50)  # every wing above 50 rows goes to the HNSW iterative scan
    assert _plan(col, {"wing": "delta_infra"}) == ITERATIVE
    for q in data.queries[:10]:
        res = col.query(query_embeddings=[q], n_results=K, where={"wing": "delta_infra"}, include=["metadatas"])
        assert len(res.ids[0]) == K
        assert all(m["wing"] == "delta_infra" for m in res.metadatas[0])
    assert _session(col, "hnsw.iterative_scan") == "relaxed_order"
    assert _session(col, "hnsw.ef_search") == str(col._handle.planner.settings.iterative_ef_search)
    # the next unfiltered query puts the session back to a plain scan
    col.query(query_embeddings=[data.queries[0]], n_results=K)
    assert _session(col, "hnsw.iterative_scan") == "off"


def test_ef_search_is_configurable(open_palace, generated, monkeypatch):
    _dsn, data = generated
    monkeypatch.delenv("PALACE_PG_EF_SEARCH", raising=False)
    q = [data.queries[0]]
    default = open_palace()
    default.query(query_embeddings=q, n_results=K)
    assert _session(default, "hnsw.ef_search") == "200"
    default.query(query_embeddings=q, n_results=30)  # ef grows with k
    assert _session(default, "hnsw.ef_search") == "300"

    tuned = open_palace(ef_search=37, ef_per_k=0, rows_per_ef=0)
    tuned.query(query_embeddings=q, n_results=K)
    assert _session(tuned, "hnsw.ef_search") == "37"
    tuned.query(query_embeddings=q, n_results=50)  # never below k
    assert _session(tuned, "hnsw.ef_search") == "50"

    monkeypatch.setenv("PALACE_PG_EF_SEARCH", "23")
    from_env = open_palace(ef_per_k=0, rows_per_ef=0)
    from_env.query(query_embeddings=q, n_results=K)
    assert _session(from_env, "hnsw.ef_search") == "23"
    assert open_palace(ef_search=41)._handle.planner.settings.ef_search == 41  # options beat the environment


def test_exact_plan_leaves_no_setting_behind(open_palace, generated):
    _dsn, data = generated
    col = open_palace()
    col.query(query_embeddings=[data.queries[0]], n_results=K, where={"wing": "atlas_api"})
    assert _session(col, "enable_seqscan") == "on"


def test_exact_plan_reads_only_the_wing(open_palace, generated):
    """A 30% wing is read through the (wing, room) btree, not by a scan of the whole table."""
    _dsn, data = generated
    col = open_palace()
    planner = col._handle.planner
    with col._handle.pool.connection() as conn:
        plans = []
        real = conn.execute

        def spy(query, params=None, **kw):
            if not isinstance(query, str) and "cosine_distance" in query.as_string(conn):
                plans.append(real(psycopg.sql.SQL("EXPLAIN ") + query, params, **kw).fetchall())
            return real(query, params, **kw)

        conn.execute = spy
        try:
            planner.knn(conn, col.table, data.queries[0], K, compile_where({"wing": "atlas_api"}), Columns())
        finally:
            del conn.execute
    text = "\n".join(r[0] for r in plans[0])
    assert "Seq Scan" not in text and "drawers_wing_room" in text


@pytest.mark.parametrize("text,other", [
    ("wing02", False), ("", False), ("5x", False), ("True", False), ("null", False), ("a[1]", False),
    ("5", True), ("-1.5", True), ("1e5", True), ("nan", True), (" 7", True), ("true", True), ("false", True),
    ("[1]", True), ("{}", True),
])
def test_type_test_is_kept_only_where_a_non_string_could_match(text, other):
    assert _could_be_other_type(text) is other
    sql_text = repr(compile_where({"wing": text}).sql)
    assert ("jsonb_typeof" in sql_text) is other


TYPED = {
    "s5": {"wing": "5", "room": "r"}, "i5": {"wing": 5, "room": "r"}, "f5": {"wing": 5.0, "room": "r"},
    "st": {"wing": "true", "room": "r"}, "bt": {"wing": True, "room": "r"}, "w": {"wing": "wing02", "room": "r"},
    "l": {"wing": ["wing02"], "room": "r"}, "ls": {"wing": "[\"wing02\"]", "room": "r"}, "none": {"room": "r"},
}
TYPED_WHERES = [
    {"wing": "5"}, {"wing": 5}, {"wing": "true"}, {"wing": True}, {"wing": "wing02"}, {"wing": "[\"wing02\"]"},
    {"wing": {"$in": ["wing02", "x"]}}, {"wing": {"$in": ["5", "wing02"]}}, {"wing": {"$ne": "wing02"}},
    {"wing": {"$nin": ["wing02", "5"]}}, {"$and": [{"wing": "wing02"}, {"room": "r"}]},
]


@pytest.fixture(scope="module")
def typed_oracle():
    col = chromadb.EphemeralClient().create_collection(f"typed-{uuid.uuid4().hex[:8]}", embedding_function=None,
                                                       metadata={"hnsw:space": "cosine"})
    ids = list(TYPED)
    col.add(ids=ids, metadatas=[TYPED[i] for i in ids], embeddings=[[1.0, float(n)] for n in range(len(ids))])
    return col


@pytest.mark.parametrize("where", TYPED_WHERES, ids=repr)
def test_indexed_column_equality_keeps_chroma_types(fresh_db, tmp_path, typed_oracle, where):
    path = tmp_path / "palace"
    backend = PostgresBackend()
    try:
        col = backend.get_collection(str(path), "mempalace_drawers", True, options={"dsn": fresh_db})
        ids = list(TYPED)
        col.add(ids=ids, metadatas=[TYPED[i] for i in ids], documents=ids,
                embeddings=[[1.0, float(n)] for n in range(len(ids))])
        expected = sorted(typed_oracle.get(where=where)["ids"])
        assert sorted(col.get(where=where).ids) == expected
        found = col.query(query_embeddings=[[1.0, 0.5]], n_results=len(ids), where=where, include=[])
        assert sorted(found.ids[0]) == expected
    finally:
        backend.close()


def test_small_collection_unfiltered_is_exact(open_palace, generated):
    """Below exact_unfiltered_max_rows an unfiltered search scans exactly: the true top-k, in order."""
    _dsn, data = generated
    col = open_palace(exact_unfiltered_max_rows=len(data.ids))
    assert _plan(col, None) == EXACT
    truth = metrics.exact_topk(data.queries[:5], data.embeddings, data.ids, 20)
    returned = [col.query(query_embeddings=[q], n_results=20).distances[0] for q in data.queries[:5]]
    assert metrics.recall_at_k(returned, truth) == 1.0
    assert all(d == sorted(d) for d in returned)
    assert _plan(open_palace(exact_unfiltered_max_rows=len(data.ids) - 1), None) == HNSW


def test_ef_search_grows_with_the_table():
    from palace_pg.backend.settings import SearchSettings

    s = SearchSettings()
    assert s.ef_for(10, rows=5_500) == 200 and s.ef_for(30, rows=5_500) == 300  # floor and k rule
    assert s.ef_for(10, rows=40_000) == 200 and s.ef_for(10, rows=96_000) == 300
    assert s.ef_for(10, rows=160_000) == 500 and s.ef_for(10, rows=10**7) == 1000  # pgvector's cap
    assert SearchSettings(rows_per_ef=0).ef_for(10, rows=160_000) == 200
