"""02_migrate's online path: syncs while MemPalace keeps running, then the catch-up cutover and its downtime.

With ``online=True`` the migration copies the palace while MemPalace may be
writing; each sync then brings the target up to the palace as it is now and
says what it wrote per collection and for the KG.  The cutover gate runs
:func:`palace_pg.cutover.cutover_with_sync`: with the writers stopped, a last
sync, phase 6 against that final snapshot, the renames; the downtime is the
time of that call and is shown with its parts.  Everything shown is also
recorded for the evidence (``results/02_syncs.json``, ``results/02_cutover.json``,
``figures/downtime.png``).
"""

from __future__ import annotations

import logging

from .. import engine
from ..cutover import cutover_steps as offline_cutover_steps
from ..dsn import redact, resolve_dsn
from ..marker import has_marker
from . import display
from .board import ProgressBoard
from .demo import Target
from .steps import BEFORE_PHASES, options

log = logging.getLogger(__name__)

SYNC_STEPS = [BEFORE_PHASES[0], ("sync", "Write what MemPalace added, updated and deleted since the last read")]
CUTOVER_STEPS = [("snapshot", "Copy and hash the palace, writers stopped (a live writer is refused)"),
                 ("sync", "The last sync: what was written since the previous one"),
                 ("verify", "Phase 6 against the final snapshot: counts, id sets, every row's digest, the KG")]
#: what each part of the downtime proves or does, in the order it runs
DOWNTIME_PARTS = {"snapshot": "copy and hash the stopped palace", "sync": "apply the last changes",
                  "verify": "prove every row and KG column", "rename": "hash the files, move Chroma aside"}


# -- wording of the gates and the operator sequence --------------------------------------------
def write_question(target: Target, params: dict) -> str:
    how = "online (MemPalace may keep running; syncs catch up afterwards)" if params.get("online") else \
        "offline (every MemPalace writer must be stopped)"
    return f"Migrate {target.palace} into {redact(resolve_dsn(target.dsn))}, {how}"


def cutover_question(target: Target, params: dict) -> str:
    if params.get("online"):
        return (f"With every MemPalace writer stopped: catch up, verify and cut {target.palace} over to PostgreSQL "
                "(the Chroma palace is moved aside)")
    return f"Move the Chroma palace {target.palace} aside and cut over to PostgreSQL"


def cutover_steps(target: Target, params: dict) -> list[str]:
    """The operator sequence; online, the cutover step is the catch-up cutover."""
    listed = offline_cutover_steps(target.palace, redact(resolve_dsn(target.dsn)))
    if not params.get("online"):
        return listed
    with_sync = (f"Run the cutover with catch-up: `palace-pg cutover --palace {target.palace} --sync --yes` (or "
                "gate 2 below): a last sync of what was written since the previous one, phase 6 against that "
                "final snapshot, then the renames. The downtime (writers stopped → cutover done) is measured.")
    return [with_sync if s.startswith("Run the cutover") else s for s in listed]


# -- syncs ---------------------------------------------------------------------------------------
def changes(summary: dict) -> list[dict]:
    """One sync's writes: a row per collection, then the KG's entities and triples (never deleted)."""
    rows = [{"what": name, "added": c.get("added"), "updated": c.get("updated"), "deleted": c.get("deleted"),
             "unchanged candidates": c.get("candidates_unchanged"), "rejected": c.get("rejected")}
            for name, c in (summary.get("collections") or {}).items()]
    kg = summary.get("kg") or {}
    for kind in ("entities", "triples"):
        rows.append({"what": f"knowledge graph: {kind}", "added": kg.get(f"{kind}_added", 0),
                     "updated": kg.get(f"{kind}_changed", 0), "deleted": None,
                     "unchanged candidates": None, "rejected": None})
    return rows


def written(summary: dict) -> dict[str, int]:
    """Totals of one sync: rows added, updated, deleted over every collection, KG facts added and changed."""
    cols = (summary.get("collections") or {}).values()
    kg = summary.get("kg") or {}
    return {"added": sum(c.get("added", 0) for c in cols), "updated": sum(c.get("updated", 0) for c in cols),
            "deleted": sum(c.get("deleted", 0) for c in cols),
            "kg_added": kg.get("entities_added", 0) + kg.get("triples_added", 0),
            "kg_changed": kg.get("entities_changed", 0) + kg.get("triples_changed", 0)}


def _trim(summary: dict) -> dict:
    keep = ("status", "run_id", "wrote", "collections", "kg", "files_changed", "carried_files", "seconds",
            "elapsed_seconds", "message")
    return {k: summary[k] for k in keep if k in summary} | {"written": written(summary)}


class SyncLog:
    """Every sync of this notebook session; ``run()`` is one sync (re-run its cell as often as you like)."""

    def __init__(self, target: Target, params: dict) -> None:
        self.target, self.params = target, params
        self.syncs: list[dict] = []

    def run(self) -> dict | None:
        """One sync on its board, its table of writes and the session's syncs; returns the engine's summary."""
        if not self.params.get("online"):
            display.banner("no sync: this is an offline migration (online=False), MemPalace stays stopped "
                           "until the cutover", "skipped")
            return None
        if has_marker(self.target.palace):
            display.banner(f"{self.target.palace} is already cut over: MemPalace writes into PostgreSQL now, "
                           "there is nothing to sync", "done")
            return None
        n = len(self.syncs) + 1
        with ProgressBoard(SYNC_STEPS, title=f"Sync {n}") as board:
            summary = engine.sync(options(self.target, self.params), progress=board)
        totals = written(summary)
        verdict = (f"sync {n}: {totals['added']:,} added, {totals['updated']:,} updated, {totals['deleted']:,} "
                   f"deleted; KG {totals['kg_added']:,} added, {totals['kg_changed']:,} changed "
                   f"in {summary['elapsed_seconds']} s" if summary["wrote"]
                   else f"sync {n}: nothing changed since the last read ({summary['elapsed_seconds']} s)")
        display.banner(verdict, "done")
        if any(written(summary).values()):
            display.table(changes(summary), title=f"Sync {n}: what it wrote")
        self.syncs.append(_trim(summary))
        self.history()
        self.record()
        return summary

    def history(self) -> None:
        """Every sync of this session, so the shrinking delta is visible."""
        rows = [{"sync": i, "status": s["status"], **s["written"], "seconds": s["elapsed_seconds"]}
                for i, s in enumerate(self.syncs, 1)]
        display.table(rows, title="Syncs in this session")

    def record(self) -> None:
        display.record("02_syncs", {"online": True, "syncs": self.syncs}, self.target.evidence)


# -- the catch-up cutover --------------------------------------------------------------------------
def cutover_with_sync(target: Target, params: dict) -> dict:
    """Writers stopped: the last sync, verify, rename; shows the downtime and its parts (table and figure)."""
    from ..cutover import cutover_with_sync as run

    with ProgressBoard(CUTOVER_STEPS, title="Cutover with catch-up (writers stopped)") as board:
        result = run(options(target, params), progress=board)
    result["online_copy_seconds"] = online_copy_seconds(target.dsn)
    show_downtime(result, target)
    return result


def online_copy_seconds(dsn: str) -> float | None:
    """How long the migration itself ran (from the target's runs): MemPalace kept running meanwhile."""
    runs = [r for r in engine.status(dsn)["runs"] if r["status"] == "done" and "phase_seconds" in (r["summary"] or {})]
    return runs[-1]["summary"].get("elapsed_seconds") if runs else None


def downtime_rows(result: dict) -> list[dict]:
    """The downtime's parts in seconds; 'other' is the rest of the call (locks, connections, checks)."""
    parts = result.get("downtime_parts") or {}
    rows = [{"part": name, "seconds": parts[name], "what": what} for name, what in DOWNTIME_PARTS.items()
            if name in parts]
    rest = round(result["downtime_seconds"] - sum(r["seconds"] for r in rows), 2)
    if rest > 0:
        rows.append({"part": "other", "seconds": rest, "what": "locks, connections, preflight of the writers"})
    return rows


def show_downtime(result: dict, target: Target) -> None:
    from .plots import downtime as downtime_figure

    verify = result.get("verify") or {}
    differences = verify.get("differences")
    copy = result.get("online_copy_seconds")
    offline = f"; the online copy took {copy} s, the downtime an offline migration would have had" if copy else ""
    display.banner(f"downtime {result['downtime_seconds']} s (writers stopped → cutover done){offline}; verify "
                   f"found {differences} difference(s)", "done" if differences == 0 else "fail")
    rows = downtime_rows(result)
    display.table(rows, ["part", "seconds", "what"], title="Downtime, part by part")
    display.figure(downtime_figure(rows, result["downtime_seconds"]), target.evidence / "figures" / "downtime.png")
    last = result.get("sync") or {}
    if any(written(last).values()):
        display.table(changes(last), title="The last sync: what it wrote")
    else:
        display.banner("the last sync found nothing new since the previous one", "done")
    display.table([{"collection": name, **c} for name, c in (verify.get("collections") or {}).items()],
                  title="Verified inside the downtime")
    display.key_values({k: result[k] for k in ("palace", "backup", "marker", "target") if k in result},
                       title="Cutover done")
