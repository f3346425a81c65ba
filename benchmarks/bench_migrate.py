"""Migration benchmark: palace_pg against the path a MemPalace user has today.

    python benchmarks/bench_migrate.py --drawers 160000 --repeat 3 [--palace P] [--json out.json]

Measures, in one run and on one machine:

* palace_pg's migration (a subprocess, so its peak RSS is its own): wall time per
  phase and in total, rows/s, peak RSS, the server settings used;
* copying the same palace into mempalace 3.11's built-in ``pgvector`` backend through
  its own API (``upsert`` with the stored embeddings, read with chromadb from a
  snapshot copy), and the ratio of the two.

Each figure is the median of ``--repeat`` runs with min and max.  Prints a table
and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from palace_pg.metrics import spread
from palace_pg.server import EmbeddedServer


def _median(values: list[float]) -> dict:
    return spread(values)


def _peak_rss_of(cmd: list[str]) -> tuple[int, float, str, float]:
    """Run cmd; return (exit code, peak RSS in MB of the child, stdout, wall seconds)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(err.decode()[-3000:])
    return code, usage.ru_maxrss / 1024, out.decode(), wall


BUILTIN_COPY = r"""
import sys, time, json, logging
logging.disable(logging.WARNING)
import chromadb
import numpy as np
from chromadb.config import Settings
from mempalace.backends.pgvector import PgVectorBackend
from mempalace.backends.base import PalaceRef
snapshot, palace_id = sys.argv[1], sys.argv[2]
client = chromadb.PersistentClient(path=snapshot, settings=Settings(anonymized_telemetry=False))
backend = PgVectorBackend()
rows = 0
drawer_ids, drawer_vecs, wings = [], [], []
t0 = time.monotonic()
for col in client.list_collections():
    src = client.get_collection(col.name, embedding_function=None)
    dst = backend.get_collection(palace=PalaceRef(id=palace_id, local_path=sys.argv[3]), collection_name=col.name,
                                 create=True)
    n, off = src.count(), 0
    while off < n:
        page = src.get(limit=5000, offset=off, include=["documents", "metadatas", "embeddings"])
        dst.upsert(ids=page["ids"], documents=page["documents"], metadatas=page["metadatas"],
                   embeddings=[list(map(float, e)) for e in page["embeddings"]])
        off += len(page["ids"])
        rows += len(page["ids"])
        if col.name == "mempalace_drawers":
            drawer_ids += page["ids"]
            drawer_vecs.append(np.asarray(page["embeddings"], dtype=np.float32))
            wings += [(m or {}).get("wing") for m in page["metadatas"]]
seconds = time.monotonic() - t0
t_queries = time.monotonic()
# queries through the built-in backend (an exact scan: it builds no ANN index), beside exact numpy top-10
queries = {}
if drawer_ids:
    import collections
    vecs = np.concatenate(drawer_vecs)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    counts = collections.Counter(w for w in wings if w)
    share = {w: c / len(wings) for w, c in counts.items()}
    cases = {"unfiltered": None}
    for label, want in (("wing 1%", 0.01), ("wing 11%", 0.11)):
        cases[label] = min(share, key=lambda w: abs(share[w] - want)) if share else None
    rng = np.random.default_rng(7)
    dst = backend.get_collection(palace=PalaceRef(id=palace_id, local_path=sys.argv[3]),
                                 collection_name="mempalace_drawers", create=False)
    wings_arr = np.array(wings, dtype=object)
    for label, wing in cases.items():
        pool = np.arange(len(drawer_ids)) if wing is None else np.flatnonzero(wings_arr == wing)
        times, hits = [], 0
        for qi in rng.choice(pool, size=min(int(sys.argv[4]), len(pool)), replace=False):
            q = vecs[qi] + rng.normal(0, 0.02, vecs.shape[1]).astype(np.float32)
            t = time.perf_counter()
            got = dst.query(query_embeddings=[q.tolist()], n_results=10, where=None if wing is None else {"wing": wing})
            times.append((time.perf_counter() - t) * 1000)
            d = 1 - unit[pool] @ (q / np.linalg.norm(q))
            truth = {drawer_ids[pool[j]] for j in np.argsort(d)[:10]}
            hits += len(truth & set(got.ids[0]))
        queries[label] = {"wing": wing, "queries": len(times), "p50_ms": float(np.median(times)),
                          "p95_ms": float(np.percentile(times, 95)), "recall_at_10": hits / (10 * len(times))}
print(json.dumps({"rows": rows, "seconds": seconds, "queries": queries,
                  "query_seconds": time.monotonic() - t_queries}))
"""


BUILTIN_QUERIES = 20  # per case: an exact scan of 160K rows costs ~0.4 s a query

SETTINGS = ("shared_buffers", "max_wal_size", "fsync", "synchronous_commit", "max_parallel_maintenance_workers",
            "maintenance_work_mem")


def server_settings(url: str) -> dict:
    """The server settings a migration's speed depends on (also read by run_all.py)."""
    import psycopg

    with psycopg.connect(url) as conn:
        # current_setting() gives the readable form: shared_buffers is "1GB", not 131072 || "8kB"
        return dict(conn.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)",
                                 (list(SETTINGS),)).fetchall())


def run_builtin(palace: Path, dsn: str, work: Path) -> dict:
    snap = work / "builtin-snapshot"
    shutil.rmtree(snap, ignore_errors=True)
    shutil.copytree(palace, snap)
    local = work / "builtin-palace"
    shutil.rmtree(local, ignore_errors=True)
    local.mkdir(parents=True)
    env_before = dict(os.environ)
    os.environ["MEMPALACE_PGVECTOR_DSN"] = dsn
    try:
        code, rss, out, wall = _peak_rss_of([sys.executable, "-c", BUILTIN_COPY, str(snap), str(local), str(local),
                                          str(BUILTIN_QUERIES)])
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    if code != 0:
        raise SystemExit("the built-in pgvector copy failed")
    result = json.loads(out.strip().splitlines()[-1])
    # the copy's wall time: the subprocess (imports included, as for palace_pg's) less the queries after it
    return {"wall": wall - result.get("query_seconds", 0), "rows": result["rows"], "peak_rss_mb": rss,
            "queries": result.get("queries", {})}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drawers", type=int, default=160_000)
    ap.add_argument("--palace", type=Path, help="an existing palace (default: generate one)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--builtin-repeat", type=int, default=1, help="runs of the (slow) built-in backend copy")
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/migrate.json"))
    args = ap.parse_args(argv)
    server = EmbeddedServer.from_env()
    server.start()
    work = Path(tempfile.mkdtemp(prefix="palace_pg-bench-"))
    palace = args.palace
    facts = {}
    if palace is None:
        from palace_pg.synth import make_palace

        palace = work / "src" / "palace"
        t0 = time.monotonic()
        facts = make_palace(palace, drawers=args.drawers, seed=0, kg_entities=20_000, kg_triples=100_000)
        facts["generation_seconds"] = round(time.monotonic() - t0, 1)
    ours, rss, phases, phase_rss, index_seconds = [], [], [], [], []
    rows = 0
    for i in range(args.repeat):
        db = f"bench_pp_{i}"
        server.drop_database(db)
        dsn = server.create_database(db)
        cmd = [sys.executable, "-m", "palace_pg.cli", "migrate", "--palace", str(palace), "--dsn", dsn,
               "--work-dir", str(work / "pp"), "--json", "--no-progress"]
        code, peak, out, wall = _peak_rss_of(cmd)
        if code != 0:
            return 1
        summary = json.loads(out[out.index("{"):])
        ours.append(wall)
        rss.append(peak)
        phases.append(summary["phase_seconds"])
        phase_rss.append(summary.get("peak_rss_mb", {}))
        index_seconds.append(summary["results"].get("indexes", {}).get("seconds", {}))
        rows = sum(c["source_rows"] for c in summary["results"]["verify"]["collections"].values())
        recall = summary["results"]["verify"]["collections"].get("mempalace_drawers", {}).get("recall", {})
        server.drop_database(db)
    builtin = []
    for i in range(args.builtin_repeat):
        db = f"bench_builtin_{i}"
        server.drop_database(db)
        dsn = server.create_database(db)
        builtin.append(run_builtin(palace, dsn, work))
        server.drop_database(db)
    settings = server_settings(server.url())
    result = {
        "palace": str(palace), "rows": rows, "cpu_count": os.cpu_count(), "facts": {
            "vectors": facts.get("vectors"), "collections": facts.get("collections"),
            "kg_entities": (facts.get("kg") or {}).get("entities"), "kg_triples": (facts.get("kg") or {}).get("triples"),
            "generation_seconds": facts.get("generation_seconds")},
        "palace_pg": {"total_seconds": _median(ours), "rows_per_second": round(rows / statistics.median(ours)),
                      "peak_rss_mb": _median(rss),
                      "phase_seconds": {k: _median([p.get(k, 0) for p in phases]) for k in phases[0]},
                      "phase_peak_rss_mb": {k: _median([p.get(k, 0) for p in phase_rss]) for k in phase_rss[0]},
                      "index_seconds": {k: _median([p.get(k, 0) for p in index_seconds]) for k in index_seconds[0]},
                      "recall_at_10": recall.get("recall_at_10")},
        "builtin_pgvector_copy": {"total_seconds": _median([b["wall"] for b in builtin]),
                                  "peak_rss_mb": _median([b["peak_rss_mb"] for b in builtin]),
                                  "note": "HNSW not built (the built-in backend builds none by default)",
                                  "queries": builtin[0]["queries"] if builtin else {}},
        "server_settings": settings,
    }
    result["speedup_vs_builtin"] = round(result["builtin_pgvector_copy"]["total_seconds"]["median"]
                                         / result["palace_pg"]["total_seconds"]["median"], 2)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    pp = result["palace_pg"]
    print(f"rows: {rows} ({result['facts'].get('vectors')}) on {os.cpu_count()} cores; median of {args.repeat} run(s)")
    print(f"{'':34}{'median':>10}{'min':>10}{'max':>10}")
    for name, fig in [("palace_pg total (s)", pp["total_seconds"]), ("palace_pg peak RSS (MB)", pp["peak_rss_mb"])] + \
            [(f"  phase {k} (s)", v) for k, v in pp["phase_seconds"].items()] + \
            [("built-in pgvector copy (s)", result["builtin_pgvector_copy"]["total_seconds"])]:
        print(f"{name:34}{fig['median']:>10}{fig['min']:>10}{fig['max']:>10}")
    print(f"palace_pg rows/s: {pp['rows_per_second']}; speedup vs built-in: {result['speedup_vs_builtin']}x; "
          f"recall@10 (ef_search 100): {pp['recall_at_10']}")
    for label, q in result["builtin_pgvector_copy"]["queries"].items():
        print(f"built-in pgvector query, {label}: p50 {q['p50_ms']:.1f} ms, p95 {q['p95_ms']:.1f} ms, "
              f"recall@10 {q['recall_at_10']:.3f} ({q['queries']} queries)")
    print(f"JSON: {args.json}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
