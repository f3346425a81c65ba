"""Benchmark the export back to Chroma: export + read-back verification seconds and peak RSS.

    python benchmarks/bench_export.py [--drawers 20000] [--triples 12500] [--out DIR] [--dsn DSN] [--json OUT]

With ``--dsn`` of a migrated palace (e.g. the 160K one: ``palace-pg migrate --palace P --dsn D``) it
exports that database; --drawers/--triples are then only labels.

Without ``--dsn`` a scratch database is created on the embedded server, filled
directly (synthetic drawers and closets by binary COPY, a KG by ``bulk_load``:
the shape a migration leaves) and dropped afterwards.  ``--out`` is where the
palace is written (default: a temporary folder; ``/dev/shm`` shows Chroma without
its rollback-journal I/O).  Target (issue 17): 160K drawers + 100K triples
exported and verified in <= 3 minutes on 2 cores, peak RSS <= 1 GB.

Peak RSS is this process's (``ru_maxrss``) and, separately, the largest child's
(the direct reader reads a Chroma write-queue tail through chromadb in a child).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from palace_pg.testing import backend as testing
from palace_pg.export import export_palace
from palace_pg.kg import bulk_load, ensure_graph
from palace_pg.target_db import state

log = logging.getLogger("bench_export")


def fill(dsn: str, drawers: int, triples: int) -> None:
    from bench_kg import synthetic_rows  # benchmarks/ is on sys.path when run as a script

    data = testing.synthetic_drawers(drawers, n_queries=1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        for name, table_rows in (("mempalace_drawers", drawers), ("mempalace_closets", max(1, drawers // 10))):
            table = testing.create_collection_table(conn, name, 384)
            n = table_rows
            testing.copy_rows(conn, table, data.ids[:n] if name.endswith("drawers") else
                              [f"closet_{i:08d}" for i in range(n)], data.documents[:n], data.metadatas[:n],
                              data.embeddings[:n])
        state.set_meta(conn, "embedder", {"mempalace_drawers": {"model_name": "minilm", "dimension": 384},
                                          "mempalace_closets": {"model_name": "minilm", "dimension": 384}})
        with conn.transaction():
            ensure_graph(conn)
            entities, rows = synthetic_rows(max(10, triples // 5), triples)
            bulk_load(conn, entities, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--drawers", type=int, default=20_000)
    ap.add_argument("--triples", type=int, default=12_500)
    ap.add_argument("--dsn")
    ap.add_argument("--out", help="folder to write the palace into (default: a temporary folder)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    server = name = None
    dsn = args.dsn
    if dsn is None:
        from palace_pg.server import EmbeddedServer

        server = EmbeddedServer.from_env()
        name = f"bench_export_{uuid.uuid4().hex[:8]}"
        dsn = server.create_database(name)
        started = time.monotonic()
        fill(dsn, args.drawers, args.triples)
        print(f"filled {args.drawers} drawers + {args.drawers // 10} closets + {args.triples} triples "
              f"in {time.monotonic() - started:.1f} s")
    parent = Path(tempfile.mkdtemp(prefix="bench_export-", dir=args.out))
    try:
        started = time.monotonic()
        peaks: dict[str, float] = {}

        def sample(event) -> None:  # peak RSS as each stage (export / verify) progresses
            peaks[event.phase] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        summary = export_palace(dsn, parent / "palace", progress=sample)
        wall = time.monotonic() - started
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self_mb = usage.ru_maxrss / 1024
        child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        t = summary["timings"]
        figures = {"drawers": args.drawers, "triples": args.triples, "rows": summary["collections"],
                   "kg": summary["kg"], "written_to": str(parent),
                   "export_s": round(t["total_s"] - t.get("verify_s", 0), 1), "verify_s": round(t.get("verify_s", 0), 1),
                   "total_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
                   "load_average_1_5_15": [round(x, 1) for x in os.getloadavg()], "peak_rss_mb": round(self_mb),
                   "peak_rss_mb_by_stage": {k: round(v) for k, v in peaks.items()}, "peak_child_rss_mb": round(child_mb),
                   "renormalised_by_chroma": {k: v["renormalised_by_chroma"]
                                              for k, v in summary["verification"]["collections"].items()},
                   "timings": t, "verify_seconds": summary["verification"].get("seconds"),
                   "chromadb_rows_read_in_full": {k: v.get("chromadb_rows_read_in_full")
                                                  for k, v in summary["verification"]["collections"].items()}}
        print(json.dumps(figures, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        shutil.rmtree(parent, ignore_errors=True)
        if server is not None:
            server.drop_database(name)


if __name__ == "__main__":
    main()
