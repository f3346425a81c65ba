"""The measurements 03_verify plots: recall@10 against ef_search, latency, filtered recall by wing, KG parity.

Chroma is only ever opened on a *snapshot copy* of the palace (chromadb writes
into any palace it opens); PostgreSQL is queried with plain SQL on the target
schema (the same statements the backend issues for a nearest-neighbour search).

Ground truth is exact cosine top-10 over every drawer, computed in one
streaming pass over the copy, so memory stays flat whatever the palace size.
A returned row counts as a hit when its distance is within the true 10th
distance (ties among duplicate vectors are not misses).
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

from ..target_db import schema

log = logging.getLogger(__name__)

K = 10
PAGE = 5000
TIE = 1e-5


@dataclass
class Queries:
    """Query vectors (sampled rows, nudged off themselves) and the exact answer for each."""

    vectors: np.ndarray
    wing: list[str | None]  # None: unfiltered; else the query is restricted to that wing
    kth: np.ndarray = field(default=None)  # exact 10th distance per query (inf if fewer rows)
    wing_rows: dict = field(default_factory=dict)


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


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(n == 0, 1, n)


def sample_queries(col, *, unfiltered: int, per_wing: int, seed: int = 0) -> Queries:
    """Sample query rows (all wings, then per wing) and compute their exact top-10 in one pass."""
    rng = np.random.default_rng(seed)
    ids, wings = [], []
    for page in _pages(col, ["metadatas"]):
        ids += page["ids"]
        wings += [(m or {}).get("wing") for m in page["metadatas"]]
    picks: list[tuple[int, str | None]] = [(int(i), None) for i in
                                           rng.choice(len(ids), size=min(unfiltered, len(ids)), replace=False)]
    by_wing: dict[str, list[int]] = {}
    for i, w in enumerate(wings):
        if w is not None:
            by_wing.setdefault(w, []).append(i)
    for w, rows in sorted(by_wing.items()):
        picks += [(int(i), w) for i in rng.choice(rows, size=min(per_wing, len(rows)), replace=False)]
    got = col.get(ids=sorted({ids[i] for i, _ in picks}), include=["embeddings"])
    vec_by_id = dict(zip(got["ids"], np.asarray(got["embeddings"], dtype=np.float32)))
    vectors = np.stack([vec_by_id[ids[i]] for i, _ in picks])
    vectors = vectors + rng.normal(0, 0.02, size=vectors.shape).astype(np.float32)
    q = Queries(vectors, [w for _, w in picks], wing_rows={w: len(r) for w, r in by_wing.items()})
    q.kth = _exact_kth(col, q)
    return q


def _exact_kth(col, q: Queries) -> np.ndarray:
    """The exact 10th cosine distance for every query (restricted to its wing when it has one)."""
    qn = _unit(q.vectors).astype(np.float64)
    best = np.full((len(qn), K), np.inf)
    qwing = np.array([w if w is not None else "\0all" for w in q.wing], dtype=object)
    for page in _pages(col, ["embeddings", "metadatas"]):
        vn = _unit(np.asarray(page["embeddings"], dtype=np.float32)).astype(np.float64)
        d = 1.0 - qn @ vn.T
        pwing = np.array([(m or {}).get("wing") for m in page["metadatas"]], dtype=object)
        d[(qwing[:, None] != "\0all") & (qwing[:, None] != pwing[None, :])] = np.inf
        best = np.sort(np.concatenate([best, d], axis=1), axis=1)[:, :K]
    return best[:, K - 1]


def _hits(distances: list[float], kth: float) -> int:
    return sum(1 for d in distances if d <= kth + TIE)


def _expected(q: Queries, i: int) -> int:
    rows = q.wing_rows.get(q.wing[i]) if q.wing[i] is not None else None
    return min(K, rows) if rows is not None else K


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
    """recall@10 (and mean latency) per ef_search for Chroma HNSW, pgvector HNSW and exact search."""
    copy, collection, conn, table = s.copy, s.collection, s.conn, s.table
    idx = [i for i, w in enumerate(q.wing) if w is None]
    rows = []
    original = copy.collection(collection).configuration_json.get("hnsw", {}).get("ef_search", 100)
    for ef in grid:
        col = copy.set_ef(collection, ef)
        for engine, run in (("Chroma HNSW", lambda v: chroma_query(col, v)),
                            ("pgvector HNSW", lambda v: pg_query(conn, table, v)),
                            ("PostgreSQL exact", lambda v: pg_query(conn, table, v))):
            if engine != "Chroma HNSW":
                pg_mode(conn, "exact" if engine == "PostgreSQL exact" else "hnsw", ef)
            recall, times = _score(run, q, idx)
            rows.append({"engine": engine, "ef_search": ef, "recall@10": recall,
                         "mean_ms": round(float(np.mean(times)), 3), "queries": len(idx)})
    copy.set_ef(collection, original)
    return rows


def _score(run, q: Queries, idx: list[int]) -> tuple[float, list[float]]:
    """(recall@10 against exact search, per-query ms) of one engine over the queries ``idx``."""
    hits = total = 0
    times = []
    for i in idx:
        dists, ms = run(q.vectors[i])
        hits += _hits(dists, q.kth[i])
        total += _expected(q, i)
        times.append(ms)
    return (round(hits / total, 4) if total else 1.0), times


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
    return {"ef_search": ef, "samples_ms": samples, "percentiles": percentiles(samples)}


def percentiles(samples: dict[str, list[float]]) -> list[dict]:
    return [{"engine": k, "queries": len(v), **{f"p{p}_ms": round(float(np.percentile(v, p)), 3) for p in (50, 95, 99)}}
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
                         "recall@10": recall,
                         "p50_ms": round(float(np.median(times)), 3),
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
