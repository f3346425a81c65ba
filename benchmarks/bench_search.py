"""Search benchmark: the postgres backend against Chroma on the same synthetic palace.

    python benchmarks/bench_search.py [--rows 160000] [--queries 200] [--dsn postgresql://…/db]
                                      [--out bench_search.json] [--skip-chroma] [--no-compact]
                                      [--db NAME [--reuse]] [--rounds 3] [--ef-search 40,64,100]

Builds ``--rows`` drawers (palace_pg.testing.backend.synthetic_drawers:
clustered 384-d vectors, wings of 30% … 1% correlated with the clusters),
COPYs them into a fresh database as the migration does, builds the indexes
of target_db/schema.py and runs maintenance ``compact``, then queries through
``PostgresBackend`` — the path MemPalace uses — and through chromadb's own
client on the same vectors.  Recall@k is against numpy brute force.
Prints a table and writes JSON.

``--dsn`` must name an empty database (default: a new database
``bench_search_<pid>`` on the embedded server, dropped afterwards unless
``--keep``).  ``--db NAME`` uses (and keeps) a database of that name on the
embedded server; with ``--reuse`` a database already holding ``--rows``
drawers from an earlier run is queried as it is (the data are deterministic),
which skips the ~3 minutes of loading at 160K while iterating on the planner.
The HNSW index must fit ``shared_buffers`` to be fast: the run reports both
and warns when it does not.

The machine is shared: ``--rounds N`` measures every case N times,
interleaved, and reports the medians.  ``--ef-search`` adds unfiltered runs
at other ``hnsw.ef_search`` values (the recall/latency trade-off).

Committed figures (bench_search_160k.json):

    python benchmarks/bench_search.py --rows 160000 --rounds 3 --ef-search 40,100 \
        --out benchmarks/bench_search_160k.json
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

from palace_pg.backend import PostgresBackend  # noqa: E402
from palace_pg.testing import backend as pg_testing  # noqa: E402
from palace_pg.backend.search_plan import Planner  # noqa: E402

log = logging.getLogger("bench_search")

FILTERS = {"unfiltered": None, "wing 1%": "juniper_notes", "wing 11%": "delta_infra", "wing 30%": "atlas_api"}


def ground_truth(data: pg_testing.SyntheticSet, queries: np.ndarray, k: int, wing: str | None) -> list[set]:
    if wing is None:
        idx = np.arange(len(data.ids))
    else:
        idx = np.array([i for i, m in enumerate(data.metadatas) if m["wing"] == wing])
    sims = queries @ data.embeddings[idx].T
    top = np.argsort(-sims, axis=1)[:, :k]
    return [{data.ids[idx[j]] for j in row} for row in top]


def process_cpu_seconds(pid: int) -> float | None:
    """user + system CPU of a local process (a server backend), None if /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(search, queries: np.ndarray, truth: list[set], k: int, server_pid: int | None = None) -> dict:
    """Latency percentiles, recall and CPU per query.

    Wall-clock latency depends on what else the machine runs; ``cpu_ms`` (this
    process plus the server backend serving it, from /proc) does much less, so
    it estimates the latency on an idle machine.
    """
    for q in queries:  # one warm-up pass over the same queries (caches, prepared statements)
        search(q)
    latencies, recalls, counts = [], [], []
    cpu0, srv0 = time.process_time(), process_cpu_seconds(server_pid) if server_pid else None
    for q, want in zip(queries, truth):
        t = time.perf_counter()
        ids = search(q)
        latencies.append((time.perf_counter() - t) * 1000)
        recalls.append(len(set(ids) & want) / k)
        counts.append(len(ids))
    client_ms = (time.process_time() - cpu0) * 1000 / len(queries)
    srv1 = process_cpu_seconds(server_pid) if server_pid else None
    server_ms = (srv1 - srv0) * 1000 / len(queries) if srv0 is not None and srv1 is not None else None
    lat = np.array(latencies)
    out = {"p50_ms": round(float(np.percentile(lat, 50)), 3), "p95_ms": round(float(np.percentile(lat, 95)), 3),
           "p99_ms": round(float(np.percentile(lat, 99)), 3), "recall_at_k": round(float(np.mean(recalls)), 4),
           "min_recall": round(float(np.min(recalls)), 2), "mean_rows": round(float(np.mean(counts)), 2),
           "queries": len(queries), "client_cpu_ms": round(client_ms, 3)}
    if server_ms is not None:
        out["server_cpu_ms"] = round(server_ms, 3)
        out["cpu_ms"] = round(client_ms + server_ms, 3)
    return out


def loaded_rows(dsn: str) -> int | None:
    """Rows already in ``mempalace.drawers`` (None when the table is not there)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        if not conn.execute("SELECT to_regclass('mempalace.drawers') IS NOT NULL").fetchone()[0]:
            return None
        return conn.execute("SELECT count(*) FROM mempalace.drawers").fetchone()[0]


def load_postgres(dsn: str, data: pg_testing.SyntheticSet, palace: Path, compact: bool, reuse: bool = False) -> dict:
    import psycopg
    from pgvector.psycopg import register_vector

    timings = {}
    if reuse and loaded_rows(dsn) == len(data.ids):
        log.info("reusing the %d drawers already loaded (indexes and order as they are)", len(data.ids))
        timings["reused"] = True
        compact = False
    else:
        with psycopg.connect(dsn, autocommit=True) as conn:
            register_vector(conn)
            table = pg_testing.create_collection_table(conn, "mempalace_drawers", data.embeddings.shape[1])
            t = time.perf_counter()
            with conn.transaction():
                pg_testing.copy_rows(conn, table, data.ids, data.documents, data.metadatas, data.embeddings)
            timings["copy_s"] = round(time.perf_counter() - t, 2)
            t = time.perf_counter()
            pg_testing.build_indexes(conn, table)
            timings["indexes_s"] = round(time.perf_counter() - t, 2)
    pg_testing.claim_palace(palace, dsn, {"mempalace_drawers": data.embeddings.shape[1]})
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


def run_postgres(palace: Path, data, queries, k, truths, *, rounds: int = 1, ef_values=()) -> dict:
    """Every case ``rounds`` times, interleaved (round 1 of all cases, then round 2 …).

    Other work on the machine comes and goes; p50/p95 reported are the medians of
    the rounds' figures, each round's p50 is kept in ``rounds_p50_ms``.
    """
    from palace_pg.backend.filters import compile_where

    cases = []  # (label, where, collection, truth)
    main_col = PostgresBackend().get_collection(str(palace), "mempalace_drawers", False)
    for label, wing in FILTERS.items():
        cases.append((label, {"wing": wing} if wing else None, main_col, truths[label]))
    for ef in ef_values:
        col = PostgresBackend().get_collection(str(palace), "mempalace_drawers", False, options={"ef_search": ef})
        cases.append((f"unfiltered ef={ef}", None, col, truths["unfiltered"]))
    per_round: dict[str, list[dict]] = {label: [] for label, *_ in cases}
    for r in range(rounds):
        for label, where, col, truth in cases:
            def search(q, where=where, col=col):
                return col.query(query_embeddings=[q], n_results=k, where=where,
                                 include=["documents", "metadatas", "distances"]).ids[0]

            with col._handle.pool.connection() as conn:  # single-threaded: every query reuses it
                pid = conn.info.backend_pid
            per_round[label].append(measure(search, queries, truth, k, server_pid=pid))
            log.info("round %d %-18s p50 %.2f ms", r + 1, label, per_round[label][-1]["p50_ms"])
    out = {}
    for label, where, col, _truth in cases:
        results = per_round[label]
        res = dict(results[0])
        for key in ("p50_ms", "p95_ms", "p99_ms", "client_cpu_ms", "server_cpu_ms", "cpu_ms"):
            if key not in res:
                continue
            res[key] = round(float(np.median([x[key] for x in results])), 3)
        res["rounds"] = len(results)
        res["rounds_p50_ms"] = [x["p50_ms"] for x in results]
        planner: Planner = col._handle.planner
        if where:
            with col._handle.pool.connection() as conn:
                res["plan"] = planner.choose(conn, col.table, compile_where(where)).kind
        else:
            res["plan"] = "hnsw"
        res["ef_search"] = planner.settings.ef_search
        out[label] = res
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
    ap.add_argument("--db", help="a database of this name on the embedded server (created if missing, kept)")
    ap.add_argument("--reuse", action="store_true",
                    help="when the database already holds --rows drawers (an earlier --keep/--db run), query them "
                         "as they are instead of loading again")
    ap.add_argument("--skip-chroma", action="store_true")
    ap.add_argument("--no-compact", action="store_true", help="skip maintenance 'compact' (vectors inline, CLUSTER)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every case this many times, interleaved; report the medians")
    ap.add_argument("--ef-search", type=lambda v: [int(x) for x in v.split(",")], default=[],
                    help="also run unfiltered with these hnsw.ef_search values (comma-separated)")
    ap.add_argument("--out", default="bench_search.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    created = None
    dsn = args.dsn
    if not dsn and args.db:
        from palace_pg.server import EmbeddedServer

        dsn = EmbeddedServer.from_env().create_database(args.db)
    elif not dsn:
        from palace_pg.server import EmbeddedServer

        server = EmbeddedServer.from_env()
        created = f"bench_search_{os.getpid()}"
        dsn = server.create_database(created)
    palace = Path(tempfile.mkdtemp(prefix="bench_palace_"))
    try:
        t = time.perf_counter()
        data = pg_testing.synthetic_drawers(args.rows, n_queries=args.queries, noise=args.noise)
        log.info("generated %d drawers in %.1fs", args.rows, time.perf_counter() - t)
        truths = {label: ground_truth(data, data.queries, args.k, wing) for label, wing in FILTERS.items()}
        sims = data.queries @ data.embeddings.T
        result = {"rows": args.rows, "queries": args.queries, "k": args.k, "noise": args.noise,
                  "mean_top1_cosine": round(float(sims.max(axis=1).mean()), 4),
                  "wing_shares": {w: round(sum(m["wing"] == w for m in data.metadatas) / args.rows, 4)
                                  for w in filter(None, FILTERS.values())},
                  "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
        result["postgres_load"] = load_postgres(dsn, data, palace, compact=not args.no_compact,
                                                reuse=args.reuse)
        server = result["postgres_load"]["server"]
        if server["hnsw_index_bytes"] > server["shared_buffers_bytes"]:
            log.warning("the HNSW index (%d MB) does not fit shared_buffers (%s): latencies will suffer",
                        server["hnsw_index_bytes"] // 2**20, server["shared_buffers"])
        result["postgres"] = run_postgres(palace, data, data.queries, args.k, truths, rounds=args.rounds,
                                          ef_values=args.ef_search)
        if not args.skip_chroma:
            result["chroma"] = run_chroma(data, data.queries, args.k, truths)
    finally:
        shutil.rmtree(palace, ignore_errors=True)
        if created and not args.keep:
            from palace_pg.server import EmbeddedServer

            EmbeddedServer.from_env().drop_database(created)

    print(f"\n{args.rows} drawers, {args.queries} queries, k={args.k}, shared_buffers {server['shared_buffers']}, "
          f"HNSW {server['hnsw_index_bytes'] // 2**20} MB")
    print(f"{'search':<18} {'system':<9} {'plan':<10} {'p50 ms':>8} {'p95 ms':>8} {'recall@k':>9} {'rows':>6} "
          f"{'cpu ms':>7}")
    for label in result["postgres"]:
        for system in ("postgres", "chroma"):
            if label in result.get(system, {}):
                r = result[system][label]
                print(f"{label:<18} {system:<9} {r.get('plan', ''):<10} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} "
                      f"{r['recall_at_k']:>9.4f} {r['mean_rows']:>6.1f} {r.get('cpu_ms', r['client_cpu_ms']):>7.2f}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
