"""Kill the migrator with SIGKILL at random points, resume until done, compare with a clean run.

    python benchmarks/kill_resume.py --points 20 [--drawers 2000] [--palace P] [--sync [--sync-batch-size 2]]

Half the kill points are named crash points chosen at random (biased towards
the window between a batch's COPY and its checkpoint's commit), half are
random wall-clock instants.  Each point gets a fresh database; the migrator is
killed, then rerun (killed again while points remain) until it finishes; the
target's fingerprint must equal the clean run's and the source palace's hash
must be unchanged after every migrator process, killed ones included.  Also:
the server stopped in `immediate` mode mid-batch, and an INVALID HNSW index (a
CREATE INDEX CONCURRENTLY killed mid-way) rebuilt.

Then issue 15.3's window (SIGKILL at ``phase-done:1`` as the schema phase commits: the rerun ends with
a palace_id).  With ``--sync`` (issue 16.4), on a copy of the palace: an online migration while MemPalace
writes, more writes, then a SIGKILL at each sync crash point in turn (``sync:1``, ``sync:2``, … until a
sync runs through), each rerun to the fingerprint of an uninterrupted sync, the palace's hash unchanged.

Prints `N/N identical` (and `sync kill points survived N/N identical`) and a JSON line of figures.  ``Harness`` is the
importable machinery (benchmarks/reliability_report.py reuses it).
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
import threading
import time
from pathlib import Path

import psycopg

from palace_pg.backup import set_search_path
from palace_pg.dsn import connect
from palace_pg.server import EmbeddedServer
from palace_pg.source.kg_reader import resolve_kg_path
from palace_pg.source.snapshot import hash_palace
from palace_pg.target_db import state
from palace_pg.target_db.fingerprint import target_fingerprint

NAMED_POINTS = ["copied"] * 4 + ["committed"] * 2 + ["index", "kg", "verify", "phase-done"]


def migrate_cmd(palace: Path, dsn: str, batch: int, work: Path, *extra: str) -> list[str]:
    # --allow-rejects: rejected rows are compared through the fingerprint and the JSON summary, not the exit code
    return [sys.executable, "-m", "palace_pg.cli", *extra, "migrate", "--palace", str(palace), "--dsn", dsn,
            "--batch-size", str(batch), "--work-dir", str(work), "--json", "--no-progress", "--allow-rejects"]


def sync_cmd(palace: Path, dsn: str, batch: int, work: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "palace_pg.cli", "sync", "--palace", str(palace), "--dsn", dsn,
            "--batch-size", str(batch), "--work-dir", str(work), "--json", "--no-progress", *extra]


def run(cmd, env=None, kill_after: float | None = None) -> tuple[int, str, str]:
    """(exit code, stdout, stderr); -9 when killed, by us after ``kill_after`` seconds or by a crash point."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    try:
        out, err = proc.communicate(timeout=kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        return -9, out, err
    return proc.returncode, out, err


def summary_of(out: str) -> dict:
    """The migrator's --json summary from its stdout ({} when there is none)."""
    try:
        return json.JSONDecoder().raw_decode(out[out.index("{"):])[0]
    except ValueError:
        return {}


def fingerprint(dsn: str) -> dict:
    with connect(dsn) as conn:
        return target_fingerprint(conn)


class SourceWatch:
    """The palace's hash (every file, WAL sidecars included), checked after every migrator process."""

    def __init__(self, palace: Path) -> None:
        self.palace = Path(palace)
        self.kg_path = resolve_kg_path(self.palace)
        self.before = hash_palace(self.palace, self.kg_path)
        self.runs = 0
        self.changed_after: list[str] = []

    def check(self, label: str) -> bool:
        self.runs += 1
        same = hash_palace(self.palace, self.kg_path) == self.before
        if not same:
            self.changed_after.append(label)
        return same

    @property
    def unchanged(self) -> int:
        return self.runs - len(self.changed_after)


class Harness:
    """Migrator runs against one palace on the embedded server, each followed by a source-hash check.

    ``verified`` accumulates what every run's verify phase compared (rows compared by hash, mismatches).
    """

    def __init__(self, server: EmbeddedServer, palace: Path, work: Path, batch: int, *, prefix: str = "kr",
                 watch: SourceWatch | None = None) -> None:
        self.server, self.palace, self.work, self.batch = server, Path(palace), Path(work), batch
        self.prefix = f"{prefix}_{os.getpid()}"
        self.watch = watch or SourceWatch(palace)
        self.clean: dict = {}
        self.clean_summary: dict = {}
        self.clean_seconds = 0.0
        self.verified = {"runs": 0, "rows_compared": 0, "kg_rows_compared": 0, "mismatches": 0}

    def database(self, name: str) -> str:
        db = f"{self.prefix}_{name}"
        self.server.drop_database(db)
        return self.server.create_database(db)

    def drop(self, name: str) -> None:
        self.server.drop_database(f"{self.prefix}_{name}")

    def migrate(self, dsn: str, env=None, kill_after: float | None = None, label: str = "run",
                extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
        rc, out, err = run(migrate_cmd(self.palace, dsn, self.batch, self.work, *extra), env, kill_after)
        self.watch.check(label)
        if rc == 0:
            self._count_verification(summary_of(out))
        return rc, out, err

    def _count_verification(self, summary: dict) -> None:
        verify = summary.get("results", {}).get("verify", {})
        if "collections" not in verify:
            return
        self.verified["runs"] += 1
        self.verified["rows_compared"] += sum(c["rows_compared"] for c in verify["collections"].values())
        self.verified["kg_rows_compared"] += verify["kg"]["entity_target"] + verify["kg"]["triple_target"]
        self.verified["mismatches"] += verify["differences"] + sum(
            c.get("mismatched_fields", 0) for c in verify["collections"].values())

    def clean_run(self) -> dict:
        """An uninterrupted migration: the reference fingerprint every other run must equal."""
        dsn = self.database("clean")
        t0 = time.monotonic()
        rc, out, err = self.migrate(dsn, label="clean")
        if rc != 0:
            raise RuntimeError(f"the clean run failed (exit {rc}): {(out + err)[-3000:]}")
        self.clean_seconds = time.monotonic() - t0
        self.clean_summary = summary_of(out)
        self.clean = fingerprint(dsn)
        self.drop("clean")
        return self.clean

    def run_point(self, point: int, rng: random.Random) -> dict:
        dsn = self.database(str(point))
        kills = 0
        how = []
        try:
            for attempt in range(12):
                if attempt < 2:  # kill twice per point, then let it finish
                    if rng.random() < 0.5:
                        spec = f"{rng.choice(NAMED_POINTS)}:{rng.randint(1, 3)}"
                        rc, _, _ = self.migrate(dsn, env={"PALACE_PG_CRASH_AT": spec}, label=f"point {point} {spec}")
                        how.append(spec)
                    else:
                        delay = rng.uniform(0.5, self.clean_seconds)
                        rc, _, _ = self.migrate(dsn, kill_after=delay, label=f"point {point} t+{delay:.1f}s")
                        how.append(f"t+{delay:.1f}s")
                    if rc == -9:
                        kills += 1
                        continue
                    if rc == 0:
                        break
                rc, out, err = self.migrate(dsn, label=f"point {point} resume")
                if rc == 0:
                    break
                raise RuntimeError(f"resume failed (exit {rc}): {(out + err)[-2000:]}")
            fp = fingerprint(dsn)
            diffs = sorted(k for k in self.clean if self.clean[k] != fp.get(k))
            return {"point": point, "kills": kills, "how": how, "identical": not diffs, "differing_tables": diffs}
        finally:
            self.drop(str(point))

    def immediate_stop_mid_batch(self) -> dict:
        """Stop the server in immediate mode while a batch is being copied; restart; resume."""
        dsn = self.database("immediate")
        proc = subprocess.Popen(migrate_cmd(self.palace, dsn, self.batch, self.work), stdout=subprocess.DEVNULL,
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
        self.server.kill_immediate()
        proc.wait(timeout=60)
        self.watch.check("server stopped mid-batch")
        self.server.start()
        rc, out, err = self.migrate(dsn, label="resume after the server stop")
        ok = rc == 0 and fingerprint(dsn) == self.clean
        self.drop("immediate")
        return {"immediate_stop_mid_batch": "identical" if ok else f"DIFFERENT (exit {rc})"}

    def invalid_index_rebuilt(self) -> dict:
        """Leave an INVALID HNSW index (CONCURRENTLY build killed mid-way) and check the rerun rebuilds it."""
        dsn = self.database("invalid")
        self.migrate(dsn, env={"PALACE_PG_CRASH_AT": "index:1"}, label="crash before the index build")
        builder = psycopg.connect(dsn, autocommit=True)
        pid = builder.info.backend_pid

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
                phase = admin.execute("SELECT phase FROM pg_stat_progress_create_index WHERE pid = %s",
                                      [pid]).fetchone()
                if phase and "building" in phase[0]:
                    break
                time.sleep(0.01)
            admin.execute("SELECT pg_terminate_backend(%s)", [pid])
            t.join()
            builder.close()
            invalid = admin.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                    "WHERE c.relname = 'drawers_embedding_hnsw' AND NOT i.indisvalid").fetchone()[0]
        rc, out, err = self.migrate(dsn, label="resume with an INVALID index")
        rebuilt = summary_of(out).get("results", {}).get("indexes", {}).get("rebuilt_invalid", []) if rc == 0 else []
        ok = rc == 0 and fingerprint(dsn) == self.clean
        self.drop("invalid")
        return {"invalid_index_left": bool(invalid), "invalid_index_rebuilt": rebuilt,
                "after_rebuild": "identical" if ok else f"DIFFERENT (exit {rc})"}

    def crash_window(self) -> dict:
        """Issue 15.3's window: SIGKILL at ``phase-done:1`` (the schema phase's row written, nothing committed);
        the target must hold no phase and no palace_id, and the rerun end with both, identical to the clean run."""
        dsn = self.database("window")
        try:
            rc, _, _ = self.migrate(dsn, env={"PALACE_PG_CRASH_AT": "phase-done:1"}, label="killed as schema commits")
            with connect(dsn) as conn:
                left = (sorted(state.applied(conn)), state.get_meta(conn, "palace_id"))
            rerun, _, _ = self.migrate(dsn, label="rerun after the schema window")
            with connect(dsn) as conn:
                palace_id = state.get_meta(conn, "palace_id")
            identical = rerun == 0 and fingerprint(dsn) == self.clean
        finally:
            self.drop("window")
        return {"killed": rc == -9, "left_after_kill": left, "rerun_exit": rerun, "palace_id_after_rerun":
                bool(palace_id), "identical": identical,
                "ok": rc == -9 and left == ([], None) and bool(palace_id) and identical}

    def _clone(self, base: str, name: str) -> str:
        """``name`` as a file copy of ``base`` (CREATE DATABASE … TEMPLATE: same OIDs, so the graph works);
        the per-database search_path AGE needs is not copied by a template and is set again."""
        self.drop(name)
        with psycopg.connect(self.server.url("postgres"), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                psycopg.sql.Identifier(f"{self.prefix}_{name}"), psycopg.sql.Identifier(f"{self.prefix}_{base}")))
        dsn = self.server.url(f"{self.prefix}_{name}")
        with connect(dsn, autocommit=True, vector=False) as conn:
            set_search_path(conn)
        return dsn

    def sync_kill_points(self, palace: Path, work: Path, batch: int = 2, max_points: int = 40) -> dict:
        """Issue 16.4: an online migration of ``palace`` (a copy: MemPalace writes it) with MemPalace writing
        during it, a second round of writes after it, then a SIGKILL at each sync crash point in turn
        (``sync:1``, ``sync:2``, … until a sync runs through): every killed sync is rerun and must leave the
        fingerprint of an uninterrupted sync from the same copy, and no sync may change the palace's hash."""
        from palace_pg.testing.mempalace_writes import write_through_mempalace

        base = "sync_base"
        dsn = self.database(base)
        during = threading.Thread(target=write_through_mempalace, args=(palace, 0))
        during.start()
        rc, out, err = run([*migrate_cmd(palace, dsn, self.batch, work), "--online"])
        during.join()
        if rc != 0:
            raise RuntimeError(f"the online migration failed (exit {rc}): {(out + err)[-3000:]}")
        write_through_mempalace(palace, 1)
        watch = SourceWatch(palace)  # from here on only palace_pg reads the palace
        results, clean = [], {}
        try:
            clean_dsn = self._clone(base, "sync_clean")
            rc, out, err = run(sync_cmd(palace, clean_dsn, batch, work, "--verify"))
            watch.check("clean sync")
            summary = summary_of(out)
            if rc != 0 or summary.get("verify", {}).get("differences") != 0:
                raise RuntimeError(f"the clean sync failed (exit {rc}): {(out + err)[-3000:]}")
            clean = fingerprint(clean_dsn)
            rc, out, _ = run(sync_cmd(palace, clean_dsn, batch, work))
            watch.check("sync rerun")
            rerun_wrote = summary_of(out).get("wrote", True)
            self.drop("sync_clean")
            for n in range(1, max_points + 1):
                dsn = self._clone(base, "sync_kill")
                rc, _, _ = run(sync_cmd(palace, dsn, batch, work), env={"PALACE_PG_CRASH_AT": f"sync:{n}"})
                watch.check(f"sync killed at sync:{n}")
                if rc == 0:  # a sync reaches its crash point n-1 times: every point has been tried
                    break
                resumed, _, _ = run(sync_cmd(palace, dsn, batch, work))
                watch.check(f"sync resumed after sync:{n}")
                fp = fingerprint(dsn) if resumed == 0 else {}
                results.append({"point": f"sync:{n}", "killed": rc == -9, "resume_exit": resumed,
                                "identical": rc == -9 and resumed == 0 and fp == clean,
                                "differing_tables": sorted(k for k in clean if clean[k] != fp.get(k))})
                self.drop("sync_kill")
        finally:
            for name in ("sync_kill", "sync_clean", base):
                self.drop(name)
        return {"sync_kill_points": len(results), "sync_identical": sum(r["identical"] for r in results),
                "sync_changed": summary.get("collections", {}), "sync_kg": summary.get("kg", {}),
                "sync_rerun_wrote": rerun_wrote, "sync_source_runs": watch.runs,
                "sync_source_runs_unchanged": watch.unchanged, "sync_tables_compared": len(clean),
                "sync_failures": [r for r in results if not r["identical"]]}

    def kill_points(self, points: int, rng: random.Random, extras: bool = True) -> dict:
        """The clean run (if not done yet), ``points`` kill points, then the two server/index cases."""
        if not self.clean:
            self.clean_run()
        results = [self.run_point(i, rng) for i in range(points)]
        more = {}
        if extras:
            more.update(self.immediate_stop_mid_batch())
            more.update(self.invalid_index_rebuilt())
        identical = sum(r["identical"] for r in results)
        return {"kill_points": len(results), "identical": identical, "kills": sum(r["kills"] for r in results),
                "tables_compared": len(self.clean), "source_hash_unchanged": not self.watch.changed_after,
                "source_runs": self.watch.runs, "source_runs_unchanged": self.watch.unchanged, **more,
                "failures": [r for r in results if not r["identical"]]}


def sync_ok(figures: dict) -> bool:
    """Every sync kill point identical, at least one tried, no sync changed the palace (True when not run)."""
    if "sync_kill_points" not in figures:
        return True
    return (figures["sync_identical"] == figures["sync_kill_points"] > 0 and not figures["sync_rerun_wrote"]
            and figures["sync_source_runs_unchanged"] == figures["sync_source_runs"])


def extras_ok(figures: dict) -> bool:
    return all(figures.get(k, "identical") == "identical" for k in ("immediate_stop_mid_batch", "after_rebuild"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10)
    ap.add_argument("--drawers", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--palace", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-extras", action="store_true", help="skip the immediate-stop and INVALID-index cases")
    ap.add_argument("--sync", action="store_true",
                    help="also kill syncs at each crash point (an online migration of a copy, MemPalace writing it)")
    ap.add_argument("--sync-batch-size", type=int, default=2, help="rows per sync transaction (more crash points)")
    args = ap.parse_args(argv)
    server = EmbeddedServer.from_env()
    server.start()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="palace_pg-kr-") as tmp:
        tmp = Path(tmp)
        palace = args.palace
        if palace is None:
            from palace_pg.synth import make_palace

            palace = tmp / "src" / "palace"
            make_palace(palace, drawers=args.drawers, seed=args.seed)
        harness = Harness(server, palace, tmp / "work", args.batch_size)
        try:
            harness.clean_run()
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 1
        figures = harness.kill_points(args.points, rng, extras=not args.no_extras)
        figures["crash_window"] = harness.crash_window()
        if args.sync:
            from palace_pg.testing.chroma import copy_of

            figures.update(harness.sync_kill_points(copy_of(palace, tmp / "sync"), tmp / "sync-work",
                                                    args.sync_batch_size))
    print(f"{figures['identical']}/{figures['kill_points']} identical")
    if args.sync:
        print(f"sync kill points survived {figures['sync_identical']}/{figures['sync_kill_points']} identical")
    print(json.dumps(figures, default=str))
    ok = (figures["identical"] == figures["kill_points"] and figures["source_hash_unchanged"] and extras_ok(figures)
          and figures["crash_window"]["ok"] and sync_ok(figures))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
