"""Test palaces: the generator's, copied per test so a test may damage its own."""

from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path

import pytest

_CACHE = Path("/tmp/palace_pg-test-palaces")


@lru_cache(maxsize=None)
def generated(drawers: int, seed: int) -> Path:
    """A generated palace (made once per session and size), inside its own parent folder."""
    from palace_pg.source.generate import make_palace

    root = _CACHE / f"d{drawers}-s{seed}"
    palace = root / "palace"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    make_palace(palace, drawers=drawers, seed=seed)
    return palace


def copy_of(palace: Path, dest_parent: Path) -> Path:
    """A private copy (with hallways/tunnels beside it) that a test may change."""
    dest_parent.mkdir(parents=True, exist_ok=True)
    for sibling in palace.parent.iterdir():
        target = dest_parent / sibling.name
        if sibling.is_dir():
            shutil.copytree(sibling, target)
        else:
            shutil.copy2(sibling, target)
    return dest_parent / palace.name


@pytest.fixture
def small_palace(tmp_path) -> Path:
    return copy_of(generated(300, 7), tmp_path / "src")
