"""Fetch mempalace's sdist test suite (cached) and run parts of it against the AGE graph.

Nothing of mempalace is vendored: the sdist matching the installed mempalace is
``pip download``-ed once into a cache folder (``PALACE_PG_CACHE``, default
``~/.cache/palace_pg``); without a registry and without a cache the tests skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
from importlib.metadata import version
from pathlib import Path

import pytest

KG_SUITE = [
    "tests/test_knowledge_graph.py",
    "tests/test_knowledge_graph_extra.py",
    "tests/test_knowledge_graph_metadata.py",
    "tests/test_kg_future_successor_regressions.py",
    "tests/test_kg_normalize.py",
    "tests/test_kg_thread_safety.py",
    "tests/mcp/test_kg.py",
]


def cache_dir() -> Path:
    return Path(os.environ.get("PALACE_PG_CACHE", Path.home() / ".cache" / "palace_pg")) / "mempalace-sdist"


def mempalace_sdist_tests() -> Path:
    """The ``tests/`` folder of the installed mempalace's sdist; skip the test if it cannot be had."""
    ver = version("mempalace")
    root = cache_dir() / f"mempalace-{ver}"
    if not (root / "tests" / "conftest.py").is_file():
        cache_dir().mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
             f"mempalace=={ver}", "-d", str(cache_dir())],
            capture_output=True, text=True, timeout=300,
        )
        archive = cache_dir() / f"mempalace-{ver}.tar.gz"
        if proc.returncode != 0 or not archive.is_file():
            pytest.skip(f"mempalace {ver} sdist unavailable (no registry, no cache): {proc.stderr[-300:]}")
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(f"mempalace-{ver}/tests/")]
            tar.extractall(cache_dir(), members=members, filter="data")
    return root / "tests"


def prepare_run_dir(tmp: Path, tests: Path) -> Path:
    """A folder holding a copy of the upstream tests, run against the *installed* mempalace.

    (Running inside the sdist would import its source tree instead.)  The
    ``sitecustomize`` stands in for the ``.pth`` line palace_pg ships, so
    subprocesses that some tests start select AGE the way an installed
    palace_pg would, and find the database the parent assigned to their path.
    """
    run = tmp / "upstream"
    shutil.copytree(tests, run / "tests")
    (run / "pytest.ini").write_text(textwrap.dedent("""\
        [pytest]
        pythonpath = . tests
        addopts = -m "not benchmark and not slow and not stress"
        markers =
            benchmark: scale/performance benchmark tests
            slow: tests that take more than 30 seconds
            stress: destructive scale tests
        """))
    site = run / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""\
        import json, os
        import palace_pg.kg.autoload  # what the shipped .pth line does
        from palace_pg.kg import locate

        _original = locate.dsn_for_db_path

        def _assigned(db_path):
            with open(os.environ["PALACE_PG_KG_UPSTREAM_MAP"]) as fh:
                found = json.load(fh).get(os.path.realpath(db_path))
            return found or _original(db_path)

        locate.dsn_for_db_path = _assigned
        """))
    return run


_RESULT = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)\s+(\S+)", re.M)


def run_upstream(run: Path, admin_dsn: str, files: list[str], timeout: int = 1800,
                 store: str = "age") -> tuple[dict, str]:
    """Run ``files`` with the class-swap plugin on KG store ``store``; returns ({node id: outcome}, output)."""
    env = dict(os.environ)
    env.pop("PALACE_PG_DSN", None)
    env |= {
        "PALACE_PG_KG_UPSTREAM_DSN": admin_dsn,
        "PALACE_PG_KG_UPSTREAM_MAP": str(run / "dsn_map.json"),
        "MEMPALACE_KG_BACKEND": "age",
        "PALACE_PG_KG_UPSTREAM_STORE": store,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(run / "site"), env.get("PYTHONPATH")])),
    }
    (run / "dsn_map.json").write_text("{}")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "palace_pg.kg.pytest_upstream", "-p", "no:cacheprovider",
         "-q", "-rA", "--timeout=300", *files],
        cwd=run, env=env, capture_output=True, text=True, timeout=timeout,
    )
    out = proc.stdout + proc.stderr
    return {node: outcome for outcome, node in _RESULT.findall(out)}, out
