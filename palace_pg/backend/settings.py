"""Where a palace's database is, and how searches are tuned.

DSN, first match wins:

1. ``options["dsn"]`` passed to ``get_collection`` (programmatic use, tests);
   if the palace has a marker naming another database, that is a
   ``BackendMismatchError``, never a silent switch;
2. the palace's marker ``palace_pg.json`` (``PALACE_PG_DSN`` overrides the
   recorded target, see palace_pg/marker.py);
3. for a palace that has no marker yet (``mempalace init --backend postgres``
   then ``mine``): ``PALACE_PG_DSN``, then ``postgres_dsn`` in MemPalace's
   ``config.json``, then palace_pg's embedded server.  The first write-open
   then writes the marker, so the palace is found by detection afterwards.

Search tuning, first match wins: ``options``, environment
(``PALACE_PG_EF_SEARCH``, ``PALACE_PG_EXACT_MAX_ROWS``,
``PALACE_PG_EXACT_UNFILTERED_MAX_ROWS``, ``PALACE_PG_ROWS_PER_EF``), the ``search`` key
of ``backend_meta``, then the defaults below.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Optional

from ..dsn import resolve_dsn
from ..marker import Marker, has_marker, read_marker

ENV_DSN = "PALACE_PG_DSN"
CONFIG_DSN_KEY = "postgres_dsn"
#: pgvector's upper bound for hnsw.ef_search.
HNSW_EF_MAX = 1000


@dataclass(frozen=True)
class SearchSettings:
    #: hnsw.ef_search for unfiltered kNN (at least k): 100, Chroma 1.x's own, so that answers match
    #: what the palace gave before the move.  At 160K clustered synthetic drawers (m 16,
    #: ef_construction 100), three builds: recall@10 0.994 / 0.9975 / 0.9865 at 100 against
    #: 0.994 / 0.9965 / 0.9865 at 64, which is ~0.3 ms faster (PALACE_PG_EF_SEARCH=64).
    #: Since issue 14 the floor is 200: off-distribution queries at 40K rows (m 24 / ef_construction 200)
    #: gave recall@10 0.9895 at 100 and 0.995 at 200 (benchmarks/results/hnsw_params.json).
    ef_search: int = 200
    #: ef_search grows with k: at least ``ef_per_k * k`` (capped at pgvector's 1000).  MemPalace asks
    #: for a pool of 4n (20 for n = 5) for its re-rank.  Measured (benchmarks/bench_exact_threshold.py,
    #: 2 shared cores, synthetic drawers, 100 off-distribution mixture queries, m 16 / ef_construction 100):
    #: k 20 at ef 200 gave recall 1.0 at 10K–20K rows (p50 1.4–1.5 ms) but 0.9935 at 40K; k 10 at ef 100
    #: gave 0.976 at 40K.  So 10 is a floor, not yet the 0.995 target above ~20K (not measured at 160K).
    ef_per_k: int = 10
    #: ef_search grows with the table: at least ``rows / rows_per_ef`` (0: off; PALACE_PG_ROWS_PER_EF).
    #: Recall first: off-distribution mixture queries (benchmarks/results/hnsw_params*.json, 200
    #: queries, recall@10 / @20 against exact) lose recall with size at a fixed ef.  m 16 /
    #: ef_construction 100: 40K rows, ef 200 0.989 / 0.988, ef 400 0.9995 / 0.9998; 160K, ef 100 0.90 /
    #: 0.90, ef 500 0.96 / 0.97, ef 1000 0.988 / 0.991 (7.3 / 7.9 ms CPU a query).  Chroma (hnswlib
    #: M 16, ef 100) on the same 160K and queries: 0.951 / 0.949.  m 24 / ef_construction 200 (the
    #: default build since): 160K, ef 500 0.995 / 0.997 (3.8 / 4.2 ms CPU), ef 800 0.9975 / 0.9988.
    #: One ef per 320 rows: 500 at 160K, the ef_search floor (200) up to 64K; 0: the floor at any size.
    rows_per_ef: int = 320
    #: An unfiltered search of a collection of at most this many rows is exact (recall 1.0): the
    #: scan stays within a few ms there.  Measured through PostgresBackend with documents and
    #: metadatas (benchmarks/bench_exact_threshold.py, compacted table, 2 shared cores), exact p50
    #: k 10 / k 20: 2K rows 1.04 / 1.14 ms, 5.5K 1.82 / 2.00 ms, 10K 2.81 / 3.06 ms, 20K 6.93 / 7.89 ms,
    #: 40K 20.0 ms (HNSW: 0.8 / 1.4 ms).  Embedding the query with MiniLM costs ~35 ms.
    exact_unfiltered_max_rows: int = 10_000
    #: ``run_maintenance("wing_indexes")`` / ``palace-pg maintain`` give each wing above this many rows
    #: a partial HNSW index (backend/wing_indexes.py); smaller wings are searched exactly in a few ms.
    wing_index_min_rows: int = 10_000
    #: hnsw.ef_search on a wing's partial index (at least ``ef_for(k, iterative=True)``): at 160K, 400 gave
    #: recall@10 0.94 / 0.90 for the 11% / 30% wing against 0.83 / 0.81 at 200 (wing_indexes.py).
    wing_ef_search: int = 400
    #: A filter matching at most this many rows is searched exactly (recall 1.0).
    exact_max_rows: int = 100_000
    #: Larger filtered subsets: HNSW iterative scan with these settings, exact fallback if short.
    iterative_ef_search: int = 200
    max_scan_tuples: int = 200_000
    #: How long a filter's row count is reused to choose the plan (seconds).
    count_ttl: float = 60.0
    #: Lexical search: candidates scored with BM25 (Chroma keeps 500 too).
    lexical_window: int = 500

    def ef_for(self, k: int, *, iterative: bool = False, rows: int | None = None) -> int:
        """hnsw.ef_search for a top-``k`` search: the configured floor, raised with k and with the
        table's ``rows`` (when known), at most 1000."""
        floor = self.iterative_ef_search if iterative else self.ef_search
        by_size = int(rows) // self.rows_per_ef if rows and self.rows_per_ef > 0 else 0
        return min(HNSW_EF_MAX, max(floor, self.ef_per_k * int(k), int(k), by_size))

    @classmethod
    def resolve(cls, options: Optional[dict] = None, stored: Optional[dict] = None) -> "SearchSettings":
        values: dict = {}
        for source in (stored or {}, _from_env(), options or {}):
            for f in fields(cls):
                if source.get(f.name) is not None:
                    values[f.name] = type(getattr(cls, f.name))(source[f.name])
        return replace(cls(), **values)


def _from_env() -> dict:
    out = {}
    if os.environ.get("PALACE_PG_EF_SEARCH"):
        out["ef_search"] = int(os.environ["PALACE_PG_EF_SEARCH"])
    if os.environ.get("PALACE_PG_EXACT_MAX_ROWS"):
        out["exact_max_rows"] = int(os.environ["PALACE_PG_EXACT_MAX_ROWS"])
    if os.environ.get("PALACE_PG_ROWS_PER_EF"):
        out["rows_per_ef"] = int(os.environ["PALACE_PG_ROWS_PER_EF"])
    if os.environ.get("PALACE_PG_EXACT_UNFILTERED_MAX_ROWS"):
        out["exact_unfiltered_max_rows"] = int(os.environ["PALACE_PG_EXACT_UNFILTERED_MAX_ROWS"])
    return out


def config_dsn() -> Optional[str]:
    """``postgres_dsn`` from MemPalace's config.json (3.11 has no public accessor)."""
    try:
        from mempalace.config import MempalaceConfig

        value = getattr(MempalaceConfig(), "_file_config", {}).get(CONFIG_DSN_KEY)
    except Exception:  # noqa: BLE001 - a broken config must not hide the other sources
        return None
    return str(value) if value else None


def marker_for(path: Optional[str]) -> Optional[Marker]:
    if path and has_marker(path):
        return read_marker(path)
    return None


def new_palace_dsn() -> str:
    """The DSN for a palace that has no marker yet."""
    return os.environ.get(ENV_DSN) or config_dsn() or resolve_dsn(None)
