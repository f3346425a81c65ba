"""What `migrate` and `verify` print on stderr: one closed line per phase, no escapes off a terminal."""

from __future__ import annotations

import io
import re

from palace_pg.cli import main
from palace_pg.cli.progress import PhaseLines
from palace_pg.engine import PHASE_NAMES
from palace_pg.phases.base import ProgressEvent
from palace_pg.testing.chroma import copy_of
from palaces import generated

ESCAPES = re.compile(r"[\x1b\r]")


def _phase_lines(err: str) -> dict[str, str]:
    return {line.split()[0]: line for line in err.splitlines() if line.strip()}


def test_migrate_and_verify_print_one_closed_plain_line_per_phase_when_stderr_is_a_file(tmp_path, fresh_db, capsys):
    palace = copy_of(generated(300, 7), tmp_path / "src")
    work = str(tmp_path / "w")
    assert main(["migrate", "--palace", str(palace), "--dsn", fresh_db, "--work-dir", work]) == 0
    err = capsys.readouterr().err
    assert not ESCAPES.search(err), repr(err[:300])
    lines = _phase_lines(err)
    assert list(lines) == ["snapshot", *PHASE_NAMES], err  # in order, each once
    assert all(line.split()[1] == "done" for line in lines.values()), err
    assert re.search(r"^drawers +done +300/300 rows +in [\d.]+ s +\([\d,]+ rows/s\)", lines["drawers"], re.M)
    assert re.search(r"indexes +done +(\d+)/\1 indexes", lines["indexes"]) and "rows/s" not in lines["indexes"]
    assert " MB" in lines["snapshot"] or " KB" in lines["snapshot"]
    assert "mempalace_closets" in lines["collections"] and "mempalace_assets" in lines["collections"]

    assert main(["verify", "--palace", str(palace), "--dsn", fresh_db, "--work-dir", work]) == 0
    err = capsys.readouterr().err
    assert not ESCAPES.search(err)
    lines = _phase_lines(err)
    assert list(lines) == ["snapshot", "verify"] and lines["verify"].split()[1] == "done"
    assert all(name in lines["verify"] for name in ("mempalace_drawers", "mempalace_closets", "mempalace_assets"))


def _events():
    yield ProgressEvent("indexes", "", 0, 1, "Build the indexes")
    yield ProgressEvent("indexes", "cluster:drawers", 0, 1, "ordering drawers by wing and room")
    for n, name in enumerate(["a_hnsw", "a_gin", "b_hnsw"]):
        yield ProgressEvent("indexes", name, n, 3, f"building {name}")
    yield ProgressEvent("indexes", "", 3, 3)
    yield ProgressEvent("indexes", "", 1, 1, "done")
    yield ProgressEvent("verify", "mempalace_drawers", 0, 100, "comparing")
    yield ProgressEvent("verify", "mempalace_drawers", 50, 100)


def test_on_a_terminal_each_phase_line_is_redrawn_in_place_and_ended_once():
    out = io.StringIO()
    try:
        with PhaseLines(out, terminal=True, redraw=0) as progress:
            for event in _events():
                progress(event)
            raise KeyboardInterrupt  # the open verify line is ended as FAILED
    except KeyboardInterrupt:
        pass
    text = out.getvalue()
    assert "building a_gin" in text  # each index is named while it builds
    finished = [seg.split("\r")[-1].replace("\x1b[K", "") for seg in text.split("\n")[:-1]]
    assert [f.split()[:2] for f in finished] == [["indexes", "done"], ["verify", "FAILED"]]
    assert "3/3 indexes" in finished[0] and "50/100 rows" in finished[1]
    assert text.endswith("\n")  # nothing left open for the next output to land on
