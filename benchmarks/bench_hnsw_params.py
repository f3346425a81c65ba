"""HNSW parameters for the unfiltered kNN: build time (downtime) against recall and p50, beside Chroma.

    python benchmarks/bench_hnsw_params.py [--sizes 40000,160000] [--pairs 16:100,16:200,24:100]
                                           [--ef 100,200,400] [--queries 200] [--rounds 3]
                                           [--skip-chroma] [--out benchmarks/results/hnsw_params.json]

For each size, synthetic drawers (palace_pg.testing.backend.synthetic_drawers,
as bench_search.py) are loaded and compacted as the migration leaves them;
then, for each (m, ef_construction) pair, the HNSW index is rebuilt the way
phase 4 builds it (maintenance_work_mem sized to the graph, 2 parallel
workers) and timed: that build is downtime.  Every pair is queried through
``PostgresBackend`` (documents + metadatas, as MemPalace asks) with HNSW forced
(``exact_unfiltered_max_rows`` 0) at k 10 and at MemPalace's pool of 20
(``4 × n_results``, n 5: mempalace/searcher/candidates.py), with ``ef_search``
pinned to each ``--ef`` value and under the backend's own policy
(``SearchSettings.ef_for``).  Queries are off-distribution mixtures
(palace_pg.query_sets), recall against exact cosine top-k (palace_pg.metrics).
Chroma (chromadb's own client, its hnswlib M 16 / ef_construction 100 /
ef_search 100) answers the same queries on the same vectors in the same run.
Latency: median of ``--rounds`` interleaved rounds; the load average is recorded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_search import POOL_K, Case, ground_truth, load_postgres, measure, run_chroma  # noqa: E402

from palace_pg import query_sets  # noqa: E402
from palace_pg.backend import PostgresBackend  # noqa: E402
from palace_pg.backend.settings import SearchSettings  # noqa: E402
from palace_pg.phases.indexes_phase import hnsw_work_mem  # noqa: E402
from palace_pg.testing import backend as pg_testing  # noqa: E402

log = logging.getLogger("bench_hnsw_params")

KS = (10, POOL_K)
POLICY = "policy"


def rebuild_hnsw(dsn: str, rows: int, dim: int, m: int, ef_construction: int) -> dict:
    """Drop and build ``drawers_embedding_hnsw`` with these parameters, as phase 4 does; seconds and size."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP INDEX IF EXISTS mempalace.drawers_embedding_hnsw")
        conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(hnsw_work_mem(rows, dim))))
        conn.execute("SET max_parallel_maintenance_workers = 2")
        t = time.perf_counter()
        conn.execute(sql.SQL("CREATE INDEX drawers_embedding_hnsw ON mempalace.drawers USING hnsw "
                             "(embedding vector_cosine_ops) WITH (m = {}, ef_construction = {})").format(
            sql.Literal(m), sql.Literal(ef_construction)))
        seconds = time.perf_counter() - t
        size = conn.execute("SELECT pg_relation_size('mempalace.drawers_embedding_hnsw')").fetchone()[0]
        conn.execute("SELECT count(*) FROM mempalace.drawers")  # the heap back in cache after the build
    return {"build_s": round(seconds, 2), "index_mb": round(size / 2**20, 1)}


def query_pair(palace: Path, queries: np.ndarray, truths: dict, efs: list, rounds: int) -> dict:
    """Every (k, ef) case ``rounds`` times, interleaved; medians of p50/p95."""
    cols, runs = {}, {}
    for k in KS:
        for ef in [*efs, POLICY]:
            options = {"exact_unfiltered_max_rows": 0}
            if ef != POLICY:
                options |= {"ef_search": ef, "ef_per_k": 0, "rows_per_ef": 0}
            cols[(k, ef)] = PostgresBackend().get_collection(str(palace), "mempalace_drawers", False, options=options)
            runs[(k, ef)] = []
    for r in range(rounds):
        for (k, ef), col in cols.items():
            def search(q, col=col, k=k):
                return col.query(query_embeddings=[q], n_results=k,
                                 include=["documents", "metadatas", "distances"]).distances[0]

            with col._handle.pool.connection() as conn:  # single-threaded: every query reuses it
                pid = conn.info.backend_pid
            runs[(k, ef)].append(measure(search, queries, truths[k], server_pid=pid))
    out = {}
    for (k, ef), results in runs.items():
        res = dict(results[0])
        for key in ("p50_ms", "p95_ms", "p99_ms", "client_cpu_ms", "server_cpu_ms", "cpu_ms"):
            if key in res:
                res[key] = round(float(np.median([x[key] for x in results])), 3)
        res["rounds_p50_ms"] = [x["p50_ms"] for x in results]
        planner = cols[(k, ef)]._handle.planner
        with cols[(k, ef)]._handle.pool.connection() as conn:
            rows = planner.table_rows(conn, "drawers")
        res |= {"plan": "hnsw", "k": k, "query_kind": query_sets.MIXTURE,
                "ef_search": planner.settings.ef_for(k, rows=rows), "ef_policy": ef == POLICY}
        out[f"k={k} ef={ef}"] = res
        log.info("  k=%-3d ef=%-7s (%4d) p50 %.2f ms cpu %.2f ms recall %.4f", k, ef, res["ef_search"],
                 res["p50_ms"], res.get("cpu_ms", -1), res["recall_at_k"])
    return out


def run_size(server, rows: int, pairs: list, efs: list, n_queries: int, rounds: int, chroma: bool) -> dict:
    db = f"bench_hnsw_{rows}_{os.getpid()}"
    dsn = server.create_database(db)
    palace = Path(tempfile.mkdtemp(prefix="bench_hnsw_palace_"))
    try:
        data = pg_testing.synthetic_drawers(rows, n_queries=1)
        queries = query_sets.mixtures(data.embeddings, n_queries, np.random.default_rng(11)).vectors
        truths = {k: ground_truth(data, queries, k, None) for k in KS}
        out: dict = {"rows": rows, "load": load_postgres(dsn, data, palace, compact=True), "pairs": {}}
        for m, efc in pairs:
            log.info("%d rows: m %d, ef_construction %d", rows, m, efc)
            entry = rebuild_hnsw(dsn, rows, data.embeddings.shape[1], m, efc)
            log.info("  built in %.1f s (%.0f MB)", entry["build_s"], entry["index_mb"])
            entry["load_average"] = os.getloadavg()[0]
            entry["cases"] = query_pair(palace, queries, truths, efs, rounds)
            out["pairs"][f"m={m} ef_construction={efc}"] = entry
        if chroma:
            case_list = [Case(f"k={k}", k=k) for k in KS]
            out["chroma"] = run_chroma(data, {query_sets.MIXTURE: queries},
                                       {c.label: truths[c.k] for c in case_list}, case_list, rounds=rounds)
            for k in KS:
                log.info("  chroma k=%d p50 %.2f ms recall %.4f", k, out["chroma"][f"k={k}"]["p50_ms"],
                         out["chroma"][f"k={k}"]["recall_at_k"])
        out["load_average_end"] = os.getloadavg()[0]
        return out
    finally:
        shutil.rmtree(palace, ignore_errors=True)
        server.drop_database(db)


def _pairs(text: str) -> list[tuple[int, int]]:
    return [tuple(int(x) for x in p.split(":")) for p in text.split(",")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[40_000, 160_000])
    ap.add_argument("--pairs", type=_pairs, default=[(16, 100), (16, 200), (24, 100)],
                    help="m:ef_construction pairs, comma-separated")
    ap.add_argument("--ef", type=lambda v: [int(x) for x in v.split(",")], default=[100, 200, 400])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-chroma", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/hnsw_params.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from palace_pg.server import EmbeddedServer

    server = EmbeddedServer.from_env()
    started = time.time()
    result = {"queries": args.queries, "query_kind": query_sets.MIXTURE, "rounds": args.rounds,
              "cpus": os.cpu_count(), "load_average_start": os.getloadavg()[0],
              "policy": {"ef_search": SearchSettings.ef_search, "ef_per_k": SearchSettings.ef_per_k},
              "sizes": [run_size(server, n, args.pairs, args.ef, args.queries, args.rounds, not args.skip_chroma)
                        for n in args.sizes]}
    result["minutes"] = round((time.time() - started) / 60, 1)
    print(f"\nunfiltered HNSW through PostgresBackend, {args.queries} mixture queries, median p50 of "
          f"{args.rounds} rounds")
    print(f"{'rows':>7} {'system':<8} {'m':>3} {'efc':>4} {'build s':>8} {'k':>3} {'ef_search':>10} "
          f"{'p50 ms':>7} {'cpu ms':>7} {'recall@k':>9}")
    for s in result["sizes"]:
        for label, pair in s["pairs"].items():
            m, efc = (int(x.split("=")[1]) for x in label.split())
            for r in pair["cases"].values():
                ef = f"{r['ef_search']}{'*' if r['ef_policy'] else ''}"
                print(f"{s['rows']:>7} {'pg':<8} {m:>3} {efc:>4} {pair['build_s']:>8.1f} {r['k']:>3} {ef:>10} "
                      f"{r['p50_ms']:>7.2f} {r.get('cpu_ms', 0):>7.2f} {r['recall_at_k']:>9.4f}")
        for k in KS:
            r = s.get("chroma", {}).get(f"k={k}")
            if r:
                print(f"{s['rows']:>7} {'chroma':<8} {16:>3} {100:>4} {s['chroma']['load_s']:>8.1f} {k:>3} "
                      f"{100:>10} {r['p50_ms']:>7.2f} {r['client_cpu_ms']:>7.2f} {r['recall_at_k']:>9.4f}")
    print("(* the backend's ef_search policy; chroma's build column is its whole load; cpu ms: client + server "
          "backend CPU per query, chroma in-process)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
