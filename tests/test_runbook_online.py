"""What 02_migrate shows of a migration: the progress board's rows, and the online path (issue 19.4, issue 16.5).

The board is fed a real migration's progress events; the online runbook runs under
papermill twice on a generated palace, with writes made through MemPalace's own API
in between: the first run copies online, the second syncs them and cuts over with
catch-up.  The evidence must show the sync's counts, the downtime and 0 differences.
"""

from __future__ import annotations

import json

import nbformat
import pytest

from palace_pg import engine
from palace_pg.phases.base import MigrationOptions
from palace_pg.runbook import evidence, steps
from palace_pg.runbook.board import ProgressBoard
from palace_pg.source.chroma_reader import read_collection_facts
from palace_pg.testing.chroma import copy_of
from palaces import generated
from palace_pg.testing.mempalace_writes import write_through_mempalace as _write_through_mempalace


def test_the_board_has_rows_for_snapshot_and_preflight_and_names_every_collection(fresh_db, tmp_path):
    palace = copy_of(generated(300, 5), tmp_path / "src")
    collections = [c.name for c in read_collection_facts(palace)]
    options = MigrationOptions(palace=palace, dsn=fresh_db, batch_size=100, work_dir=tmp_path / "work",
                               recall_queries=10)
    the_plan = engine.plan(options)
    board = steps.migration_board(engine.status(fresh_db), the_plan)
    seen: dict[str, list[dict]] = {}  # the board's rows as they were when each step began

    def progress(event) -> None:
        board(event)
        seen.setdefault(event.phase, board.rows())

    engine.migrate(options, progress=progress)
    board.tally.finish()
    names = [r["step"] for r in board.rows()]
    assert names[:3] == ["snapshot", "preflight", "schema"] and names[-1] == "done"

    def states(rows):
        return {r["step"]: r["state"] for r in rows}

    # while the snapshot runs, its row says so: the board is not all pending
    assert states(seen["snapshot"])["snapshot"] == "running"
    assert {s for n, s in states(seen["snapshot"]).items() if n != "snapshot"} == {"pending"}
    assert states(seen["preflight"])["snapshot"] == "done" and states(seen["preflight"])["preflight"] == "running"
    assert states(seen["schema"])["preflight"] == "done"
    # before the collections phase starts, its row already names what it will load
    pending = {r["step"]: r for r in seen["schema"]}
    assert all(name in pending["collections"]["detail"] for name in collections if name != "mempalace_drawers")

    final = {r["step"]: r for r in board.rows()}
    assert {r["state"] for r in final.values()} == {"done"}
    assert final["snapshot"]["figures"].endswith("B") and "rows" in final["drawers"]["figures"]
    assert "indexes" in final["indexes"]["figures"]
    # every collection a phase handled is named with its figures: drawers, closets, the others
    for name in collections:
        assert name in final["verify"]["detail"]
    assert all(name in final["collections"]["detail"] for name in collections if name != "mempalace_drawers")
    assert "mempalace_drawers 300/300" in final["drawers"]["detail"]
    text = board.render()[1]
    assert "pending" not in text and "running" not in text and "mempalace_closets" in text


def test_a_step_that_fails_is_marked_failed_and_the_rest_stay_pending():
    from palace_pg.phases.base import ProgressEvent

    board = ProgressBoard(steps.phases(), ["schema"], title="Migration")
    board(ProgressEvent("snapshot", "", 0, 1, "Copy and hash the source palace"))
    board(ProgressEvent("snapshot", "", 1, 1, "done"))
    board(ProgressEvent("drawers", "", 0, 1, "Load drawers"))
    board(ProgressEvent("drawers", "mempalace_drawers", 40, 300))
    board.tally.finish(failed=True)
    rows = {r["step"]: r for r in board.rows()}
    assert rows["snapshot"]["state"] == "done" and rows["preflight"]["state"] == "pending"
    assert rows["schema"]["state"] == "done in an earlier run"
    assert rows["drawers"]["state"] == "failed" and rows["drawers"]["detail"] == "mempalace_drawers 40/300"
    assert rows["verify"]["state"] == "pending"


@pytest.mark.notebooks
def test_online_runbook_syncs_mempalace_writes_and_measures_the_cutover_downtime(tmp_path, fresh_db):
    palace = copy_of(generated(300, 21), tmp_path / "src")
    ev = tmp_path / "ev"
    fast = {"batch_size": 100, "online": True}
    # 1. the online copy (MemPalace would be running), one sync, no cutover (the gate is not passed)
    first = evidence.run_runbooks(palace, ev, dsn=fresh_db, confirm=True, parameters=fast,
                                  notebooks=("02_migrate",))
    assert first["ok"], first
    results = json.loads((ev / "manifest.json").read_text())["results"]
    assert results["02_migrate"]["summary"]["status"] == "done" and results["02_migrate"]["online"] is True
    assert results["02_cutover"]["cutover"] is None  # headless without -p cutover True: skipped
    board = _board_text(ev)
    assert "snapshot" in board and "preflight" in board and "pending" not in board

    # 2. MemPalace writes through its own API; the rerun syncs them and cuts over with catch-up
    wrote = _write_through_mempalace(palace, 1)
    second = evidence.run_runbooks(palace, ev, dsn=fresh_db, confirm=True, parameters={**fast, "cutover": True},
                                   notebooks=("02_migrate",))
    assert second["ok"], second
    results = json.loads((ev / "manifest.json").read_text())["results"]
    sync = results["02_syncs"]["syncs"][-1]
    drawers = sync["collections"]["mempalace_drawers"]
    assert sync["status"] == "synced" and drawers["added"] >= 3 and drawers["updated"] >= 2 and drawers["deleted"] >= 1
    assert sync["collections"]["mempalace_closets"]["added"] >= 1
    assert sync["kg"]["triples_added"] >= 2 and sync["kg"]["triples_changed"] + sync["kg"]["triples_added"] >= 3
    cut = results["02_cutover"]["cutover"]
    assert cut["verify"]["differences"] == 0
    assert cut["downtime_seconds"] > 0 and set(cut["downtime_parts"]) >= {"snapshot", "sync", "verify", "rename"}
    assert (palace / "palace_pg.json").is_file() and (ev / "figures" / "downtime.png").stat().st_size > 5000
    assert (ev / "results" / "02_syncs.json").is_file() and (ev / "results" / "02_cutover.json").is_file()
    # the executed notebook shows the same to an operator: the sync's table and the downtime
    shown = _texts(ev)
    assert "Sync 1: what it wrote" in shown and wrote["upserted"] not in shown  # counts, never the rows
    assert "Downtime, part by part" in shown and "Cutover with catch-up" in shown
    with_counts = next(line for line in shown.splitlines() if line.startswith("mempalace_drawers"))
    assert str(drawers["added"]) in with_counts


def _texts(ev) -> str:
    nb = nbformat.read(ev / "notebooks" / "02_migrate.ipynb", as_version=4)
    return "\n".join(o.get("data", {}).get("text/plain", "") for c in nb.cells for o in c.get("outputs", []))


def _board_text(ev) -> str:
    nb = nbformat.read(ev / "notebooks" / "02_migrate.ipynb", as_version=4)
    return next(o["data"]["text/plain"] for c in nb.cells for o in c.get("outputs", [])
                if o.get("data", {}).get("text/plain", "").startswith("Migration"))
