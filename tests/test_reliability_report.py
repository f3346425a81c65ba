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
                           "--drawers", "300", "--batch-size", "60", "--seed", "3", "--no-extras", "--no-runbooks",
                           "--sync-batch-size", "50", "--load-seconds", "6", "--load-workers", "1", "--load-drawers", "300"],
                          capture_output=True, text=True, timeout=1800, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    for figure in ("kill points survived", "rows compared by hash", "source palace hash unchanged",
                   "canary password leaks", "injection strings round-tripped", "fidelity cases",
                   "local users other than the owner in", "backup → restore differences",
                   "crash window (schema → palace_id)", "sync kill points survived", "MemPalace under load"):
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
    # issue 15's figures
    outside = figures["outsiders"]
    assert not outside["checked"] or (outside["users_in"] == 0 and outside["doors"] == 4)
    trip = figures["backup_round_trip"]
    assert trip["differing_tables"] == [] and trip["tables"] > 5 and trip["verify_differences"] == 0
    window = figures["crash_window"]
    assert window["ok"] and window["left_after_kill"] == [[], None] and window["palace_id_after_rerun"]
    syncs = figures["sync_kills"]
    assert syncs["sync_identical"] == syncs["sync_kill_points"] >= 3 and not syncs["sync_rerun_wrote"]
    assert syncs["sync_source_runs_unchanged"] == syncs["sync_source_runs"]
    load = figures["load"]
    assert load["ok"] and load["lost"] == 0 and load["errors_outside_window"] == {} and load["acknowledged_writes"] > 0
    assert pg_server.running()  # the load run's immediate stop is followed by a start
