"""Runbook steps that combine several library calls, so each notebook cell stays one call and one display."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

from .. import engine
from ..errors import PalacePgError
from ..phases.base import MigrationOptions
from . import display
from .board import ProgressBoard
from .demo import Target, chroma_source

log = logging.getLogger(__name__)


def options(target: Target, params: dict, *, source: Path | None = None) -> MigrationOptions:
    """The engine's options from a runbook's target and parameters."""
    return MigrationOptions(palace=source or target.palace, dsn=target.dsn,
                            batch_size=params.get("batch_size", 5000), work_dir=target.work_dir,
                            restart=params.get("restart", False), ef_search=params.get("ef_search", 200),
                            kg_store=params.get("kg_store", "auto"), online=params.get("online", False))


#: the steps before phase 1 (no checkpoint row): the source's snapshot, then preflight, with the engine's titles
BEFORE_PHASES = [("snapshot", "Copy and hash the source palace"), ("preflight", "Read-only checks of source and target")]


def phases() -> list[tuple[str, str]]:
    """(name, title) of every step of a migration, in order: the rows of the progress board."""
    return BEFORE_PHASES + [(p.name, p.title) for p in engine.PHASES]


def planned_collections(the_plan: dict | None) -> dict[str, dict[str, int]]:
    """Per phase, the collections it will handle and their rows (from ``engine.plan``); verify handles all."""
    out: dict[str, dict[str, int]] = {}
    for entry in (the_plan or {}).get("phases", []):
        listed = (entry.get("plan") or {}).get("collections")
        if isinstance(listed, list) and listed and isinstance(listed[0], dict):
            out[entry["phase"]] = {c["collection"]: c.get("rows") or 0 for c in listed}
    out["verify"] = {name: rows for per_phase in out.values() for name, rows in per_phase.items()}
    return out


def migration_board(status: dict, the_plan: dict | None = None, *, title: str = "Migration") -> ProgressBoard:
    """The board of a migration: snapshot, preflight, every phase (those done earlier say so)."""
    return ProgressBoard(phases(), done_phases(status), title=title, expected=planned_collections(the_plan))


def done_phases(status: dict) -> list[str]:
    return [r["phase"] for r in status.get("checkpoints", []) if r["state"] == "done" and not r["unit"]]


def _caught_up_by_syncs(status: dict, params: dict) -> bool:
    """Online and already migrated: the palace may have changed since (MemPalace runs); the syncs catch up."""
    return bool(params.get("online")) and bool(status.get("complete"))


def plan(target: Target, params: dict, status: dict) -> dict | None:
    """The plan and the checks not ok (raises when one failed); None once an online migration is complete."""
    if _caught_up_by_syncs(status, params):
        display.banner("already migrated online: there is nothing to copy again; the syncs below bring the target "
                       "up to the palace as it is now", "done")
        return None
    the_plan = engine.plan(options(target, params))
    display.plan(the_plan)
    display.checks([c for c in the_plan["preflight"]["checks"] if c["status"] != "ok"], title="Checks not ok")
    require_ok(the_plan["preflight"])
    return the_plan


def migrate(gate, target: Target, params: dict, status: dict, the_plan: dict | None) -> dict:
    """The migration behind its write gate, on the progress board; an online one done earlier is not rerun."""
    gate.require()
    if _caught_up_by_syncs(status, params):
        summary = {"status": "already-done", "wrote": "nothing", "online": True,
                   "message": "already migrated online; the syncs below catch up with what MemPalace wrote since"}
    else:
        with migration_board(status, the_plan) as board:
            summary = engine.migrate(options(target, params), progress=board)
    display.migration(summary)
    if params.get("online") and summary.get("status") == "done":
        display.banner("an online copy: MemPalace may have kept writing meanwhile; the syncs below write what it "
                       "wrote, and the cutover catches up the rest with its writers stopped", "ok")
    return summary


def require_ok(report) -> None:
    """Raise PreflightRefused when any check failed (after the notebook has shown them)."""
    from ..errors import Check, PreflightRefused

    if isinstance(report, dict):  # engine.plan() returns the report as a dict
        checks = [c if isinstance(c, Check) else Check(**c) for c in report["checks"]]
    else:
        checks = report.checks
    if any(c.status == "fail" for c in checks):
        raise PreflightRefused(checks)


def cutover(gate, target: Target, params: dict | None = None) -> dict | None:
    """The cutover behind its gate: None (shown as skipped) when headless and not requested.

    After an online migration (``params["online"]``) it is the catch-up cutover, its downtime shown.
    """
    from ..cutover import cutover as do_cutover
    from ..marker import has_marker

    if has_marker(target.palace):
        display.banner(f"{target.palace} is already cut over (it holds palace_pg.json)", "done")
        return {"palace": str(target.palace), "already": True}
    if not gate.proceed():
        return None
    if (params or {}).get("online"):
        from .catch_up import cutover_with_sync

        return cutover_with_sync(target, params)
    result = do_cutover(target.palace, target.dsn)
    display.key_values(result, title="Cutover done")
    return result


def smoke(target: Target, done: dict | None) -> list[dict]:
    """After a cutover: `mempalace status` on the palace and a KG query through AGE.  Raises on a failure."""
    if not done:
        display.banner("smoke test skipped: no cutover was made in this run", "skipped")
        return []
    rows = [_mempalace_status(target.palace), _mempalace_search(target.palace), _kg_query(target)]
    display.table(rows, ["check", "status", "detail"], title="Smoke test after the cutover", status_col="status")
    failed = [r for r in rows if r["status"] == "fail"]
    if failed:
        raise PalacePgError(f"smoke test failed: {'; '.join(r['check'] for r in failed)}",
                            f"roll back: palace-pg rollback --palace {target.palace} --yes")
    return rows


def _mempalace(palace: Path, *args: str) -> tuple[int, str]:
    exe = shutil.which("mempalace") or str(Path(sys.executable).with_name("mempalace"))
    try:
        proc = subprocess.run([exe, "--palace", str(palace), *args], capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, type(exc).__name__
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _mempalace_status(palace: Path) -> dict:
    code, out = _mempalace(palace, "status")
    headline = next((line.strip() for line in out.splitlines() if "MemPalace Status" in line), out[-300:])
    return {"check": "mempalace status", "status": "ok" if code == 0 and "MemPalace Status" in out else "fail",
            "detail": headline}


def _mempalace_search(palace: Path) -> dict:
    """A search needs MemPalace's embedder; without its local model files the check is skipped, not faked."""
    from ..source import minilm

    if not minilm.model_available():
        return {"check": "mempalace search", "status": "skipped",
                "detail": "the MiniLM model files are not installed locally (a search would download them)"}
    code, out = _mempalace(palace, "search", "notes")
    ok = code == 0 and "error" not in out.lower()
    return {"check": "mempalace search", "status": "ok" if ok else "fail", "detail": out.splitlines()[-1][:300]
            if out else ""}


def _kg_query(target: Target) -> dict:
    from .kgparity import age_graph_class

    cls, why = age_graph_class()
    if cls is None:
        return {"check": "KG query (AGE)", "status": "skipped", "detail": why}
    graph = cls(dsn=target.dsn)
    try:
        stats = graph.stats()
        facts = graph.timeline(limit=3)
    finally:
        graph.close()
    return {"check": "KG query (AGE)", "status": "ok" if stats else "fail",
            "detail": f"{stats.get('entities')} entities, {stats.get('triples')} triples; first fact: "
                      + (f"{facts[0]['subject']} {facts[0]['predicate']} {facts[0]['object']}" if facts else "none")}


def measurement(target: Target):
    """A measurement session on a Chroma copy of the source (its backup once cut over) and the target."""
    from .measure import Session

    return Session(chroma_source(target.palace), target.dsn, target.work_dir)


def verify(target: Target, params: dict) -> dict:
    """Phase 6 on demand, with its parity tables shown whether it passes or fails (then it raises)."""
    from ..errors import VerificationFailed

    board = ProgressBoard([BEFORE_PHASES[0], ("verify", "Compare counts, ids, rows, vectors, the KG; recall@10")],
                          title="Verification")
    try:
        with board:
            report = engine.verify(options(target, params, source=chroma_source(target.palace)), progress=board)
    except VerificationFailed as exc:
        report = engine.status(target.dsn).get("verification") or {"collections": {}, "kg": {}}
        display.parity(report, exc.differences)
        raise
    display.parity(report, report.get("differences_listed", []))
    return report


def require_kg_parity(result: dict) -> None:
    """Raise when sqlite and AGE answered a KG question differently (a skip is shown, not raised)."""
    if result.get("status") == "fail":
        raise PalacePgError(f"KG query parity failed: {result['reason']}",
                            "do not cut over; the differing questions are in the table above")
