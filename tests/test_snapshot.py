"""The snapshot: a killed run's copy is cleaned up by the next run, a live run's copy is left alone."""

from __future__ import annotations

import os
import subprocess
import sys

from palace_pg.source.snapshot import take_snapshot
from palace_pg.testing.chroma import copy_of
from palaces import generated


def test_a_dead_runs_snapshot_is_removed_and_a_live_ones_kept(tmp_path):
    palace = copy_of(generated(300, 7), tmp_path / "src")
    work = tmp_path / "work"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = work / f"snapshot-{int(dead.stdout)}"
    live = work / f"snapshot-{os.getppid()}"
    for folder in (stale, live):
        (folder / "palace").mkdir(parents=True)
        (folder / "palace" / "chroma.sqlite3").write_bytes(b"x" * 1000)
    snap = take_snapshot(palace, work)
    try:
        assert not stale.exists()
        assert live.exists()
        assert (snap.palace / "chroma.sqlite3").is_file()
    finally:
        snap.remove()
