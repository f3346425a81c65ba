"""Closets (the index layer): pointer lines per mined file, packed and numbered by MemPalace's own
``upsert_closet_lines``.
"""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path
from typing import Any

from .spec import iso, sha, sub_seed
from .text import unit_content_date
from .units import Unit


class _ClosetCapture:
    """Stands in for the closets collection so MemPalace's ``upsert_closet_lines`` packs and numbers closets."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, dict]] = []

    def upsert(self, *, documents, ids, metadatas) -> None:
        self.rows.extend(zip(ids, documents, (dict(m) for m in metadatas)))


def _closet_lines(unit: Unit, drawer_ids: list[str], rng: random.Random) -> list[str]:
    """Pointer lines as ``build_closet_lines`` writes them: ``topic|entities|[date:Lx-Ly|]→id1,id2,id3``."""
    refs = ",".join(drawer_ids[:3])
    entity_str = ";".join(unit.entities[:5])
    date_segment = None
    if not unit.legacy:
        # Tier 6a locator: the first drawer's content date and line span (approximate, as upstream says).
        date_segment = f"{unit_content_date(unit)}:L1-L{rng.randint(4, 40)}"

    def pointer(prefix: str) -> str:
        return f"{prefix}|{entity_str}|{date_segment}|→{refs}" if date_segment else f"{prefix}|{entity_str}|→{refs}"

    lines = [pointer(topic.lower()) for topic in unit.topics]
    if rng.random() < 0.15:
        lines.append(pointer(f'"{unit.topics[0]} and then we shipped it"'))
    if not lines:
        lines.append(pointer(f"{unit.wing}/{unit.room}/{Path(unit.source_file).stem[:40]}"))
    return lines


def plan_closets(units: list[Unit], seed: int) -> list[tuple[str, str, dict, int]]:
    from mempalace.palace import NORMALIZE_VERSION, upsert_closet_lines

    closets = []
    for unit in units:
        if unit.kind != "project_chunk":
            continue
        rng = random.Random(sub_seed(seed, "closet", unit.index))
        capture = _ClosetCapture()
        meta: dict[str, Any] = {
            "wing": unit.wing,
            "room": unit.room,
            "source_file": unit.source_file,
            "drawer_count": unit.size,
            "filed_at": iso(unit.start + timedelta(milliseconds=250)),
            "normalize_version": NORMALIZE_VERSION,
        }
        if unit.entities:
            meta["entities"] = ";".join(unit.entities)
        base = f"closet_{unit.wing}_{unit.room}_{sha(unit.source_file, 24)}"
        upsert_closet_lines(capture, base, _closet_lines(unit, unit.drawer_ids(), rng), meta)
        closets.extend((cid, doc, m, unit.index) for cid, doc, m in capture.rows)
    return closets


