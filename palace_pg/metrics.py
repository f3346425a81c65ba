"""Search quality and latency figures, one definition each: exact top-k, recall@k, percentiles.

Phase 6, the 03_verify measurements and the benchmarks all score through this
module, so one index gets one recall figure whoever measures it.

* **Exact top-k** is cosine distance (``1 - cos``, what pgvector's ``<=>`` and
  Chroma's ``cosine`` space return) in float64 over every candidate row,
  streamed in batches so memory stays flat; a query may be restricted to the
  rows of one group (a wing).
* **recall@k** counts a returned row as a hit when its distance is within
  ``TIE`` of the exact k-th distance: duplicate vectors tie at the k-th place
  and either of them is a right answer.  Hits are capped at the rows that
  exist (a wing of 3 rows has recall 1.0 with 3 rows).
* **Percentiles** are numpy's linear interpolation (``np.percentile``),
  never nearest-rank.
"""

from __future__ import annotations

import statistics
from typing import Iterable, Sequence

import numpy as np

#: Distance slack for a hit.  pgvector and hnswlib compute distances in float32 (relative error
#: ~1e-7 per term over 384 terms); the exact side is float64.  1e-5 is above that rounding and far
#: below the gap between distinct MiniLM neighbours (~1e-3).
TIE = 1e-5

#: Percentiles reported for latency samples.
LATENCY_PERCENTILES = (50, 95, 99)

_ALL = "\0all"


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    v = np.asarray(vectors, dtype=np.float64)
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(n == 0, 1, n)


class ExactTopK:
    """Running exact top-k (cosine distance) of a set of queries over streamed batches of rows.

    ``groups`` (one per query, ``None`` for all rows) restricts a query to the
    rows added with that label, e.g. the wing a filtered search asks for.
    """

    def __init__(self, queries: np.ndarray, k: int, groups: Sequence[str | None] | None = None) -> None:
        self.q = unit(queries)
        self.k = int(k)
        self.groups = None if groups is None else np.array([_ALL if g is None else g for g in groups], dtype=object)
        self.dist = np.full((len(self.q), self.k), np.inf)
        self.ids = np.full((len(self.q), self.k), None, dtype=object)

    def add(self, ids: Sequence[str], vectors: np.ndarray, labels: Sequence[str | None] | None = None) -> None:
        if not len(ids) or not len(self.q):
            return
        d = 1.0 - self.q @ unit(vectors).T
        if self.groups is not None:
            if labels is None:
                raise ValueError("grouped queries need a label for every row")
            row_labels = np.array(labels, dtype=object)
            d[(self.groups[:, None] != _ALL) & (self.groups[:, None] != row_labels[None, :])] = np.inf
        batch_ids = np.array(ids, dtype=object)
        # only each query's k best of this batch can enter its running top-k
        if d.shape[1] > self.k:
            part = np.argpartition(d, self.k - 1, axis=1)[:, : self.k]
            d, batch_ids = np.take_along_axis(d, part, axis=1), batch_ids[part]
        else:
            batch_ids = np.broadcast_to(batch_ids, d.shape)
        all_d = np.concatenate([self.dist, d], axis=1)
        all_ids = np.concatenate([self.ids, batch_ids], axis=1)
        keep = np.argsort(all_d, axis=1, kind="stable")[:, : self.k]
        self.dist = np.take_along_axis(all_d, keep, axis=1)
        self.ids = np.take_along_axis(all_ids, keep, axis=1)

    @property
    def kth(self) -> np.ndarray:
        """The exact k-th distance of every query (inf when fewer than k rows qualify)."""
        return self.dist[:, self.k - 1]

    @property
    def expected(self) -> np.ndarray:
        """How many rows a perfect answer returns per query: k, or fewer when fewer rows qualify."""
        return np.isfinite(self.dist).sum(axis=1)

    def truncated(self, k: int) -> "ExactTopK":
        """The exact top-``k`` (k ≤ self.k) from the same pass: recall@10 and @20 from one top-20."""
        if k > self.k:
            raise ValueError(f"top-{k} asked of a top-{self.k}")
        out = object.__new__(ExactTopK)
        out.q, out.k, out.groups = self.q, int(k), self.groups
        out.dist, out.ids = self.dist[:, :k], self.ids[:, :k]
        return out

    def top_ids(self, i: int) -> list[str]:
        return [x for x, d in zip(self.ids[i], self.dist[i]) if np.isfinite(d)]


def exact_topk(queries: np.ndarray, vectors: np.ndarray, ids: Sequence[str], k: int, *,
               groups: Sequence[str | None] | None = None, labels: Sequence[str | None] | None = None,
               batch: int = 20_000) -> ExactTopK:
    """Exact top-k of ``queries`` over rows held in memory (batched: memory ~ queries × batch)."""
    top = ExactTopK(queries, k, groups)
    for start in range(0, len(ids), batch):
        end = start + batch
        top.add(ids[start:end], vectors[start:end], None if labels is None else labels[start:end])
    return top


def query_hits(distances: Iterable[float], kth: float, expected: int) -> int:
    """Returned rows within ``TIE`` of the exact k-th distance, at most ``expected``."""
    return min(int(expected), sum(1 for d in distances if d <= kth + TIE))


def per_query_recall(returned: Sequence[Sequence[float]], truth: ExactTopK,
                     index: Sequence[int] | None = None) -> np.ndarray:
    """recall@k of each query: ``returned[j]`` are the distances returned for query ``index[j]``."""
    index = range(len(returned)) if index is None else index
    out = []
    for dists, i in zip(returned, index):
        expected = int(truth.expected[i])
        out.append(query_hits(dists, truth.kth[i], expected) / expected if expected else 1.0)
    return np.array(out)


def recall_at_k(returned: Sequence[Sequence[float]], truth: ExactTopK, index: Sequence[int] | None = None) -> float:
    """recall@k over queries: all hits over all expected rows (rounded to 4 places)."""
    index = list(range(len(returned)) if index is None else index)
    hits = sum(query_hits(d, truth.kth[i], truth.expected[i]) for d, i in zip(returned, index))
    total = int(sum(truth.expected[i] for i in index))
    return round(hits / total, 4) if total else 1.0


def percentiles(values: Sequence[float], ps: Sequence[int] = LATENCY_PERCENTILES, *, suffix: str = "_ms",
                digits: int = 3) -> dict[str, float]:
    """``{"p50_ms": …, "p95_ms": …}``: linear interpolation between samples."""
    arr = np.asarray(values, dtype=np.float64)
    return {f"p{p}{suffix}": round(float(np.percentile(arr, p)), digits) for p in ps} if arr.size else {}


def spread(values: Sequence[float], digits: int = 2) -> dict:
    """Median, min, max and count of repeated runs of one figure."""
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "runs": len(values)}
