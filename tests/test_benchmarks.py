"""benchmarks/run_all.py: the merge into the targets table (fast), and the whole --quick run (slow).

``run_all.py --quick`` takes ~1.5-2 minutes on the 2-core machine (the migration
benchmark generates a palace with a 20K/100K KG and migrates it; the search
benchmark builds HNSW and Chroma), so the end-to-end run is marked ``slow``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load_run_all():
    spec = importlib.util.spec_from_file_location("run_all", ROOT / "benchmarks" / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_all = _load_run_all()


def _fig(median, lo=None, hi=None, runs=3):
    return {"median": median, "min": median if lo is None else lo, "max": median if hi is None else hi, "runs": runs}


MIGRATE = {
    "rows": 160_000,
    "facts": {"vectors": "synthetic-clustered"},
    "palace_pg": {"total_seconds": _fig(60.0, 58.0, 63.0), "peak_rss_mb": _fig(900, 880, 950),
                  "rows_per_second": 2667},
    "builtin_pgvector_copy": {"total_seconds": _fig(600.0, runs=1)},
    "speedup_vs_builtin": 10.0,
}
SEARCH = {  # the shape bench_search.py writes today
    "postgres": {
        "unfiltered": {"p50_ms": 1.2, "rounds_p50_ms": [1.1, 1.2, 1.4], "recall_at_k": 0.995},
        "wing 1%": {"p50_ms": 3.0, "rounds_p50_ms": [2.9, 3.0, 3.1], "recall_at_k": 1.0},
        "wing 11%": {"p50_ms": 12.0, "rounds_p50_ms": [11.0, 12.0, 13.0], "recall_at_k": 1.0},
        "unfiltered ef=100": {"p50_ms": 2.0, "rounds_p50_ms": [2.0], "recall_at_k": 0.999},
        "unfiltered ef=40": {"p50_ms": 0.8, "rounds_p50_ms": [0.8], "recall_at_k": 0.97},
    },
    "chroma": {"unfiltered": {"p50_ms": 2.0, "recall_at_k": 0.98}},
}
KG_RUN = {"entities": 20_000, "triples": 100_000,
          "age": {"query_entity": {"outgoing": {"p50_ms": 0.4}}, "synchronous_commit": "on",
                  "add_triple_per_s": {"median": 600.0}, "timeline": {"p50_ms": 0.6}, "load_seconds": 9.0},
          "sqlite": {"query_entity_outgoing_p50_ms": 0.03, "add_triple_per_s": 900.0}}


def _by_figure(rows):
    return {r["figure"]: r for r in rows}


def test_targets_table_from_results():
    rows = run_all.migrate_rows(MIGRATE) + run_all.search_rows(SEARCH) + \
        run_all.kg_rows([KG_RUN, KG_RUN | {"age": KG_RUN["age"] | {"add_triple_per_s": {"median": 400.0}}}])
    by = _by_figure(rows)
    assert by["Migration, total (160,000 rows)"]["met"] is True
    assert by["Migration, total (160,000 rows)"]["measured"] == "60.0 s (58.0–63.0, 3 runs)"
    assert by["Migration vs built-in pgvector copy"]["met"] is True
    assert by["Migrator peak RSS"]["met"] is True
    assert by["Search top-10, unfiltered (palace_pg backend)"]["met"] is True
    assert "1.20 ms (1.10–1.40, 3 runs)" in by["Search top-10, unfiltered (palace_pg backend)"]["measured"]
    assert by["Search top-10, filtered, 11% wing (palace_pg backend)"]["met"] is False
    assert by["Search top-10, unfiltered (Chroma)"]["met"] is None
    sweep = [r["figure"] for r in rows if "ef=" in r["figure"]]
    assert sweep == ["Search top-10, unfiltered, ef=40 (palace_pg backend)",
                     "Search top-10, unfiltered, ef=100 (palace_pg backend)"]
    assert by["KG query_entity 1-hop p50 (AGE, 20,000 entities, 100,000 triples)"]["met"] is True
    add = by["KG add_triple, durable (one commit each)"]
    assert add["value"] == {"median": 500.0, "min": 400.0, "max": 600.0, "runs": 2} and add["met"] is True
    md = run_all.table(rows)
    assert md.splitlines()[0] == "| figure | target | measured (median, min–max) | met? |"
    assert "| **no** |" in md


def test_missing_or_reshaped_results_read_as_na():
    """A failed sub-benchmark, or a bench_search JSON of another shape, gives n/a rows, not a crash."""
    rows = run_all.migrate_rows(None) + run_all.search_rows(None) + run_all.kg_rows([])
    assert rows and all(r["met"] is None for r in rows)
    assert {r["measured"] for r in rows if r["target"] != "—"} == {"n/a"}
    reshaped = {"palace_pg": {"unfiltered": {"p50_ms": 1.0, "recall_at_10": 0.999}, "wing 1%": "oops"},
                "builtin_pgvector": {"unfiltered": {"p50_ms": 9.0, "recall_at_10": 0.9}}}
    by = _by_figure(run_all.search_rows(reshaped))
    assert by["Search top-10, unfiltered (palace_pg backend)"]["met"] is True
    assert by["Search top-10, filtered, 1% wing (palace_pg backend)"]["measured"] == "n/a"
    assert "9.00 ms" in by["Search top-10, unfiltered (mempalace built-in pgvector)"]["measured"]


def test_cli_flags_reads_argparse():
    flags = run_all.cli_flags(ROOT / "benchmarks" / "bench_kg.py")
    assert {"--json", "--rounds", "--entities"} <= flags


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_run_all_quick_end_to_end(tmp_path, pg_server):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick",
                           "--results", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    out = tmp_path / "quick"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quick"] and not summary["failed"]
    assert {"migrate", "search", "kg"} <= set(summary["runs"])
    targets = [r for r in summary["table"] if r["target"] != "—"]
    assert len(targets) == 8 and all(r["measured"] != "n/a" for r in targets)
    md = (out / "summary.md").read_text()
    assert "Smoke run" in md and "| figure | target |" in md and "PostgreSQL 18" in md
    assert "| figure | target |" in proc.stdout
