"""Where an exact unfiltered scan stops being cheap: p50 of exact and HNSW top-k by collection size.

    python benchmarks/bench_exact_threshold.py [--sizes 2000,5500,10000,20000,40000] [--queries 100]
                                               [--k 10,20] [--out exact_threshold.json]

For each size, synthetic drawers (palace_pg.testing.backend.synthetic_drawers,
120-word documents and miner metadata, as bench_search.py) are COPYed into a
fresh database on the embedded server, indexed and compacted as the migration
leaves them, then queried through ``PostgresBackend`` with documents and
metadatas, as MemPalace asks: once with every unfiltered search exact
(``exact_unfiltered_max_rows`` above the size) and once on HNSW (0).  Queries
are off-distribution mixtures (palace_pg.query_sets).  The backend's
``exact_unfiltered_max_rows`` (backend/settings.py) is the largest size whose
exact p50 stays within a few ms: compare it with the query's own cost
(embedding a question with MiniLM takes ~35 ms here).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_search import ground_truth, load_postgres, measure  # noqa: E402

from palace_pg import query_sets  # noqa: E402
from palace_pg.backend import PostgresBackend  # noqa: E402
from palace_pg.testing import backend as pg_testing  # noqa: E402

log = logging.getLogger("bench_exact_threshold")

MODES = {"exact": {"exact_unfiltered_max_rows": 10**9}, "hnsw": {"exact_unfiltered_max_rows": 0}}


def run_size(server, rows: int, n_queries: int, ks: list[int], rounds: int) -> dict:
    db = f"bench_exact_{rows}_{os.getpid()}"
    dsn = server.create_database(db)
    palace = Path(tempfile.mkdtemp(prefix="bench_exact_palace_"))
    try:
        data = pg_testing.synthetic_drawers(rows, n_queries=1)
        queries = query_sets.mixtures(data.embeddings, n_queries, np.random.default_rng(11)).vectors
        load_postgres(dsn, data, palace, compact=True)
        out: dict = {"rows": rows}
        for k in ks:
            truth = ground_truth(data, queries, k, None)
            for mode, options in MODES.items():
                col = PostgresBackend().get_collection(str(palace), "mempalace_drawers", False, options=options)

                def search(q, col=col, k=k):
                    return col.query(query_embeddings=[q], n_results=k,
                                     include=["documents", "metadatas", "distances"]).distances[0]

                runs = [measure(search, queries, truth) for _ in range(rounds)]
                best = dict(runs[0])
                best["p50_ms"] = round(float(np.median([r["p50_ms"] for r in runs])), 3)
                best["rounds_p50_ms"] = [r["p50_ms"] for r in runs]
                ef = col._handle.planner.settings.ef_for(k)
                out[f"{mode} k={k}"] = best | {"plan": mode, "k": k, "ef_search": ef if mode == "hnsw" else None,
                                               "query_kind": query_sets.MIXTURE}
                log.info("%6d rows %-5s k=%d p50 %.2f ms recall %.4f", rows, mode, k, best["p50_ms"],
                         best["recall_at_k"])
        return out
    finally:
        shutil.rmtree(palace, ignore_errors=True)
        server.drop_database(db)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[2000, 5500, 10000, 20000, 40000])
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--k", type=lambda v: [int(x) for x in v.split(",")], default=[10, 20])
    ap.add_argument("--rounds", type=int, default=3, help="measure each case this many times; report the median p50")
    ap.add_argument("--out", default="exact_threshold.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from palace_pg.server import EmbeddedServer

    server = EmbeddedServer.from_env()
    results = [run_size(server, n, args.queries, args.k, args.rounds) for n in args.sizes]
    print(f"\nunfiltered top-k through PostgresBackend (documents + metadatas), {args.queries} mixture queries, "
          f"median p50 of {args.rounds} rounds")
    print(f"{'rows':>7} {'k':>3} {'exact p50':>10} {'hnsw p50':>9} {'hnsw ef':>8} {'hnsw recall':>12}")
    for r in results:
        for k in args.k:
            e, h = r[f"exact k={k}"], r[f"hnsw k={k}"]
            print(f"{r['rows']:>7} {k:>3} {e['p50_ms']:>10.2f} {h['p50_ms']:>9.2f} {h['ef_search']:>8} "
                  f"{h['recall_at_k']:>12.4f}")
    Path(args.out).write_text(json.dumps({"queries": args.queries, "rounds": args.rounds, "sizes": results},
                                         indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
