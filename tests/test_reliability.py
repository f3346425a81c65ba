"""Reliability and secrets: kill-and-resume (a few points in CI), and no password in any error."""

from __future__ import annotations

import os
import subprocess
import time
import sys
from pathlib import Path

import pytest

from palace_pg.dsn import connect, redact, scrub
from palace_pg.errors import TargetUnreachable

ROOT = Path(__file__).resolve().parents[1]
CANARY = "Canary-7f3e-pw"


def test_kill_and_resume_at_random_points_ends_identical(pg_server, tmp_path):
    """SIGKILL at named crash points and random instants, resume, compare fingerprints; plus an
    immediate server stop mid-batch and an INVALID HNSW index rebuilt.  CI runs a few points;
    `python benchmarks/kill_resume.py --points N` runs more."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "kill_resume.py"), "--points", "3",
                           "--drawers", "400", "--batch-size", "60", "--seed", "3"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "3/3 identical" in proc.stdout
    assert '"source_hash_unchanged": true' in proc.stdout
    assert '"immediate_stop_mid_batch": "identical"' in proc.stdout
    assert '"after_rebuild": "identical"' in proc.stdout


@pytest.mark.parametrize("dsn", [
    f"postgresql://postgres:{CANARY}@127.0.0.1:1/palace",
    f"host=127.0.0.1 port=1 user=postgres password={CANARY} dbname=palace",
    f"postgresql://postgres@127.0.0.1:1/palace?password={CANARY}",
    f"host=127.0.0.1 port=1 password='{CANARY}' dbname=palace broken='",
])
def test_a_password_never_reaches_an_error_message(dsn):
    with pytest.raises(TargetUnreachable) as err:
        connect(dsn)
    text = str(err.value) + repr(err.value) + str(err.value.__cause__) + str(err.value.__context__)
    assert CANARY not in text
    assert CANARY not in redact(dsn)


def test_scrub_removes_passwords_from_free_text():
    assert CANARY not in scrub(f"failed: password={CANARY} host=x")
    assert CANARY not in scrub(f"postgresql://u:{CANARY}@h/db")


def test_cli_errors_and_logs_carry_no_password(tmp_path):
    env = {**os.environ, "PALACE_PG_DSN": f"postgresql://postgres:{CANARY}@127.0.0.1:1/palace"}
    proc = subprocess.run([sys.executable, "-m", "palace_pg.cli", "-vv", "status"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode != 0
    assert CANARY not in proc.stdout + proc.stderr
    assert "cannot connect" in proc.stderr


def test_a_live_writer_on_the_source_is_detected(tmp_path, fresh_db):
    import threading

    from palace_pg import engine
    from palace_pg.errors import SourceChanged
    from palace_pg.testing.chroma import copy_of
    from palaces import generated

    palace = copy_of(generated(300, 7), tmp_path / "src")
    stop = threading.Event()

    def writer():  # a MemPalace process rewriting a file while the migrator reads
        n = 0
        while not stop.is_set():
            n += 1
            (palace / ".mempalace" / "origin.json").write_text(f'{{"n": {n}}}')
            time.sleep(0.001)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with pytest.raises(SourceChanged) as err:
            engine.preflight(palace, fresh_db, work_dir=tmp_path / "w")
    finally:
        stop.set()
        thread.join()
    assert "live writer" in err.value.problem or "vanished" in err.value.problem
    assert err.value.fix


def test_preflight_warns_when_the_target_is_not_durable(tmp_path, fresh_db):
    import psycopg

    from palace_pg import engine
    from palace_pg.testing.chroma import copy_of
    from palaces import generated

    palace = copy_of(generated(300, 7), tmp_path / "src")
    report = engine.preflight(palace, fresh_db, work_dir=tmp_path / "w")
    durability = next(c for c in report.checks if c.name == "durability")
    with psycopg.connect(fresh_db) as conn:
        fsync = conn.execute("SHOW fsync").fetchone()[0]
    assert durability.status == ("ok" if fsync == "on" else "warn")
    if fsync == "off":
        assert "fsync" in durability.detail and durability.fix
