"""Planning: which units (rows written together by one MemPalace writer call) exist, in which wing, room and
cluster, and when each was written.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..errors import PalacePgError
from .spec import (
    EPOCH,
    KIND_BUDGETS,
    MIN_DRAWERS,
    PALACE_SPAN_DAYS,
    TRICKY_ROWS,
    WING_NAMES,
    WING_SHARES,
    WINGS,
    apportion,
    split_sizes,
)
from .vocab import (
    AGENTS,
    CODE_EXTS,
    CONVO_ROOMS,
    DIARY_AGENTS,
    DOC_EXTS,
    PROJECT_ROOMS,
    TOPIC_VERBS,
    WING_VOCAB,
)


@dataclass
class Unit:
    """Rows written together by one MemPalace writer call (a mined file, a transcript, a diary entry, …)."""

    index: int
    kind: str
    size: int
    wing: str | None = None
    room: str | None = None
    cluster: int = 0
    source_file: str = ""
    entities: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    agent: str = "mempalace"
    start: datetime = EPOCH
    legacy: bool = False  # pre-Tier-6a project file: no line numbers, no content_date
    tricky: str | None = None
    extra: dict = field(default_factory=dict)

    def drawer_ids(self) -> list[str]:
        """Project-miner ids (they do not depend on the text, so closets can be planned up front)."""
        from mempalace.ids import make_drawer_id_from_chunk

        return [make_drawer_id_from_chunk(self.wing, self.room, self.source_file, i) for i in range(self.size)]


@dataclass
class Cluster:
    wing: str
    room: str
    keywords: tuple[str, ...]


def _wing_rooms(wing_index: int) -> tuple[str, ...]:
    count = 3 + wing_index % 3
    return tuple(PROJECT_ROOMS[(wing_index * 3 + k) % len(PROJECT_ROOMS)] for k in range(count))


def plan_clusters(drawers: int, rng: random.Random) -> list[Cluster]:
    """Clusters per wing in proportion to its share; each cluster has a room and keywords."""
    total = min(400, max(len(WINGS), drawers // 400))
    per_wing = [max(1, n) for n in apportion(total, WING_SHARES)]
    clusters = []
    for wing_index, (wing, count) in enumerate(zip(WING_NAMES, per_wing)):
        rooms = _wing_rooms(wing_index)
        for k in range(count):
            keywords = tuple(rng.sample(WING_VOCAB[wing], 5))
            clusters.append(Cluster(wing=wing, room=rooms[k % len(rooms)], keywords=keywords))
    return clusters


def _kind_row_counts(drawers: int) -> dict[str, int]:
    """Rows per non-project kind; project-miner chunks take the rest."""
    counts = {kind: max(minimum, round(drawers * share)) for kind, share, minimum, _ in KIND_BUDGETS}
    if drawers - sum(counts.values()) - len(TRICKY_ROWS) < 10:
        raise PalacePgError(f"{drawers} drawers leave too few project chunks", f"ask for at least {MIN_DRAWERS}")
    return counts


class _WingScheduler:
    """Hands units to wings so that every wing ends near its share of the drawers that carry a wing."""

    def __init__(self, rows_with_wing: int) -> None:
        self.targets = [max(1, n) for n in apportion(rows_with_wing, WING_SHARES)]
        self.assigned = [0] * len(WINGS)

    def take(self, size: int) -> int:
        total_after = sum(self.assigned) + size
        fits = [i for i in range(len(WINGS)) if self.targets[i] - self.assigned[i] >= size]
        candidates = fits or [max(range(len(WINGS)), key=lambda i: (self.targets[i] - self.assigned[i], -i))]
        best = max(candidates, key=lambda i: (WING_SHARES[i] * total_after - self.assigned[i], -i))
        self.assigned[best] += size
        return best

    def remaining(self, wing_index: int) -> int:
        return max(0, self.targets[wing_index] - self.assigned[wing_index])


def plan_units(
    drawers: int, rng: random.Random, clusters: list[Cluster], wing_entities: dict[str, list[str]]
) -> list[Unit]:
    counts = _kind_row_counts(drawers)
    scheduler = _WingScheduler(drawers - counts["sweep"])
    clusters_by_wing: dict[str, list[int]] = defaultdict(list)
    for index, cluster in enumerate(clusters):
        clusters_by_wing[cluster.wing].append(index)

    units: list[Unit] = []

    def add_unit(kind: str, size: int, wing_index: int | None, **attrs: Any) -> Unit:
        wing = WING_NAMES[wing_index] if wing_index is not None else rng.choice(WING_NAMES)
        cluster = rng.choice(clusters_by_wing[wing])
        unit = Unit(index=len(units), kind=kind, size=size, cluster=cluster, **attrs)
        unit.wing = wing if wing_index is not None else None
        pool = wing_entities[wing]
        unit.entities = tuple(rng.sample(pool, min(len(pool), rng.choice((0, 1, 2, 2, 3)))))
        keywords = clusters[cluster].keywords
        unit.topics = tuple(
            f"{rng.choice(TOPIC_VERBS)} {rng.choice(keywords)} {rng.choice(keywords)} for {wing.split('_')[0]}"
            for _ in range(rng.randint(1, 8))
        )
        units.append(unit)
        return unit

    for name in TRICKY_ROWS:
        add_unit("tricky", 1, scheduler.take(1), tricky=name)
    for kind, _, _, (low, high) in KIND_BUDGETS:
        for size in split_sizes(counts[kind], low, high, rng):
            add_unit(kind, size, None if kind == "sweep" else scheduler.take(size))
    for wing_index in range(len(WINGS)):
        budget = scheduler.remaining(wing_index)
        for size in split_sizes(budget, 1, 8, rng):
            unit = add_unit("project_chunk", size, wing_index)
            unit.legacy = rng.random() < 0.12
    _fit_project_rows(units, drawers, rng)
    for unit in units:
        _place_unit(unit, clusters, rng)
    _assign_timeline(units, rng)
    return units


def _fit_project_rows(units: list[Unit], drawers: int, rng: random.Random) -> None:
    """Make the total exactly ``drawers``: the wing targets round, so grow or trim project files."""
    total = sum(u.size for u in units)
    project = [u for u in units if u.kind == "project_chunk"]
    while total < drawers:
        unit = rng.choice(project)
        unit.size += 1
        total += 1
    while total > drawers:
        unit = max(project, key=lambda u: (u.size, -u.index))
        if unit.size == 1:
            raise PalacePgError(f"cannot fit {drawers} drawers", f"ask for at least {MIN_DRAWERS}")
        unit.size -= 1
        total -= 1


def _place_unit(unit: Unit, clusters: list[Cluster], rng: random.Random) -> None:
    """Room, source file and agent, as each writer sets them."""
    n = unit.index
    wing = unit.wing or clusters[unit.cluster].wing
    kind = unit.kind
    unit.agent = rng.choice(AGENTS)
    if kind == "project_chunk":
        unit.room = clusters[unit.cluster].room
        stem = clusters[unit.cluster].keywords[0]
        unit.source_file = f"/home/dev/code/{wing}/{unit.room}/{stem}_{n:06d}.{rng.choice(CODE_EXTS)}"
        unit.extra["content_days_before"] = rng.randint(0, 40)  # content_date, shared by drawers and closets
    elif kind == "format_sentinel":
        unit.room = "documents"
        unit.source_file = f"/home/dev/documents/{wing}/scan_{n:06d}.{rng.choice(DOC_EXTS)}"
    elif kind in ("convo_exchange", "convo_general", "registry_sentinel"):
        unit.room = "_registry" if kind == "registry_sentinel" else rng.choice(CONVO_ROOMS)
        unit.source_file = f"/home/dev/chats/{wing}/session_{n:06d}.{rng.choice(('jsonl', 'md', 'txt'))}"
        if kind == "registry_sentinel":  # a zero-chunk transcript, mined in either mode
            unit.extra["extract_mode"] = rng.choice(("exchange", "exchange", "general"))
    elif kind in ("live_exchange", "tricky"):
        unit.room = rng.choice(CONVO_ROOMS)
        unit.source_file = f"/home/dev/.hermes/sessions/{wing}/live_{n:06d}.jsonl"
    elif kind in ("mcp_drawer", "mcp_chunked"):
        unit.room = "notes"
        unit.agent = rng.choice(("mcp", "mcp", "claude"))
        if rng.random() < 0.4:
            unit.source_file = f"/home/dev/notes/{wing}/note_{n:06d}.md"
    elif kind in ("diary", "diary_chunked"):
        unit.room = "diary"
        unit.agent = rng.choice(DIARY_AGENTS)
        unit.extra["topic"] = rng.choice(clusters[unit.cluster].keywords)
    elif kind == "sweep":
        session = uuid(rng)
        unit.extra["session_id"] = session
        unit.source_file = f"/home/dev/.claude/projects/-home-dev-code-{wing}/{session}.jsonl"
    if unit.tricky == "long_document":  # a legacy oversized add_drawer row, from before #1539 chunking
        unit.room, unit.source_file, unit.agent = "notes", "", "mcp"
    if unit.tricky == "empty_strings":
        unit.entities = ()


def uuid(rng: random.Random) -> str:
    value = f"{rng.getrandbits(128):032x}"
    return f"{value[:8]}-{value[8:12]}-4{value[13:16]}-a{value[17:20]}-{value[20:32]}"


def _assign_timeline(units: list[Unit], rng: random.Random) -> None:
    """Shuffle the write order (wings and kinds interleave, as in real use) and stamp start times."""
    rng.shuffle(units)
    mean_gap = PALACE_SPAN_DAYS * 86_400 / max(1, len(units))
    moment = EPOCH
    for unit in units:
        moment += timedelta(seconds=rng.expovariate(1 / mean_gap), microseconds=rng.randint(1, 999_999))
        unit.start = moment


