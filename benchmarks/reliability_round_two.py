"""Issue 15's figures for benchmarks/reliability_report.py, each measured with the project's own pieces.

* local OS users other than the owner that can connect: ``nobody`` tries every door of the embedded
  server (palace_pg.testing.outsiders, as tests/test_server.py does); needs root and ``runuser``;
* the backup → restore round trip: palace_pg.backup into a fresh database, the fingerprint of every
  table compared, and ``palace-pg verify`` of the restored copy against the source palace;
* the crash window of 15.3 and the sync kill points of 16.4: kill_resume.Harness;
* a short load run: load_mempalace.run_load (ops/s, p50/p99, acknowledged writes lost, errors
  outside the restart window).
"""

from __future__ import annotations

import sys
from pathlib import Path

from kill_resume import Harness, fingerprint, run, summary_of

from palace_pg import backup
from palace_pg.server import EmbeddedServer
from palace_pg.testing.outsiders import can_act_as_outsider, got_in, outsider_attempts


def outsiders(server: EmbeddedServer) -> dict:
    if not can_act_as_outsider():
        return {"checked": False, "why": "needs root and runuser to act as another user"}
    attempts = outsider_attempts(server)
    opened = [door for door, proc in attempts.items() if got_in(proc)]
    return {"checked": True, "doors": len(attempts), "opened": opened, "users_in": 1 if opened else 0}


def backup_round_trip(h: Harness, source_dsn: str, tmp: Path) -> dict:
    """palace_pg.backup of a migrated database, restored into a fresh one, compared table by table and verified."""
    archive = tmp / "round-trip.dump"
    made = backup.backup(source_dsn, archive)
    restored = h.database("restored")
    try:
        backup.restore(archive, restored)
        before, after = fingerprint(source_dsn), fingerprint(restored)
        differing = sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))
        rc, out, _ = run([sys.executable, "-m", "palace_pg.cli", "verify", "--palace", str(h.palace), "--dsn",
                            restored, "--work-dir", str(h.work), "--json", "--no-progress"])
        h.watch.check("verify of the restored copy")
        verify = summary_of(out)
    finally:
        h.drop("restored")
        archive.unlink(missing_ok=True)
    return {"bytes": made["bytes"], "tables": len(before), "differing_tables": differing,
            "verify_exit": rc, "verify_differences": verify.get("differences"),
            "ok": not differing and rc == 0 and verify.get("differences") == 0}


def rows(outside: dict | None, round_trip: dict | None, window: dict, syncs: dict | None,
         load: dict | None) -> list[tuple[str, str]]:
    """The report's lines for issue 15 (a part that was skipped says so)."""
    out = []
    if outside is not None:
        out.append(("local users other than the owner in", (
            f"{outside['users_in']} (nobody tried {outside['doors']} doors: TCP, TCP with the owner's URL, "
            f"the socket, a guessed password; opened: {', '.join(outside['opened']) or 'none'})")
            if outside["checked"] else f"not checked: {outside['why']}"))
    if round_trip is not None:
        out.append(("backup → restore differences", (
            f"{len(round_trip['differing_tables'])} in {round_trip['tables']} tables fingerprinted "
            f"({round_trip['bytes'] / 1e6:.1f} MB archive); verify of the copy against the palace: "
            f"{round_trip['verify_differences']} differences")))
    out.append(("crash window (schema → palace_id)", (
        f"{'covered' if window['ok'] else 'NOT COVERED'}: SIGKILL at phase-done:1 left phases "
        f"{window['left_after_kill'][0] or 'none'} and palace_id {window['left_after_kill'][1]}; after the rerun "
        f"palace_id {'present' if window['palace_id_after_rerun'] else 'MISSING'}, "
        f"{'identical' if window['identical'] else 'DIFFERENT'} to the clean run")))
    if syncs is not None:
        out.append(("sync kill points survived", (
            f"{syncs['sync_identical']}/{syncs['sync_kill_points']} identical ({syncs['sync_tables_compared']} "
            f"tables fingerprinted); source hash unchanged {syncs['sync_source_runs_unchanged']}/"
            f"{syncs['sync_source_runs']} syncs; rerun wrote nothing: {'yes' if not syncs['sync_rerun_wrote'] else 'NO'}")))
    if load is not None:
        outside_errors = sum(load["errors_outside_window"].values())
        out.append(("MemPalace under load", (
            f"{load['writers']} + {load['readers']} processes, {load['seconds']:g} s, {load['drawers']} drawers: "
            f"{load['ops_per_s']} ops/s, p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms; "
            f"{load['acknowledged_writes']} acknowledged writes, lost {load['lost']}; errors outside the "
            f"{load['restart_seconds']} s restart window {outside_errors} "
            f"(inside {sum(load['errors_in_restart_window'].values())})")))
    return out


def all_ok(outside: dict | None, round_trip: dict | None, window: dict, syncs: dict | None,
           load: dict | None) -> bool:
    from kill_resume import sync_ok

    return ((outside is None or not outside["checked"] or outside["users_in"] == 0)
            and (round_trip is None or round_trip["ok"]) and window["ok"]
            and (syncs is None or sync_ok(syncs)) and (load is None or load["ok"]))
