"""benchmarks/reliability_report.py at a tiny size: every README figure is printed, and perfect."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_reliability_report_at_a_tiny_size(pg_server):
    # the immediate server stop and the runbooks are covered by test_reliability / test_runbooks
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "reliability_report.py"), "--points", "1",
                           "--drawers", "300", "--batch-size", "60", "--seed", "3", "--no-extras", "--no-runbooks"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for figure in ("kill points survived", "rows compared by hash", "source palace hash unchanged",
                   "canary password leaks", "injection strings round-tripped", "fidelity cases"):
        assert any(line.startswith(figure) for line in lines), figure
    figures = json.loads(lines[-1])
    assert figures["identical"] == figures["kill_points"] == 1
    assert figures["mismatches"] == 0 and figures["rows_compared"] > 300
    assert figures["source_runs_unchanged"] == figures["source_runs"] > figures["source_runs_killed"]
    assert figures["canary_leaks"] == 0 and figures["canary_artifacts"] > 20
    assert figures["canary_raw_libpq_echoes"] != f"0/{figures['canary_raw_libpq_echoes'].split('/')[1]}", \
        "the control: libpq itself echoes the canary for some bad DSNs, so the scan can see it"
    inj = figures["injection"]
    assert inj["migration_round_tripped"] == inj["api_round_tripped"] == inj["strings"] >= 20
    assert figures["fidelity_ok"] == figures["fidelity_cases"] >= 15
