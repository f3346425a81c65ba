"""Test palaces: the generator's, made once per session and copied per test so a test may damage its own."""

from __future__ import annotations

import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import pytest

from palace_pg.testing.chroma import copy_of

# one folder per test process: concurrent runs never share (or delete) each other's palaces
_CACHE = Path(tempfile.mkdtemp(prefix="palace_pg-test-palaces-"))


def remove_cache() -> None:
    """At the session's end (conftest): the generated palaces go with the process that made them."""
    generated.cache_clear()
    shutil.rmtree(_CACHE, ignore_errors=True)


@lru_cache(maxsize=None)
def generated(drawers: int, seed: int) -> Path:
    """A generated palace (made once per session and size), inside its own parent folder."""
    from palace_pg.synth import make_palace

    root = _CACHE / f"d{drawers}-s{seed}"
    palace = root / "palace"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    make_palace(palace, drawers=drawers, seed=seed)
    return palace


@pytest.fixture
def small_palace(tmp_path) -> Path:
    return copy_of(generated(300, 7), tmp_path / "src")
