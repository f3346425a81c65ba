"""Library temp folders go when their reader is done, on errors, and after a killed process (issue 19.8)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from palaces import small_palace  # noqa: F401  (fixture)

from palace_pg.errors import SourceError
from palace_pg.source.chroma_reader import TAIL_PREFIX, TailRead, sweep_orphaned_tails


def _drawer_ids(palace: Path, n: int) -> list[str]:
    import sqlite3

    with sqlite3.connect(f"file:{palace / 'chroma.sqlite3'}?mode=ro", uri=True) as db:
        return [r[0] for r in db.execute(
            "SELECT e.embedding_id FROM embeddings e JOIN segments s ON s.id = e.segment_id "
            "JOIN collections c ON c.id = s.collection WHERE c.name = 'mempalace_drawers' LIMIT ?", [n])]


def test_a_tail_read_leaves_no_folder_after_its_result_or_cancel(small_palace):
    ids = _drawer_ids(small_palace, 3)
    read = TailRead(small_palace, "mempalace_drawers", ids)
    assert read.folder.is_dir() and read.folder.name.startswith(f"{TAIL_PREFIX}{os.getpid()}-")
    assert set(read.result()) == set(ids)
    assert not read.folder.exists()
    cancelled = TailRead(small_palace, "mempalace_drawers", ids)
    cancelled.cancel()
    assert not cancelled.folder.exists()


def test_a_failed_tail_read_leaves_no_folder(tmp_path):
    read = TailRead(tmp_path / "no-palace-here", "mempalace_drawers", ["x"])
    with pytest.raises(SourceError):
        read.result()
    assert not read.folder.exists()


def test_the_folder_of_a_killed_process_is_swept_and_a_live_ones_is_kept():
    # a process that made its tail folder and was SIGKILLed before any cleanup could run
    script = ("import os, signal, tempfile; "
              f"print(tempfile.mkdtemp(prefix=f'{TAIL_PREFIX}{{os.getpid()}}-'), flush=True); "
              "os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert killed.returncode == -signal.SIGKILL
    orphan = Path(killed.stdout.strip())
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kept = Path(tempfile.mkdtemp(prefix=f"{TAIL_PREFIX}{live.pid}-"))
        assert orphan.is_dir()
        removed = sweep_orphaned_tails()
        assert orphan in removed and not orphan.exists()
        assert kept.is_dir()  # its owner still runs
    finally:
        live.kill()
        live.wait()
    assert kept in sweep_orphaned_tails() and not kept.exists()
