"""Downtime of an online migration + cutover --sync, beside the offline migration, in one run (issue 16).

    python benchmarks/bench_downtime.py --palace /work/p160/palace [--changed 0.01] [--kg-writes 1000]

On a scratch copy of the palace (the given palace is only read):

1. the offline migration into a database of its own: all of it is downtime;
2. an online migration into another (MemPalace could keep running: not downtime);
3. a sync with nothing changed (target: <= 10 s, writes nothing);
4. writes through MemPalace's own API: ``--changed`` of the drawers (a third added, a third updated,
   a sixth upserted, a sixth deleted) and ``--kg-writes`` KG calls (add_triple, invalidate, supersede);
5. ``cutover --sync``: the downtime, from the call (writers stopped) to the renames done, every row
   verified against the final palace (target: <= 15 s).

Prints one JSON document; every figure says what it measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from palace_pg import engine  # noqa: E402
from palace_pg.cutover import cutover_with_sync  # noqa: E402
from palace_pg.phases.base import MigrationOptions  # noqa: E402
from palace_pg.server import EmbeddedServer  # noqa: E402
from palace_pg.source.kg_reader import resolve_kg_path  # noqa: E402


def _unit(rng: np.random.Generator, n: int) -> list[list[float]]:
    v = rng.standard_normal((n, 384)).astype(np.float32)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).tolist()


def write_like_mempalace(palace: Path, changed: float, kg_writes: int, seed: int = 1) -> dict:
    """Drawer and KG writes through MemPalace's ChromaBackend and KnowledgeGraph; returns what was done."""
    from mempalace.backends.chroma import ChromaBackend
    from mempalace.knowledge_graph import KnowledgeGraph

    rng = np.random.default_rng(seed)
    started = time.monotonic()
    drawers = ChromaBackend().get_collection(str(palace), "mempalace_drawers")
    total = drawers.count()
    n = max(6, int(total * changed))
    sample = drawers.get(limit=n, offset=total // 3, include=["metadatas"])
    ids = list(sample.ids if hasattr(sample, "ids") else sample["ids"])
    adds, updates, upserts, deletes = n // 3, n // 3, n // 6, n - n // 3 - n // 3 - n // 6
    done = {"added": 0, "updated": 0, "upserted": 0, "deleted": 0}
    for start in range(0, adds, 500):
        k = min(500, adds - start)
        drawers.add(ids=[f"drawer_bench_{start + i}" for i in range(k)],
                    documents=[f"a drawer written after the online copy, {start + i}" for i in range(k)],
                    metadatas=[{"wing": "bench", "room": "after", "chunk_index": i} for i in range(k)],
                    embeddings=_unit(rng, k))
        done["added"] += k
    upd = ids[:updates]
    for start in range(0, len(upd), 500):
        part = upd[start:start + 500]
        drawers.update(ids=part, metadatas=[{"wing": "bench", "room": "updated"} for _ in part])
        done["updated"] += len(part)
    ups = ids[updates:updates + upserts]
    if ups:
        drawers.upsert(ids=ups, documents=["upserted after the copy"] * len(ups),
                       metadatas=[{"wing": "bench", "room": "upserted"} for _ in ups], embeddings=_unit(rng, len(ups)))
        done["upserted"] = len(ups)
    dels = ids[updates + upserts:updates + upserts + deletes]
    if dels:
        drawers.delete(ids=dels)
        done["deleted"] = len(dels)
    kg = KnowledgeGraph(str(resolve_kg_path(palace)))
    calls = 0
    for i in range(kg_writes):
        kind = i % 4
        if kind in (0, 1):
            kg.add_triple(f"Bench{i // 4}", "relates_to", f"Thing{i}", valid_from="2026-12-01")
        elif kind == 2:
            kg.invalidate(f"Bench{i // 4}", "relates_to", f"Thing{i - 2}", ended="2026-12-02")
        else:
            kg.supersede(f"Bench{i // 4}", "relates_to", f"Thing{i - 2}", f"Other{i}", at="2026-12-03")
        calls += 1
    kg.close()
    done["kg_calls"] = calls
    done["seconds"] = round(time.monotonic() - started, 1)
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--palace", required=True, type=Path)
    ap.add_argument("--changed", type=float, default=0.01, help="share of drawers written after the online copy")
    ap.add_argument("--kg-writes", type=int, default=1000)
    ap.add_argument("--skip-offline", action="store_true", help="leave out the offline reference migration")
    args = ap.parse_args()
    server = EmbeddedServer.from_env()
    server.start()
    scratch = Path(tempfile.mkdtemp(prefix="palace_pg-downtime-"))
    out: dict = {"palace": str(args.palace), "measured": "wall-clock seconds on this machine, one run each"}
    try:
        palace = scratch / "palace"
        shutil.copytree(args.palace, palace)
        for name in ("hallways.json", "tunnels.json"):
            if (args.palace.parent / name).is_file():
                shutil.copy2(args.palace.parent / name, scratch / name)
        work = scratch / "work"
        if not args.skip_offline:
            dsn = server.create_database("bench_offline")
            t0 = time.monotonic()
            engine.migrate(MigrationOptions(palace=palace, dsn=dsn, work_dir=work))
            out["offline_migration_downtime_seconds"] = round(time.monotonic() - t0, 1)
            server.drop_database("bench_offline")
        dsn = server.create_database("bench_online")
        t0 = time.monotonic()
        engine.migrate(MigrationOptions(palace=palace, dsn=dsn, work_dir=work, online=True))
        out["online_migration_seconds_not_downtime"] = round(time.monotonic() - t0, 1)
        idle = engine.sync(MigrationOptions(palace=palace, dsn=dsn, work_dir=work, online=True))
        out["sync_nothing_changed"] = {"seconds": idle["elapsed_seconds"], "wrote": idle["wrote"]}
        out["writes_after_the_copy"] = write_like_mempalace(palace, args.changed, args.kg_writes)
        result = cutover_with_sync(MigrationOptions(palace=palace, dsn=dsn, work_dir=work))
        out["cutover_with_sync"] = {"downtime_seconds": result["downtime_seconds"],
                                    "parts_seconds": result["downtime_parts"], "sync": result["sync"],
                                    "verify_differences": result["verify"]["differences"],
                                    "rows_compared": {k: v["rows_compared"]
                                                      for k, v in result["verify"]["collections"].items()}}
        server.drop_database("bench_online")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
