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


def test_a_settled_file_keeps_its_hash_and_any_write_or_recent_change_is_hashed_again(tmp_path):
    import time

    from palace_pg.source import snapshot

    palace = tmp_path / "palace"
    palace.mkdir()
    (palace / "chroma.sqlite3").write_bytes(b"a" * 1000)
    (palace / "fresh.bin").write_bytes(b"x")
    old = time.time() - 60
    os.utime(palace / "chroma.sqlite3", (old, old))
    # ctime cannot be set back: pretend the clock moved on instead
    real = time.time_ns
    time.time_ns = lambda: real() + int(10 * snapshot.RACY_SECONDS * 1e9)
    try:
        settled = snapshot.settled_files(palace)
    finally:
        time.time_ns = real
    (palace / "fresh.bin").write_bytes(b"y")  # changed after the status was taken
    known = {"palace/chroma.sqlite3": "not-the-real-hash", "palace/fresh.bin": "stale"}
    hashes = snapshot.hash_palace(palace, settled=settled, known=known)
    assert hashes["palace/chroma.sqlite3"] == "not-the-real-hash"  # unchanged status: the known hash stands
    assert hashes["palace/fresh.bin"] == snapshot.hash_palace(palace)["palace/fresh.bin"] != "stale"
    with open(palace / "chroma.sqlite3", "r+b") as f:  # a write, even one that keeps size and mtime
        f.write(b"b")
    os.utime(palace / "chroma.sqlite3", (old, old))
    assert snapshot.hash_palace(palace, settled=settled, known=known)["palace/chroma.sqlite3"] != "not-the-real-hash"


def test_a_file_changed_within_the_racy_window_is_never_settled(tmp_path):
    from palace_pg.source import snapshot

    palace = tmp_path / "palace"
    palace.mkdir()
    (palace / "chroma.sqlite3").write_bytes(b"a")
    assert snapshot.settled_files(palace) == {}
