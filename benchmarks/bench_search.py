"""Search benchmark: the postgres backend against Chroma on the same synthetic palace.

    python benchmarks/bench_search.py [--rows 160000] [--queries 200] [--dsn postgresql://…/db]
                                      [--out bench_search.json] [--skip-chroma] [--no-compact]

Builds ``--rows`` drawers (palace_pg.backend.testing.synthetic_drawers:
clustered 384-d vectors, wings of 30% … 1% correlated with the clusters),
COPYs them into a fresh database as the migration does, builds the indexes
of target/schema.py and runs maintenance ``compact``, then queries through
``PostgresBackend`` — the path MemPalace uses — and through chromadb's own
client on the same vectors.  Recall@k is against numpy brute force.
Prints a table and writes JSON.

``--dsn`` must name an empty database (default: a new database
``bench_search_<pid>`` on the embedded server, dropped afterwards unless
``--keep``).  The HNSW index must fit ``shared_buffers`` to be fast: the run
reports both and warns when it does not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from palace_pg.backend import PostgresBackend, testing  # noqa: E402
from palace_pg.backend.search_plan import Planner  # noqa: E402

log = logging.getLogger("bench_search")

FILTERS = {"unfiltered": None, "wing 1%": "wing09", "wing 11%": "wing02", "wing 30%": "wing00"}


def ground_truth(data: testing.SyntheticSet, queries: np.ndarray, k: int, wing: str | None) -> list[set]:
    if wing is None:
        idx = np.arange(len(data.ids))
    else:
        idx = np.array([i for i, m in enumerate(data.metadatas) if m["wing"] == wing])
    sims = queries @ data.embeddings[idx].T
    top = np.argsort(-sims, axis=1)[:, :k]
    return [{data.ids[idx[j]] for j in row} for row in top]


def measure(search, queries: np.ndarray, truth: list[set], k: int) -> dict:
    for q in queries:  # one warm-up pass over the same queries (caches, prepared statements)
        search(q)
    latencies, recalls, counts = [], [], []
    for q, want in zip(queries, truth):
        t = time.perf_counter()
        ids = search(q)
        latencies.append((time.perf_counter() - t) * 1000)
        recalls.append(len(set(ids) & want) / k)
        counts.append(len(ids))
    lat = np.array(latencies)
    return {"p50_ms": round(float(np.percentile(lat, 50)), 3), "p95_ms": round(float(np.percentile(lat, 95)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3), "recall_at_k": round(float(np.mean(recalls)), 4),
            "min_recall": round(float(np.min(recalls)), 2), "mean_rows": round(float(np.mean(counts)), 2),
            "queries": len(queries)}


def load_postgres(dsn: str, data: testing.SyntheticSet, palace: Path, compact: bool) -> dict:
    import psycopg
    from pgvector.psycopg import register_vector

    timings = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        table = testing.create_collection_table(conn, "mempalace_drawers", data.embeddings.shape[1])
        t = time.perf_counter()
        with conn.transaction():
            testing.copy_rows(conn, table, data.ids, data.documents, data.metadatas, data.embeddings)
        timings["copy_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        testing.build_indexes(conn, table)
        timings["indexes_s"] = round(time.perf_counter() - t, 2)
    testing.claim_palace(palace, dsn, {"mempalace_drawers": data.embeddings.shape[1]})
    col = PostgresBackend().get_collection(str(palace), "mempalace_drawers", False)
    if compact:
        t = time.perf_counter()
        col.run_maintenance("compact")
        timings["compact_s"] = round(time.perf_counter() - t, 2)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT count(*) FROM mempalace.drawers")  # warm the heap; queries warm the index
        timings["server"] = {
            "version": conn.execute("SHOW server_version").fetchone()[0],
            "vector": conn.execute("SELECT extversion FROM pg_extension WHERE extname='vector'").fetchone()[0],
            "shared_buffers": conn.execute("SHOW shared_buffers").fetchone()[0],
            "hnsw_index_bytes": conn.execute("SELECT pg_relation_size('mempalace.drawers_embedding_hnsw')").fetchone()[0],
            "shared_buffers_bytes": conn.execute(
                "SELECT setting::bigint * 8192 FROM pg_settings WHERE name = 'shared_buffers'").fetchone()[0],
        }
    return timings


def run_postgres(palace: Path, data, queries, k, truths) -> dict:
    col = PostgresBackend().get_collection(str(palace), "mempalace_drawers", False)
    out = {}
    for label, wing in FILTERS.items():
        where = {"wing": wing} if wing else None

        def search(q, where=where):
            return col.query(query_embeddings=[q], n_results=k, where=where,
                             include=["documents", "metadatas", "distances"]).ids[0]

        out[label] = measure(search, queries, truths[label], k)
        planner: Planner = col._handle.planner
        if wing:
            with col._handle.pool.connection() as conn:
                from palace_pg.backend.filters import compile_where

                out[label]["plan"] = planner.choose(conn, col.table, compile_where(where)).kind
        else:
            out[label]["plan"] = "hnsw"
        out[label]["ef_search"] = planner.settings.ef_search
    return out


def run_chroma(data, queries, k, truths) -> dict:
    import chromadb

    folder = tempfile.mkdtemp(prefix="bench_chroma_")
    try:
        client = chromadb.PersistentClient(path=folder)
        col = client.create_collection("mempalace_drawers", metadata={"hnsw:space": "cosine"}, embedding_function=None)
        t = time.perf_counter()
        for start in range(0, len(data.ids), 5000):
            end = start + 5000
            col.add(ids=data.ids[start:end], documents=data.documents[start:end],
                    metadatas=data.metadatas[start:end], embeddings=data.embeddings[start:end])
        out = {"load_s": round(time.perf_counter() - t, 2)}
        for label, wing in FILTERS.items():
            where = {"wing": wing} if wing else None

            def search(q, where=where):
                return col.query(query_embeddings=[q], n_results=k, where=where,
                                 include=["documents", "metadatas", "distances"])["ids"][0]

            out[label] = measure(search, queries, truths[label], k)
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=160_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--noise", type=float, default=0.75, help="isotropic noise of the synthetic vectors")
    ap.add_argument("--dsn", help="an empty database (default: a new one on the embedded server)")
    ap.add_argument("--keep", action="store_true", help="keep the database created for the run")
    ap.add_argument("--skip-chroma", action="store_true")
    ap.add_argument("--no-compact", action="store_true", help="skip maintenance 'compact' (vectors inline, CLUSTER)")
    ap.add_argument("--out", default="bench_search.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    created = None
    dsn = args.dsn
    if not dsn:
        from palace_pg.server import EmbeddedServer

        server = EmbeddedServer.from_env()
        created = f"bench_search_{os.getpid()}"
        dsn = server.create_database(created)
    palace = Path(tempfile.mkdtemp(prefix="bench_palace_"))
    try:
        t = time.perf_counter()
        data = testing.synthetic_drawers(args.rows, n_queries=args.queries, noise=args.noise)
        log.info("generated %d drawers in %.1fs", args.rows, time.perf_counter() - t)
        truths = {label: ground_truth(data, data.queries, args.k, wing) for label, wing in FILTERS.items()}
        sims = data.queries @ data.embeddings.T
        result = {"rows": args.rows, "queries": args.queries, "k": args.k, "noise": args.noise,
                  "mean_top1_cosine": round(float(sims.max(axis=1).mean()), 4),
                  "wing_shares": {w: round(sum(m["wing"] == w for m in data.metadatas) / args.rows, 4)
                                  for w in filter(None, FILTERS.values())},
                  "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
        result["postgres_load"] = load_postgres(dsn, data, palace, compact=not args.no_compact)
        server = result["postgres_load"]["server"]
        if server["hnsw_index_bytes"] > server["shared_buffers_bytes"]:
            log.warning("the HNSW index (%d MB) does not fit shared_buffers (%s): latencies will suffer",
                        server["hnsw_index_bytes"] // 2**20, server["shared_buffers"])
        result["postgres"] = run_postgres(palace, data, data.queries, args.k, truths)
        if not args.skip_chroma:
            result["chroma"] = run_chroma(data, data.queries, args.k, truths)
    finally:
        shutil.rmtree(palace, ignore_errors=True)
        if created and not args.keep:
            from palace_pg.server import EmbeddedServer

            EmbeddedServer.from_env().drop_database(created)

    print(f"\n{args.rows} drawers, {args.queries} queries, k={args.k}, shared_buffers {server['shared_buffers']}, "
          f"HNSW {server['hnsw_index_bytes'] // 2**20} MB")
    print(f"{'search':<12} {'system':<9} {'plan':<10} {'p50 ms':>8} {'p95 ms':>8} {'recall@k':>9} {'rows':>6}")
    for label in FILTERS:
        for system in ("postgres", "chroma"):
            if system in result:
                r = result[system][label]
                print(f"{label:<12} {system:<9} {r.get('plan', ''):<10} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} "
                      f"{r['recall_at_k']:>9.4f} {r['mean_rows']:>6.1f}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
