"""Kill the migrator with SIGKILL at random points, resume until done, compare with a clean run.

    python benchmarks/kill_resume.py --points 20 [--drawers 2000] [--palace P]

Half the kill points are named crash points chosen at random (biased towards
the window between a batch's COPY and its checkpoint's commit), half are
random wall-clock instants.  Each point gets a fresh database; the migrator is
killed, then rerun (killed again while points remain) until it finishes; the
target's fingerprint must equal the clean run's and the source palace's hash
must be unchanged.  Also: the server stopped in `immediate` mode mid-batch, and
an INVALID HNSW index (a CREATE INDEX CONCURRENTLY killed mid-build) rebuilt.

Prints `N/N identical` and a JSON line of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from palace_pg.dsn import connect
from palace_pg.server import EmbeddedServer
from palace_pg.source.kg_reader import resolve_kg_path
from palace_pg.source.snapshot import hash_palace
from palace_pg.target.fingerprint import target_fingerprint

NAMED_POINTS = ["copied"] * 4 + ["committed"] * 2 + ["index", "kg", "verify"]


def _migrate_cmd(palace: Path, dsn: str, batch: int, work: Path) -> list[str]:
    return [sys.executable, "-m", "palace_pg.cli", "migrate", "--palace", str(palace), "--dsn", dsn,
            "--batch-size", str(batch), "--work-dir", str(work), "--json", "--no-progress"]


def _run(cmd, env=None, kill_after: float | None = None) -> tuple[int, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    if kill_after is not None:
        try:
            out, err = proc.communicate(timeout=kill_after)
            return proc.returncode, out
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            return -9, ""
    out, err = proc.communicate()
    return proc.returncode, out + err


def _fingerprint(dsn: str) -> dict:
    with connect(dsn) as conn:
        return target_fingerprint(conn)


def run_point(server: EmbeddedServer, palace: Path, clean: dict, point: int, rng: random.Random, batch: int,
              work: Path, clean_seconds: float) -> dict:
    db = f"kr_{os.getpid()}_{point}"
    server.drop_database(db)
    dsn = server.create_database(db)
    kills = 0
    how = []
    try:
        for attempt in range(12):
            if attempt < 2:  # kill twice per point, then let it finish
                if rng.random() < 0.5:
                    spec = f"{rng.choice(NAMED_POINTS)}:{rng.randint(1, 3)}"
                    rc, _ = _run(_migrate_cmd(palace, dsn, batch, work), env={"PALACE_PG_CRASH_AT": spec})
                    how.append(spec)
                else:
                    delay = rng.uniform(0.5, clean_seconds)
                    rc, _ = _run(_migrate_cmd(palace, dsn, batch, work), kill_after=delay)
                    how.append(f"t+{delay:.1f}s")
                if rc == -9:
                    kills += 1
                    continue
                if rc == 0:
                    break
            rc, out = _run(_migrate_cmd(palace, dsn, batch, work))
            if rc == 0:
                break
            raise RuntimeError(f"resume failed (exit {rc}): {out[-2000:]}")
        fp = _fingerprint(dsn)
        diffs = sorted(k for k in clean if clean[k] != fp.get(k))
        return {"point": point, "kills": kills, "how": how, "identical": not diffs, "differing_tables": diffs}
    finally:
        server.drop_database(db)


def immediate_stop_mid_batch(server: EmbeddedServer, palace: Path, clean: dict, batch: int, work: Path) -> dict:
    """Stop the server in immediate mode while a batch is being copied; restart; resume."""
    db = f"kr_{os.getpid()}_immediate"
    server.drop_database(db)
    dsn = server.create_database(db)
    proc = subprocess.Popen(_migrate_cmd(palace, dsn, batch, work), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with psycopg.connect(dsn, connect_timeout=2) as conn:
                row = conn.execute("SELECT rows_done FROM mempalace.checkpoints WHERE phase = 'drawers' "
                                   "AND unit <> ''").fetchone()
            if row and row[0] > 0:
                break
        except psycopg.Error:
            pass
        time.sleep(0.05)
    server.kill_immediate()
    proc.wait(timeout=60)
    server.start()
    rc, out = _run(_migrate_cmd(palace, dsn, batch, work))
    ok = rc == 0 and _fingerprint(dsn) == clean
    server.drop_database(db)
    return {"immediate_stop_mid_batch": "identical" if ok else f"DIFFERENT (exit {rc})"}


def invalid_index_rebuilt(server: EmbeddedServer, palace: Path, clean: dict, batch: int, work: Path) -> dict:
    """Leave an INVALID HNSW index (CONCURRENTLY build killed mid-way) and check the rerun rebuilds it."""
    db = f"kr_{os.getpid()}_invalid"
    server.drop_database(db)
    dsn = server.create_database(db)
    rc, out = _run(_migrate_cmd(palace, dsn, batch, work), env={"PALACE_PG_CRASH_AT": "index:1"})
    builder = psycopg.connect(dsn, autocommit=True)
    pid = builder.info.backend_pid
    import threading

    def build():
        try:
            builder.execute("SET maintenance_work_mem = '8MB'")
            builder.execute("CREATE INDEX CONCURRENTLY drawers_embedding_hnsw ON mempalace.drawers "
                            "USING hnsw (embedding vector_cosine_ops)")
        except psycopg.Error:
            pass

    t = threading.Thread(target=build)
    t.start()
    with psycopg.connect(dsn, autocommit=True) as admin:
        for _ in range(400):
            phase = admin.execute("SELECT phase FROM pg_stat_progress_create_index WHERE pid = %s", [pid]).fetchone()
            if phase and "building" in phase[0]:
                break
            time.sleep(0.01)
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
        t.join()
        invalid = admin.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                "WHERE c.relname = 'drawers_embedding_hnsw' AND NOT i.indisvalid").fetchone()[0]
    rc, out = _run(_migrate_cmd(palace, dsn, batch, work))
    summary = json.JSONDecoder().raw_decode(out[out.index("{"):])[0] if rc == 0 else {}
    rebuilt = summary.get("results", {}).get("indexes", {}).get("rebuilt_invalid", [])
    ok = rc == 0 and _fingerprint(dsn) == clean
    server.drop_database(db)
    return {"invalid_index_left": bool(invalid), "invalid_index_rebuilt": rebuilt, "after_rebuild": "identical" if ok
            else f"DIFFERENT (exit {rc})"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10)
    ap.add_argument("--drawers", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--palace", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-extras", action="store_true", help="skip the immediate-stop and INVALID-index cases")
    args = ap.parse_args(argv)
    server = EmbeddedServer.from_env()
    server.start()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="palace_pg-kr-") as tmp:
        tmp = Path(tmp)
        palace = args.palace
        if palace is None:
            from palace_pg.source.generate import make_palace

            palace = tmp / "src" / "palace"
            make_palace(palace, drawers=args.drawers, seed=args.seed)
        work = tmp / "work"
        source_before = hash_palace(palace, resolve_kg_path(palace))
        db = f"kr_{os.getpid()}_clean"
        server.drop_database(db)
        dsn = server.create_database(db)
        t0 = time.monotonic()
        rc, out = _run(_migrate_cmd(palace, dsn, args.batch_size, work))
        if rc != 0:
            print(out, file=sys.stderr)
            return 1
        clean_seconds = time.monotonic() - t0
        clean = _fingerprint(dsn)
        rows = sum(1 for _ in clean)
        server.drop_database(db)
        results = [run_point(server, palace, clean, i, rng, args.batch_size, work, clean_seconds)
                   for i in range(args.points)]
        extras = {}
        if not args.no_extras:
            extras.update(immediate_stop_mid_batch(server, palace, clean, args.batch_size, work))
            extras.update(invalid_index_rebuilt(server, palace, clean, args.batch_size, work))
        source_after = hash_palace(palace, resolve_kg_path(palace))
    identical = sum(r["identical"] for r in results)
    print(f"{identical}/{len(results)} identical")
    figures = {"kill_points": len(results), "identical": identical,
               "kills": sum(r["kills"] for r in results), "tables_compared": rows,
               "source_hash_unchanged": source_before == source_after, **extras,
               "failures": [r for r in results if not r["identical"]]}
    print(json.dumps(figures, default=str))
    ok = identical == len(results) and figures["source_hash_unchanged"] and all(
        v in ("identical", True) or not isinstance(v, str) or v == "identical" for v in extras.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
