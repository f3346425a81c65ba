"""The measurements 03_verify plots: recall@10 against ef_search, latency, filtered recall by wing, KG parity.

Chroma is only ever opened on a *snapshot copy* of the palace (chromadb writes
into any palace it opens); PostgreSQL is queried with plain SQL on the target
schema (the same statements the backend issues for a nearest-neighbour search).

Ground truth is exact cosine top-10 over every drawer (palace_pg.metrics,
the definitions phase 6 and the benchmarks use), computed in one streaming
pass over the copy, so memory stays flat whatever the palace size.  Queries
look like real ones (palace_pg.query_sets): held-out questions embedded with
MiniLM when the palace's vectors are MiniLM's, and off-distribution mixtures
of stored vectors; every row of every table names its query kind, k, engine
(HNSW or exact) and ef_search.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from psycopg import sql

from .. import metrics, query_sets
from ..target_db import schema

log = logging.getLogger(__name__)

K = 10
PAGE = 5000


@dataclass
class Queries:
    """Query vectors (each with its kind and, when filtered, its wing) and the exact answer for each."""

    vectors: np.ndarray
    wing: list[str | None]  # None: unfiltered; else the query is restricted to that wing
    kind: list[str] = field(default_factory=list)  # query_sets.TEXT or MIXTURE, per query
    truth: metrics.ExactTopK | None = None
    wing_rows: dict = field(default_factory=dict)

    @property
    def kth(self) -> np.ndarray:
        """Exact 10th distance per query (inf when the wing has fewer rows)."""
        return self.truth.kth


class ChromaCopy:
    """chromadb on a private copy of the palace, with ef_search settable."""

    def __init__(self, palace: Path, work_dir: Path | None = None) -> None:
        from ..source.kg_reader import resolve_kg_path
        from ..source.snapshot import take_snapshot

        self._root = Path(tempfile.mkdtemp(prefix="measure-", dir=work_dir))
        self.snapshot = take_snapshot(Path(palace), self._root, resolve_kg_path(Path(palace)))
        self._client = None

    def collection(self, name: str):
        import chromadb
        from chromadb.config import Settings

        if self._client is None:
            self._client = chromadb.PersistentClient(path=str(self.snapshot.palace),
                                                     settings=Settings(anonymized_telemetry=False))
        return self._client.get_collection(name, embedding_function=None)

    def set_ef(self, name: str, ef: int):
        """Set the collection's HNSW ef_search; chromadb applies it only to a freshly loaded index."""
        from chromadb.api.client import SharedSystemClient

        self.collection(name).modify(configuration={"hnsw": {"ef_search": int(ef)}})
        self._client = None
        SharedSystemClient.clear_system_cache()
        return self.collection(name)

    def close(self) -> None:
        from chromadb.api.client import SharedSystemClient

        self._client = None
        SharedSystemClient.clear_system_cache()
        shutil.rmtree(self._root, ignore_errors=True)


def _pages(col, include: list[str]):
    offset = 0
    while True:
        page = col.get(include=include, limit=PAGE, offset=offset)
        if not page["ids"]:
            return
        yield page
        offset += len(page["ids"])


def sample_queries(col, *, unfiltered: int, per_wing: int, seed: int = 0) -> Queries:
    """Unfiltered queries of every kind, then ``per_wing`` mixtures per wing; exact top-10 in one pass."""
    rng = np.random.default_rng(seed)
    ids, wings = [], []
    for page in _pages(col, ["metadatas"]):
        ids += page["ids"]
        wings += [(m or {}).get("wing") for m in page["metadatas"]]
    picks = sorted(int(i) for i in rng.choice(len(ids), size=min(max(unfiltered, per_wing), len(ids)), replace=False))
    got = col.get(ids=[ids[i] for i in picks], include=["embeddings", "documents"])
    sample = np.asarray(got["embeddings"], dtype=np.float32)
    sets = query_sets.for_palace(got["documents"], sample, unfiltered, seed)
    vectors = [qs.vectors for qs in sets]
    q_wing: list[str | None] = [None] * sum(len(v) for v in vectors)
    kinds = [qs.kind for qs in sets for _ in qs.vectors]
    by_wing: dict[str, int] = {}
    for w in wings:
        if w is not None:
            by_wing[w] = by_wing.get(w, 0) + 1
    mixed = next(qs for qs in sets if qs.kind == query_sets.MIXTURE).vectors
    for w in sorted(by_wing):  # filtered: the off-distribution queries, restricted to one wing each
        take = mixed[: min(per_wing, len(mixed))]
        vectors.append(take)
        q_wing += [w] * len(take)
        kinds += [query_sets.MIXTURE] * len(take)
    q = Queries(np.concatenate(vectors).astype(np.float32), q_wing, kinds, wing_rows=by_wing)
    q.truth = metrics.ExactTopK(q.vectors, K, groups=q.wing)
    for page in _pages(col, ["embeddings", "metadatas"]):
        q.truth.add(page["ids"], np.asarray(page["embeddings"], dtype=np.float32),
                    [(m or {}).get("wing") for m in page["metadatas"]])
    return q


# -- PostgreSQL ----------------------------------------------------------------------------
def _pg_stmt(table: str, filtered: bool) -> sql.Composed:
    where = sql.SQL("WHERE wing = %s ") if filtered else sql.SQL("")
    return sql.SQL("SELECT embedding <=> %s FROM {} {}ORDER BY embedding <=> %s LIMIT {}").format(
        schema.qualified(table), where, sql.Literal(K))


def pg_mode(conn, mode: str, ef: int = 100) -> None:
    """``hnsw``: force the HNSW index; ``exact``: force a sequential scan; ``planner``: as the backend runs."""
    conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(int(ef))))
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    conn.execute("SET enable_seqscan = " + ("off" if mode == "hnsw" else "on"))
    for knob in ("enable_indexscan", "enable_bitmapscan"):
        conn.execute(f"SET {knob} = " + ("off" if mode == "exact" else "on"))


def pg_query(conn, table: str, vector: np.ndarray, wing: str | None = None) -> tuple[list[float], float]:
    t0 = time.perf_counter()
    params = [vector, wing, vector] if wing is not None else [vector, vector]
    rows = conn.execute(_pg_stmt(table, wing is not None), params).fetchall()
    return [r[0] for r in rows], (time.perf_counter() - t0) * 1000


def chroma_query(col, vector: np.ndarray, wing: str | None = None) -> tuple[list[float], float]:
    t0 = time.perf_counter()
    res = col.query(query_embeddings=[vector], n_results=K, where={"wing": wing} if wing else None,
                    include=["distances"])
    return list(res["distances"][0]), (time.perf_counter() - t0) * 1000


# -- the measurements ----------------------------------------------------------------------
def recall_curve(s, q: Queries, grid: list[int]) -> list[dict]:
    """recall@10 (and mean latency) per ef_search and query kind: Chroma HNSW, pgvector HNSW, exact search."""
    copy, collection, conn, table = s.copy, s.collection, s.conn, s.table
    rows = []
    original = copy.collection(collection).configuration_json.get("hnsw", {}).get("ef_search", 100)
    kinds = list(dict.fromkeys(k for k, w in zip(q.kind, q.wing) if w is None))
    for ef in grid:
        col = copy.set_ef(collection, ef)
        for engine, run in (("Chroma HNSW", lambda v: chroma_query(col, v)),
                            ("pgvector HNSW", lambda v: pg_query(conn, table, v)),
                            ("PostgreSQL exact", lambda v: pg_query(conn, table, v))):
            if engine != "Chroma HNSW":
                pg_mode(conn, "exact" if engine == "PostgreSQL exact" else "hnsw", ef)
            for kind in kinds:
                idx = [i for i, (k, w) in enumerate(zip(q.kind, q.wing)) if w is None and k == kind]
                recall, times = _score(run, q, idx)
                rows.append({"engine": engine, "ef_search": ef if engine != "PostgreSQL exact" else None,
                             "grid_ef": ef, "k": K, "query_kind": kind, "recall@10": recall,
                             "mean_ms": round(float(np.mean(times)), 3), "queries": len(idx)})
    copy.set_ef(collection, original)
    return rows


def _score(run, q: Queries, idx: list[int]) -> tuple[float, list[float]]:
    """(recall@10 against exact search, per-query ms) of one engine over the queries ``idx``."""
    returned, times = [], []
    for i in idx:
        dists, ms = run(q.vectors[i])
        returned.append(dists)
        times.append(ms)
    return metrics.recall_at_k(returned, q.truth, idx), times


def latency(s, q: Queries, n: int, ef: int) -> dict:
    """Per-query latency samples (ms) of Chroma and PostgreSQL (HNSW at ``ef``), with p50/p95/p99."""
    copy, collection, conn, table = s.copy, s.collection, s.conn, s.table
    col = copy.set_ef(collection, ef)
    pg_mode(conn, "hnsw", ef)
    idx = [i for i, w in enumerate(q.wing) if w is None]
    order = [idx[j % len(idx)] for j in range(n)]
    samples: dict[str, list[float]] = {"Chroma HNSW": [], "PostgreSQL HNSW": []}
    for i in order[:5]:  # warm both caches first
        chroma_query(col, q.vectors[i])
        pg_query(conn, table, q.vectors[i])
    for i in order:
        samples["Chroma HNSW"].append(chroma_query(col, q.vectors[i])[1])
        samples["PostgreSQL HNSW"].append(pg_query(conn, table, q.vectors[i])[1])
    kinds = ", ".join(dict.fromkeys(q.kind[i] for i in idx))
    return {"ef_search": ef, "k": K, "query_kinds": kinds, "samples_ms": samples,
            "percentiles": percentiles(samples, ef=ef, kinds=kinds)}


def percentiles(samples: dict[str, list[float]], *, ef: int | None = None, kinds: str = "") -> list[dict]:
    return [{"engine": k, "k": K, "ef_search": ef, "query_kinds": kinds, "queries": len(v), **metrics.percentiles(v)}
            for k, v in samples.items() if v]


def filtered(s, q: Queries, ef: int) -> list[dict]:
    """Per wing: recall@10 and p50 latency of a search restricted to that wing, Chroma and PostgreSQL."""
    copy, collection, conn, table = s.copy, s.collection, s.conn, s.table
    col = copy.set_ef(collection, ef)
    pg_mode(conn, "planner", ef)
    rows = []
    for wing in sorted({w for w in q.wing if w is not None}, key=lambda w: -q.wing_rows[w]):
        idx = [i for i, w in enumerate(q.wing) if w == wing]
        plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + _pg_stmt(table, True),
                                                    [q.vectors[idx[0]], wing, q.vectors[idx[0]]]))
        for engine, run in (("Chroma HNSW", lambda v: chroma_query(col, v, wing)),
                            ("PostgreSQL", lambda v: pg_query(conn, table, v, wing))):
            recall, times = _score(run, q, idx)
            rows.append({"wing": wing, "wing_rows": q.wing_rows[wing], "engine": engine, "queries": len(idx),
                         "k": K, "ef_search": ef, "query_kind": q.kind[idx[0]], "recall@10": recall,
                         **metrics.percentiles(times, (50,)),
                         "plan": ("hnsw" if "hnsw" in plan else "btree + sort (exact)") if engine == "PostgreSQL"
                         else "hnsw + filter"})
    return rows


class Session:
    """What the measurements share: a Chroma copy of the source, a target connection, the drawers' names."""

    def __init__(self, palace: Path, dsn: str | None, work_dir: Path | None = None) -> None:
        from ..dsn import connect
        from ..source.palace import drawers_collection_name

        self.copy = ChromaCopy(palace, work_dir)
        self.conn = connect(dsn, autocommit=True, application_name="palace_pg runbook measure")
        # no server-side prepared statements: a cached plan would ignore the planner settings that switch
        # between the HNSW index and the exact scan (psycopg prepares after 5 executions by default)
        self.conn.prepare_threshold = None
        self.collection = drawers_collection_name()
        self.table = schema.table_for_collection(self.collection, self.collection)
        self.kg_copy = self.copy.snapshot.kg_path

    @property
    def drawers(self):
        return self.copy.collection(self.collection)

    def close(self) -> None:
        self.conn.close()
        self.copy.close()
