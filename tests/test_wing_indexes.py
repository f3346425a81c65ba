"""Per-wing partial HNSW indexes after the cutover (`palace-pg maintain`), against numpy exact search.

A generated palace is migrated; before maintenance wing filters answer exactly
as they always did, ``maintain`` builds a valid partial index for each wing
above ``--min-rows`` (and a rerun does nothing), and afterwards the planner
answers wing filters from those indexes with the exact top-k.
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import psycopg
import pytest
from palaces import generated as generated_palace
from pgvector.psycopg import register_vector

from palace_pg import engine, query_sets
from palace_pg.backend import PostgresBackend, wing_indexes
from palace_pg.backend.filters import compile_where
from palace_pg.backend.search_plan import WING_HNSW, WING_INDEX_SETTINGS
from palace_pg.cli import main as cli_main
from palace_pg.phases.base import MigrationOptions
from palace_pg.testing import backend as pg_testing

DRAWERS = 1200
K = 10


@pytest.fixture(scope="module")
def migrated(pg_server, tmp_path_factory):
    """The generated palace after `migrate` (no maintenance); yields (dsn, ids, wings, rooms, vectors, min_rows)."""
    name = f"t_wingidx_{uuid.uuid4().hex[:10]}"
    dsn = pg_server.create_database(name)
    work = tmp_path_factory.mktemp("wing_work")
    engine.migrate(MigrationOptions(palace=generated_palace(DRAWERS, 7), dsn=dsn, batch_size=256,
                                    work_dir=work / "work", recall_queries=10))
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        rows = conn.execute("SELECT id, wing, room, embedding FROM mempalace.drawers ORDER BY id").fetchall()
    ids = [r[0] for r in rows]
    wings = np.array([r[1] or "" for r in rows])  # "": a drawer without a wing
    rooms = np.array([r[2] or "" for r in rows])
    vectors = np.stack([np.asarray(r[3].to_numpy(), dtype=np.float32) for r in rows])
    sizes = _wing_sizes(wings)
    min_rows = max(sizes.values()) // 2  # the largest wing (at least) indexed, the small ones not
    assert any(n <= min_rows for n in sizes.values()), sizes
    yield dsn, ids, wings, rooms, vectors, min_rows
    pg_server.drop_database(name)


@pytest.fixture
def collection(migrated, tmp_path):
    dsn = migrated[0]
    backend = PostgresBackend()
    path = pg_testing.claim_palace(tmp_path / "palace", dsn, {"mempalace_drawers": migrated[4].shape[1]})
    # exact_max_rows below the indexed wings: their filters leave the exact plan for the wing index
    yield backend.get_collection(str(path), "mempalace_drawers", False,
                                 options={"wing_index_min_rows": migrated[5], "exact_max_rows": migrated[5]})
    backend.close()


def _wing_sizes(wings) -> dict[str, int]:
    return {str(w): int((wings == w).sum()) for w in set(wings) if w}


def _maintain(dsn: str, min_rows: int, capsys) -> dict:
    assert cli_main(["maintain", "--dsn", dsn, "--min-rows", str(min_rows), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    return {c["collection"]: c for c in out["collections"]}["mempalace_drawers"]


def _exact(vectors, mask, q, k=K):
    idx = np.flatnonzero(mask)
    dist = 1.0 - (vectors[idx] @ q) / (np.linalg.norm(vectors[idx], axis=1) * np.linalg.norm(q))
    return np.sort(dist)[:k]


def _check_answers(collection, migrated, where_of, n_queries=12, expect_plan=None):
    vectors = migrated[4]
    queries = query_sets.mixtures(vectors, n_queries, np.random.default_rng(5)).vectors
    plans = set()
    for i, q in enumerate(queries):
        where, mask = where_of(i)
        res = collection.query(query_embeddings=[q], n_results=K, where=where,
                               include=["metadatas", "distances"])
        assert len(res.ids[0]) == min(K, int(mask.sum()))
        assert all(m["wing"] == where_wing(where) for m in res.metadatas[0])
        # the exact top-k: same distances (ids may swap only among exact ties)
        np.testing.assert_allclose(res.distances[0], _exact(vectors, mask, q, len(res.ids[0])), atol=2e-5)
        with collection._handle.pool.connection() as conn:
            plans.add(collection._planner.choose(conn, collection.table, compile_where(where),
                                                 wing_indexes.wing_of(where)).kind)
    if expect_plan:
        assert plans == {expect_plan}
    return plans


def where_wing(where):
    return wing_indexes.wing_of(where)[0]


def _largest_wing(migrated):
    sizes = _wing_sizes(migrated[2])
    return max(sizes, key=sizes.get)


def test_migrate_alone_answers_wing_filters_exactly(migrated, collection):
    with psycopg.connect(migrated[0], autocommit=True) as conn:  # no maintenance yet: no wing indexes
        assert wing_indexes.valid_names(conn, "drawers") == frozenset()
    wing = _largest_wing(migrated)
    plans = _check_answers(collection, migrated, lambda i: ({"wing": wing}, migrated[2] == wing))
    assert WING_HNSW not in plans


def test_maintain_builds_valid_wing_indexes_and_a_rerun_does_nothing(migrated, capsys):
    dsn, _ids, wings, _rooms, _vectors, min_rows = migrated
    expected = {w for w, n in _wing_sizes(wings).items() if n > min_rows}
    first = _maintain(dsn, min_rows, capsys)
    assert set(first["wings"]) == expected
    assert first["status"] == "ran" and set(first["built"]) | set(first["kept"]) == expected
    assert all(v["state"] == "valid" for v in first["wings"].values())
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = wing_indexes.valid_names(conn, "drawers")
        assert names == {wing_indexes.index_name("drawers", w) for w in expected}
        for w in expected:  # a partial HNSW index on exactly that wing
            definition = conn.execute("SELECT pg_get_indexdef(to_regclass(%s))",
                                      [f"mempalace.{wing_indexes.index_name('drawers', w)}"]).fetchone()[0]
            assert "USING hnsw" in definition and f"WHERE (wing = '{w}'" in definition
    again = _maintain(dsn, min_rows, capsys)
    assert again["status"] == "noop" and again["built"] == [] and set(again["kept"]) == expected
    assert cli_main(["maintain", "--dsn", dsn, "--min-rows", str(min_rows)]) == 0  # what an operator reads
    text = capsys.readouterr().out
    assert "mempalace_drawers: noop" in text and f"kept {len(expected)} of {len(expected)} large wings" in text


def test_filtered_search_uses_the_wing_index_and_matches_exact(migrated, collection, capsys):
    dsn, _ids, wings, rooms, _vectors, min_rows = migrated
    _maintain(dsn, min_rows, capsys)
    collection._planner.forget(collection.table)
    wing = _largest_wing(migrated)
    _check_answers(collection, migrated, lambda i: ({"wing": wing}, wings == wing), expect_plan=WING_HNSW)
    # the server really scans the partial index (the bound wing proves its predicate)
    with collection._handle.pool.connection() as conn, conn.transaction():
        conn.execute(WING_INDEX_SETTINGS)
        plan = conn.execute("EXPLAIN SELECT id FROM mempalace.drawers WHERE wing = %s "
                            "ORDER BY embedding <=> %s LIMIT 10",
                            [wing, np.ones(migrated[4].shape[1], dtype=np.float32)], prepare=False).fetchall()
    assert wing_indexes.index_name("drawers", wing) in " ".join(r[0] for r in plan)
    # a wing and a room: the wing's index with an iterative scan (exact for a room within exact_max_rows)
    room = str(rooms[wings == wing][0])
    _check_answers(collection, migrated, lambda i: ({"$and": [{"wing": wing}, {"room": room}]},
                                                    (wings == wing) & (rooms == room)))
    small = next(w for w, n in _wing_sizes(wings).items() if n <= min_rows)
    plans = _check_answers(collection, migrated, lambda i: ({"wing": small}, wings == small), n_queries=4)
    assert WING_HNSW not in plans


def test_run_maintenance_rebuilds_an_invalid_wing_index(migrated, collection, capsys):
    dsn, _ids, _wings, _rooms, _vectors, min_rows = migrated
    _maintain(dsn, min_rows, capsys)
    wing = _largest_wing(migrated)
    name = wing_indexes.index_name("drawers", wing)
    with psycopg.connect(dsn, autocommit=True) as conn:  # what an interrupted CREATE INDEX CONCURRENTLY leaves
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = to_regclass(%s)", [f"mempalace.{name}"])
    result = collection.run_maintenance(wing_indexes.KIND)
    assert result.status == "ran" and wing in result.stats["rebuilt"], result
    assert result.stats["wings"][wing]["state"] == "valid"
    assert collection.run_maintenance(wing_indexes.KIND).status == "noop"


@pytest.mark.parametrize("where, expected", [
    ({"wing": "a"}, ("a", True)), ({"wing": {"$eq": "a"}}, ("a", True)),
    ({"$and": [{"wing": "a"}, {"room": "r"}]}, ("a", False)), ({"room": "r"}, (None, False)),
    ({"wing": {"$in": ["a"]}}, (None, False)), ({"$or": [{"wing": "a"}, {"wing": "b"}]}, (None, False)),
    ({"$and": [{"wing": "a"}, {"wing": "b"}]}, (None, False)), (None, (None, False)),
])
def test_wing_of(where, expected):
    assert wing_indexes.wing_of(where) == expected
