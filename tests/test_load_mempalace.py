"""benchmarks/load_mempalace.py, short: MemPalace's API from 2 writer + 2 reader processes, one immediate stop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_no_acknowledged_write_is_lost_across_an_immediate_stop(pg_server):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "load_mempalace.py"), "--writers", "2",
                           "--readers", "2", "--seconds", "8", "--drawers", "300"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    figures = json.loads(proc.stdout.splitlines()[-1])
    assert figures["restart"] and figures["workers_crashed"] == 0
    assert figures["acknowledged_writes"] > 100 and figures["lost"] == 0 and figures["duplicated"] == 0
    assert figures["count_match"] and figures["errors_outside_window"] == {}
    assert set(figures["by_op"]) == {"add", "upsert", "delete", "kg_add", "kg_invalidate", "query", "get",
                                     "kg_query"}
    assert pg_server.running()  # the server the suite uses is back
