"""Search benchmark: the postgres backend against Chroma on the same synthetic palace.

    python benchmarks/bench_search.py [--rows 160000] [--queries 200] [--dsn postgresql://…/db]
                                      [--out bench_search.json] [--skip-chroma] [--no-compact]
                                      [--db NAME [--reuse]] [--rounds 3] [--ef-search 40,64,100]
                                      [--maintain]

Builds ``--rows`` drawers (palace_pg.testing.backend.synthetic_drawers:
clustered 384-d vectors, wings of 30% … 1% correlated with the clusters),
COPYs them into a fresh database as the migration does, builds the indexes
of target_db/schema.py and runs maintenance ``compact``, then queries through
``PostgresBackend`` — the path MemPalace uses — and through chromadb's own
client on the same vectors.  Recall@k is against exact search
(palace_pg.metrics: one tie tolerance, interpolated percentiles).
Prints a table and writes JSON; every figure carries what it measured: the
plan (``exact``, ``hnsw``, ``iterative``), k, ef_search and the query kind:

* ``mixture``: off-distribution queries (palace_pg.query_sets.mixtures: mixes
  of stored vectors across clusters plus noise), the hard case and the
  default of every case without a suffix;
* ``in-distribution``: held-out vectors drawn like the drawers (what the
  figures before issue 14 measured).

Cases: ``unfiltered`` (k 10), ``unfiltered k=20`` (MemPalace's pool for its
re-rank, 4 × n for n = 5), ``unfiltered in-distribution``, ``unfiltered hnsw``
(HNSW even where the backend would scan exactly: the index's own recall),
the wing filters, and ``unfiltered ef=N`` for ``--ef-search`` (ef pinned).

``--dsn`` must name an empty database (default: a new database
``bench_search_<pid>`` on the embedded server, dropped afterwards unless
``--keep``).  ``--db NAME`` uses (and keeps) a database of that name on the
embedded server; with ``--reuse`` a database already holding ``--rows``
drawers from an earlier run is queried as it is (the data are deterministic),
which skips the ~3 minutes of loading at 160K while iterating on the planner.
The HNSW index must fit ``shared_buffers`` to be fast: the run reports both
and warns when it does not.

``--maintain`` runs the post-cutover maintenance step before querying
(``run_maintenance("wing_indexes")``, what ``palace-pg maintain`` does: a
partial HNSW index per wing above 10K rows, backend/wing_indexes.py) and
reports its time; ``--wing-ef`` cases (``wing N% index ef=E``) then query
those indexes (plan ``wing_hnsw``) where the planner itself keeps the exact
plan (filters up to ``exact_max_rows`` matching rows).

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from palace_pg import metrics, query_sets  # noqa: E402
from palace_pg.backend import PostgresBackend  # noqa: E402
from palace_pg.testing import backend as pg_testing  # noqa: E402
from palace_pg.backend.search_plan import Planner  # noqa: E402

log = logging.getLogger("bench_search")

FILTERS = {"unfiltered": None, "wing 1%": "juniper_notes", "wing 11%": "delta_infra", "wing 30%": "atlas_api"}
#: MemPalace's vector pool for its hybrid re-rank: 4 × n_results (n = 5 by default).
POOL_K = 20
MIXTURE, IN_DISTRIBUTION = query_sets.MIXTURE, "in-distribution"


@dataclass(frozen=True)
class Case:
    label: str
    wing: str | None = None
    k: int = 10
    kind: str = MIXTURE
    options: tuple = ()  # SearchSettings overrides for this case's collection

    @property
    def where(self):
        return {"wing": self.wing} if self.wing else None


def cases(k: int, ef_values=(), wing_ef_values=()) -> list[Case]:
    out = [Case("unfiltered", k=k), Case(f"unfiltered k={POOL_K}", k=POOL_K),
           Case("unfiltered in-distribution", k=k, kind=IN_DISTRIBUTION),
           Case("unfiltered hnsw", k=k, options=(("exact_unfiltered_max_rows", 0),)),
           Case(f"unfiltered hnsw k={POOL_K}", k=POOL_K, options=(("exact_unfiltered_max_rows", 0),))]
    out += [Case(label, wing=wing, k=k) for label, wing in FILTERS.items() if wing]
    out += [Case(f"unfiltered ef={ef}", k=k, options=(("ef_search", ef), ("ef_per_k", 0), ("rows_per_ef", 0),
                                                      ("exact_unfiltered_max_rows", 0))) for ef in ef_values]
    # exact_max_rows 0: the wing's own index even where the planner would scan the wing exactly
    out += [Case(f"{label} index ef={ef}", wing=wing, k=k, options=(
                ("wing_ef_search", ef), ("iterative_ef_search", 0), ("ef_per_k", 0), ("exact_max_rows", 0)))
            for ef in wing_ef_values for label, wing in FILTERS.items() if wing]
    return out


def query_vectors(data: pg_testing.SyntheticSet, n: int, seed: int = 11) -> dict[str, np.ndarray]:
    """Each query kind's vectors: off-distribution mixtures of stored vectors, and the generator's held-out ones."""
    rng = np.random.default_rng(seed)
    return {MIXTURE: query_sets.mixtures(data.embeddings, n, rng).vectors, IN_DISTRIBUTION: data.queries[:n]}


def ground_truth(data: pg_testing.SyntheticSet, queries: np.ndarray, k: int, wing: str | None) -> metrics.ExactTopK:
    groups = [wing] * len(queries) if wing else None
    labels = [m["wing"] for m in data.metadatas] if wing else None
    return metrics.exact_topk(queries, data.embeddings, data.ids, k, groups=groups, labels=labels)


def process_cpu_seconds(pid: int) -> float | None:
    """user + system CPU of a local process (a server backend), None if /proc cannot tell."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(search, queries: np.ndarray, truth: metrics.ExactTopK, server_pid: int | None = None) -> dict:
    """Latency percentiles, recall and CPU per query; ``search(q)`` returns the distances of its rows.

    Wall-clock latency depends on what else the machine runs; ``cpu_ms`` (this
    process plus the server backend serving it, from /proc) does much less, so
    it estimates the latency on an idle machine.
    """
    for q in queries:  # one warm-up pass over the same queries (caches, prepared statements)
        search(q)
    latencies, returned = [], []
    cpu0, srv0 = time.process_time(), process_cpu_seconds(server_pid) if server_pid else None
    for q in queries:
        t = time.perf_counter()
        dists = search(q)
        latencies.append((time.perf_counter() - t) * 1000)
        returned.append(dists)
    client_ms = (time.process_time() - cpu0) * 1000 / len(queries)
    srv1 = process_cpu_seconds(server_pid) if server_pid else None
    server_ms = (srv1 - srv0) * 1000 / len(queries) if srv0 is not None and srv1 is not None else None
    per_query = metrics.per_query_recall(returned, truth)
    out = {**metrics.percentiles(latencies), "recall_at_k": metrics.recall_at_k(returned, truth),
           "min_recall": round(float(np.min(per_query)), 2), "queries_below_1": int((per_query < 1).sum()),
           "mean_rows": round(float(np.mean([len(r) for r in returned])), 2),
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


def maintain(palace: Path) -> dict:
    """The post-cutover step: per-wing partial HNSW indexes (timed; not downtime)."""
    from palace_pg.backend import wing_indexes

    col = PostgresBackend().get_collection(str(palace), "mempalace_drawers", False)
    t = time.perf_counter()
    result = col.run_maintenance(wing_indexes.KIND)
    return {"status": result.status, "seconds": round(time.perf_counter() - t, 2),
            "wings": {w: {k: v[k] for k in ("rows", "state", "seconds")} for w, v in result.stats.get("wings", {}).items()}}


def run_postgres(palace: Path, queries: dict, truths: dict, case_list: list[Case], *, rounds: int = 1) -> dict:
    """Every case ``rounds`` times, interleaved (round 1 of all cases, then round 2 …).

    Other work on the machine comes and goes; p50/p95 reported are the medians of
    the rounds' figures, each round's p50 is kept in ``rounds_p50_ms``.
    """
    from palace_pg.backend.filters import compile_where
    from palace_pg.backend.wing_indexes import wing_of

    cols = {c.label: PostgresBackend().get_collection(str(palace), "mempalace_drawers", False,
                                                      options=dict(c.options) or None) for c in case_list}
    per_round: dict[str, list[dict]] = {c.label: [] for c in case_list}
    for r in range(rounds):
        for c in case_list:
            col = cols[c.label]

            def search(q, c=c, col=col):
                return col.query(query_embeddings=[q], n_results=c.k, where=c.where,
                                 include=["documents", "metadatas", "distances"]).distances[0]

            with col._handle.pool.connection() as conn:  # single-threaded: every query reuses it
                pid = conn.info.backend_pid
            per_round[c.label].append(measure(search, queries[c.kind], truths[c.label], server_pid=pid))
            log.info("round %d %-28s p50 %.2f ms", r + 1, c.label, per_round[c.label][-1]["p50_ms"])
    out = {}
    for c in case_list:
        results, col = per_round[c.label], cols[c.label]
        res = dict(results[0])
        for key in ("p50_ms", "p95_ms", "p99_ms", "client_cpu_ms", "server_cpu_ms", "cpu_ms"):
            if key in res:
                res[key] = round(float(np.median([x[key] for x in results])), 3)
        res["rounds"] = len(results)
        res["rounds_p50_ms"] = [x["p50_ms"] for x in results]
        planner: Planner = col._handle.planner
        with col._handle.pool.connection() as conn:
            res["plan"] = planner.choose(conn, col.table, compile_where(c.where), wing_of(c.where)).kind
            table_rows = planner.table_rows(conn, col.table)
        st = planner.settings
        res["ef_search"] = (None if res["plan"] == "exact" else
                            max(st.wing_ef_search, st.ef_for(c.k, iterative=True)) if res["plan"] == "wing_hnsw" else
                            st.ef_for(c.k, iterative=res["plan"] == "iterative",
                                      rows=table_rows if res["plan"] == "hnsw" else None))
        out[c.label] = res | {"k": c.k, "query_kind": c.kind}
    return out


def run_chroma(data, queries: dict, truths: dict, case_list: list[Case], *, rounds: int = 1) -> dict:
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
        for c in case_list:
            if c.options and c.label != "unfiltered hnsw":  # Chroma has one configuration: its own
                continue

            def search(q, c=c):
                return col.query(query_embeddings=[q], n_results=c.k, where=c.where,
                                 include=["documents", "metadatas", "distances"])["distances"][0]

            runs = [measure(search, queries[c.kind], truths[c.label]) for _ in range(rounds)]
            out[c.label] = runs[0] | {"k": c.k, "query_kind": c.kind, "plan": "hnsw", "ef_search": 100}
            if rounds > 1:  # the median of the rounds' p50, as for postgres
                out[c.label] |= {"p50_ms": round(float(np.median([r["p50_ms"] for r in runs])), 3),
                                 "rounds_p50_ms": [r["p50_ms"] for r in runs]}
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def print_table(result: dict, width: int = 28) -> None:
    """One row per case and system: plan, k, ef_search, query kind, latency, recall (shared with bench_search_realtext)."""
    print(f"{'search':<{width}} {'system':<9} {'plan':<9} {'k':>3} {'ef':>5} {'queries':<16} {'p50 ms':>7} "
          f"{'p95 ms':>7} {'recall@k':>9} {'<1.0':>5} {'rows':>6} {'cpu ms':>7}")
    for label in result["postgres"]:
        for system in ("postgres", "chroma"):
            if label in result.get(system, {}):
                r = result[system][label]
                print(f"{label:<{width}} {system:<9} {r.get('plan', ''):<9} {r['k']:>3} {r['ef_search'] or '-':>5} "
                      f"{r['query_kind']:<16} {r['p50_ms']:>7.2f} {r['p95_ms']:>7.2f} {r['recall_at_k']:>9.4f} "
                      f"{r['queries_below_1']:>5} {r['mean_rows']:>6.1f} {r.get('cpu_ms', r['client_cpu_ms']):>7.2f}")


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
    ap.add_argument("--wing-ef", type=lambda v: [int(x) for x in v.split(",")], default=[],
                    help="also run the wing filters with these ef_search values on their wing indexes (--maintain)")
    ap.add_argument("--maintain", action="store_true",
                    help="run the post-cutover maintenance (per-wing HNSW indexes) before querying")
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
        queries = query_vectors(data, args.queries)
        case_list = cases(args.k, args.ef_search, args.wing_ef)
        truths = {c.label: ground_truth(data, queries[c.kind], c.k, c.wing) for c in case_list}
        result = {"rows": args.rows, "queries": args.queries, "k": args.k, "noise": args.noise,
                  "mean_top1_cosine": {kind: round(float(1 - ground_truth(data, q, 1, None).kth.mean()), 4)
                                       for kind, q in queries.items()},
                  "wing_shares": {w: round(sum(m["wing"] == w for m in data.metadatas) / args.rows, 4)
                                  for w in filter(None, FILTERS.values())},
                  "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}}
        result["postgres_load"] = load_postgres(dsn, data, palace, compact=not args.no_compact,
                                                reuse=args.reuse)
        server = result["postgres_load"]["server"]
        if server["hnsw_index_bytes"] > server["shared_buffers_bytes"]:
            log.warning("the HNSW index (%d MB) does not fit shared_buffers (%s): latencies will suffer",
                        server["hnsw_index_bytes"] // 2**20, server["shared_buffers"])
        if args.maintain:
            result["maintenance"] = maintain(palace)
            log.info("maintenance: %s", result["maintenance"])
        result["load_average"] = os.getloadavg()
        result["postgres"] = run_postgres(palace, queries, truths, case_list, rounds=args.rounds)
        if not args.skip_chroma:
            result["chroma"] = run_chroma(data, queries, truths, case_list)
    finally:
        shutil.rmtree(palace, ignore_errors=True)
        if created and not args.keep:
            from palace_pg.server import EmbeddedServer

            EmbeddedServer.from_env().drop_database(created)

    print(f"\n{args.rows} drawers, {args.queries} queries, k={args.k}, shared_buffers {server['shared_buffers']}, "
          f"HNSW {server['hnsw_index_bytes'] // 2**20} MB")
    print_table(result)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
