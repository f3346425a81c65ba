"""Generate a synthetic palace in MemPalace 3.11's exact on-disk format, deterministically.

``make_palace(out, drawers=200, seed=0)`` writes a palace that MemPalace itself
opens (``mempalace --palace out status``, ``KnowledgeGraph(...).stats()``):

* in ``out``: ``chroma.sqlite3`` and the HNSW segment folders, holding
  ``mempalace_drawers`` and ``mempalace_closets`` (384-d, embedding function
  "default" as MemPalace records it) and ``mempalace_assets`` (768-d,
  EmbeddingGemma 2), all created through :mod:`mempalace.backends.chroma` with
  MemPalace's collection metadata; ``knowledge_graph.sqlite3`` with its
  ``-wal``/``-shm``, created by :class:`mempalace.knowledge_graph.KnowledgeGraph`;
  ``mempalace_embedder.json`` and ``.mempalace/origin.json``;
* **beside** ``out``, in ``dirname(out)``: ``hallways.json`` and ``tunnels.json``
  (MemPalace keeps them next to the palace so that they survive a rebuild).
  Generate into a dedicated folder, e.g. ``make_palace(workdir / "palace")``:
  two palaces in one parent would share those two files, so the generator
  refuses a parent that already holds either.

Every writer kind of research/mempalace.md §1.5-1.6 is present with its exact
id recipe (:mod:`mempalace.ids` where a helper exists) and metadata keys:
project-miner and convo-miner chunks, live exchanges, ``_registry`` and
format-miner sentinels, MCP drawers (single and chunked with
``parent_drawer_id``), diary entries (single and chunked, no ``source_file``),
sweeper rows (no wing/room/chunk_index), closets of pointer lines packed by
MemPalace's own ``upsert_closet_lines``, and media assets built with
:class:`mempalace.media.MediaAsset`.  A handful of deliberately tricky but
valid rows (see :data:`TRICKY_ROWS`) exercise fidelity corners.

Determinism: one seed gives the same ids, documents, metadata, vectors, KG rows
and JSON sidecars (timestamps come from a seeded clock, never from the wall
clock).  Only the chroma sqlite bytes and HNSW files may differ between runs.

Vectors: 384-d float32, L2-normalised, clustered in a 48-d latent space so
that wings (shares 30% … 1%, :data:`WINGS`) correlate with clusters; or, with
``vectors="minilm"`` and the ONNX model already in chromadb's cache, real
MiniLM embeddings of the generated text.  Every vector is nudged to a fixed
point of float32 renormalisation, so Chroma stores it bit for bit (Chroma
renormalises cosine vectors; an ordinary unit vector comes back changed in its
last bit about a quarter of the time).

Speed: rows go in through chromadb ``add`` with precomputed embeddings in
batches of at most ``client.get_max_batch_size()``.  Chroma's own indexing
(FTS5 trigram on documents, one inverted index per metadata key, HNSW) is the
floor, and it holds the GIL, so nothing overlaps it.  On disk its rollback
journal adds as much again in I/O waits, so the palace is built on tmpfs
(``/dev/shm``) when there is room and then copied into place: 160K drawers take
~3.5 minutes that way (~900 rows/s for drawers with MemPalace's ~17 metadata
keys and 800-character documents) against ~7 minutes built on this disk.  The
bulk of the KG goes in with ``executemany`` into the schema ``KnowledgeGraph``
created; a representative part (a few hundred calls) goes through the class.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import shutil
import sqlite3
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from itertools import combinations
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import PalacePgError

logger = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]

# ── What the palace contains ────────────────────────────────────────────────

DRAWERS = "mempalace_drawers"
CLOSETS = "mempalace_closets"
ASSETS = "mempalace_assets"
KG_FILENAME = "knowledge_graph.sqlite3"

TEXT_DIMENSION = 384
ASSET_DIMENSION = 768
MIN_DRAWERS = 50
MAX_KG_ENTITIES = 20_000
MAX_KG_TRIPLES = 100_000
DEFAULT_LONG_DOC_CHARS = 100_000
#: ``vectors="auto"`` embeds with MiniLM only up to this size: MemPalace's MiniLM
#: (thread-capped ONNX, 256-token padding) embeds ~7 documents/s on 2 cores
#: (measured: 300 drawers and their 60 closets in 50 s), so 1,000 drawers take
#: about 3 minutes and a large palace far too long.
AUTO_MINILM_MAX_DRAWERS = 1_000
VECTOR_MODES = ("auto", "minilm", "synthetic")

#: Ten wings and their share of the drawers that carry a wing (percent).
WINGS: tuple[tuple[str, int], ...] = (
    ("atlas_api", 30),
    ("borealis_web", 20),
    ("cinder_ml", 14),
    ("delta_infra", 11),
    ("ember_mobile", 8),
    ("fjord_data", 6),
    ("garnet_docs", 4),
    ("harbor_ops", 3),
    ("iris_research", 3),
    ("juniper_notes", 1),
)
WING_NAMES = tuple(name for name, _ in WINGS)
WING_SHARES = tuple(share / 100 for _, share in WINGS)

#: Row kinds other than project-miner chunks: (kind, share of drawers, minimum rows, rows per unit).
#: A "unit" is what one write produces together: a transcript, an MCP drawer split into chunks, …
KIND_BUDGETS: tuple[tuple[str, float, int, tuple[int, int]], ...] = (
    ("convo_exchange", 0.10, 2, (2, 12)),
    ("convo_general", 0.04, 2, (1, 6)),
    ("live_exchange", 0.01, 1, (1, 1)),
    ("registry_sentinel", 0.005, 1, (1, 1)),
    ("format_sentinel", 0.005, 1, (1, 1)),
    ("mcp_drawer", 0.02, 1, (1, 1)),
    ("mcp_chunked", 0.015, 2, (2, 4)),
    ("diary", 0.015, 1, (1, 1)),
    ("diary_chunked", 0.01, 2, (2, 3)),
    ("sweep", 0.03, 2, (2, 20)),
)

#: The fidelity corner cases, one drawer each (name → what it holds).
TRICKY_ROWS: dict[str, str] = {
    "priority_int": "metadata priority=1 (int)",
    "priority_float": "metadata priority=1.0 (float)",
    "priority_bool": "metadata priority=True (bool)",
    "int64_max": "metadata counter=2**63-1",
    "int64_min": "metadata counter=-(2**63), counter_neg=-(2**63-1)",
    "empty_strings": "metadata note='' and entities='', source_file=''",
    "unicode": "emoji, U+2028 and U+2029 in document and metadata",
    "odd_key": "a metadata key containing double quotes and $$",
    "float_extremes": "metadata 5e-324, -5e-324 and the largest float64",
    "long_document": "a legacy single-row MCP drawer of long_doc_chars characters",
    "vector_probe": "a vector with float32 subnormal, -0.0 and +0.0 components",
}
#: Components of the probe vector set to special values: index → float32 value.
PROBE_COMPONENTS: dict[int, float] = {5: 1e-40, 6: -0.0, 7: -1e-42, 8: 0.0}

_LATENT = 48
_VECTOR_BLOCK = 4096  # rows per noise block; the vectors do not depend on the write batch size
_EPOCH = datetime(2026, 1, 5, 9, 0, 0)  # the palace's first write (naive local time, like MemPalace)
_PALACE_SPAN_DAYS = 300

_STREAM_PLAN, _STREAM_UNITS, _STREAM_NOISE, _STREAM_SPACE, _STREAM_KG = 1, 2, 3, 4, 5
_STREAM_CLOSET_NOISE, _STREAM_ASSET_NOISE, _STREAM_ASSET_UNITS, _STREAM_TEXT = 6, 7, 8, 9

# ── Vocabulary (kept small: the text only has to look like notes and code talk) ──

_COMMON = (
    "the a an and or but so then when while after before because if not with without for from "
    "into onto over under about between across through during again more most less least very "
    "we they it this that these those our their its there here now later today tomorrow soon "
    "is was are were be been has have had do did does can could should would will may might must "
    "make made take took keep kept move moved need needed want wanted try tried check checked "
    "note notes idea ideas plan plans step steps change changes issue issues fix fixes test tests "
    "build builds run runs time times day week month part parts way ways case cases point points "
    "small large fast slow new old first last next other same different simple clear open closed "
    "good better best bad worse real actual main whole half each every some many few all both"
).split()

_WING_VOCAB: dict[str, tuple[str, ...]] = {
    "atlas_api": tuple("endpoint request response handler router middleware auth token session "
                       "schema payload pagination ratelimit gateway latency retry timeout json".split()),
    "borealis_web": tuple("component render layout stylesheet browser hydration router bundle "
                          "webpack vite accessibility form modal button navbar theme cache".split()),
    "cinder_ml": tuple("model training epoch gradient embedding tokenizer dataset loss optimizer "
                       "checkpoint inference batch tensor feature label accuracy recall".split()),
    "delta_infra": tuple("cluster node kubernetes terraform deploy container image registry "
                         "network firewall volume backup replica failover monitoring alert".split()),
    "ember_mobile": tuple("android ios swift kotlin screen gesture notification offline sync "
                          "battery permission camera widget release store crash".split()),
    "fjord_data": tuple("pipeline warehouse table column partition etl query index join "
                        "parquet stream kafka schema lineage snapshot vacuum".split()),
    "garnet_docs": tuple("guide tutorial chapter section reference glossary example diagram "
                         "changelog readme outline draft review style heading link".split()),
    "harbor_ops": tuple("incident oncall runbook pager outage postmortem escalation ticket "
                        "rotation handoff capacity budget vendor contract audit".split()),
    "iris_research": tuple("paper hypothesis experiment baseline ablation citation survey metric "
                           "benchmark result figure appendix reviewer proof lemma".split()),
    "juniper_notes": tuple("journal reflection habit goal reading garden recipe travel family "
                           "weekend music walk memory gratitude morning".split()),
}

_PROJECT_ROOMS = ("backend", "frontend", "docs", "tests", "ops", "design", "planning", "research")
_CONVO_ROOMS = ("conversations", "decisions", "planning", "support")
_GENERAL_MEMORY_TYPES = ("decision", "preference", "milestone", "problem", "emotional")
_HALLS = ("technical", "memory", "identity", "creative", "emotions", "consciousness", "family", "general")
_HALL_WEIGHTS = (40, 12, 6, 8, 6, 3, 5, 20)
_TOPIC_VERBS = ("built", "fixed", "wrote", "added", "tested", "decided", "migrated", "reviewed",
                "deployed", "configured", "removed", "updated")
_AGENTS = ("mempalace", "mempalace", "research-bot", "claude")
_DIARY_AGENTS = ("claude", "research-bot", "scribe")
_CODE_EXTS = ("py", "md", "ts", "go", "rs", "txt", "sql", "yaml")
_DOC_EXTS = ("pdf", "docx", "pptx", "rtf")
_DATE_SOURCES = ("filename", "frontmatter", "body", "mtime")

_FIRST = ("Ada Alan Grace Linus Barbara Edsger Margaret Ken Dennis Radia Frances Tim Guido Bjarne "
          "Donald Leslie Niklaus John Sophie Karen Hedy Jean Katherine Mary Anita Shafi Whitfield "
          "Tony Robin Fernando Zoë Amara Bao Chiara Dmitri Elif Farid Greta Hiro Ines Jonas Kavya "
          "Luca Mei Nadia Omar Priya Quinn Rafael Sven Tamar Ugo Vera Wen Ximena Yara Zane").split()
_LAST = ("Lovelace Turing Hopper Torvalds Liskov Dijkstra Hamilton Thompson Ritchie Perlman Allen "
         "Berners Rossum Stroustrup Knuth Lamport Wirth McCarthy Wilson Jones Lamarr Sammet Johnson "
         "Kenner Borg Goldwasser Diffie Hoare Milner Corbató Okafor Nguyen Rossi Petrov Yilmaz Haddad "
         "Lind Tanaka Moreau Weber Iyer Bianchi Chen Karimi Farouk Shah O'Connor Duarte Nilsson "
         "Cohen Ferri Novak Zhang Ortega Haddon Müller").split()
_ADJ = ("Amber Bright Cobalt Distant Eager Fallow Golden Hidden Ivory Jade Keen Lunar Misty Noble "
        "Opal Quiet Rapid Silent Tidal Umber Vivid Wild Young Zesty North South Eastern Western").split()
_NOUN = ("Falcon Harbor Lantern Meadow Nimbus Orchard Pillar Quarry Raven Summit Thicket Valley "
         "Willow Beacon Canyon Delta Ember Fjord Glacier Horizon Island Juniper Kestrel Lagoon").split()
_ORG_SUFFIX = ("Labs", "Systems", "Collective", "Foundation", "Works", "Studio", "Partners")
_PLACE_NOUN = ("Harbor", "Ridge", "Station", "Quarter", "Campus", "Point", "Bay")
_CONCEPTS = ("vector search", "temporal graph", "memory palace", "recall parity", "hybrid ranking",
             "closet boost", "entity linking", "schema migration", "write ahead log", "cosine distance",
             "knowledge graph", "incremental sync", "cold start", "rate limiting", "feature flag")
_TOOL_PARTS = ("pg", "vector", "graph", "chroma", "age", "onnx", "mini", "lm", "kafka", "redis",
               "tokio", "rust", "py", "node", "lite", "fast", "hnsw", "ivf")
_ADAPTERS = ("claude_code", "hermes", "chatgpt_export", "slack_export")

_ENTITY_TYPES = ("person", "project", "tool", "concept", "organization", "place")
_ENTITY_TYPE_WEIGHTS = (35, 15, 20, 15, 10, 5)
#: (predicate, subject types, object types)
_PREDICATES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("works_on", ("person",), ("project",)),
    ("uses", ("person", "project"), ("tool",)),
    ("prefers", ("person",), ("tool", "concept")),
    ("owns", ("person", "organization"), ("project",)),
    ("reviewed", ("person",), ("project", "tool")),
    ("knows", ("person",), ("person",)),
    ("reports_to", ("person",), ("person",)),
    ("member_of", ("person",), ("organization",)),
    ("located_in", ("person", "organization"), ("place",)),
    ("depends_on", ("project",), ("project", "tool")),
    ("embeds_with", ("project",), ("tool",)),
    ("stores_kg_in", ("project",), ("tool",)),
    ("implements", ("tool", "project"), ("concept",)),
    ("maintained_by", ("tool",), ("organization", "person")),
    ("mentions", ("project", "person"), ("concept", "person")),
)


# ── Small helpers ───────────────────────────────────────────────────────────


def _sha(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _sub_seed(seed: int, *parts: object) -> int:
    """A 64-bit seed derived from ``seed`` and ``parts`` (stable across processes and platforms)."""
    return int(_sha(":".join(map(str, (seed, *parts))), 16), 16)


def _apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder, ties to the lower index)."""
    weight_sum = float(sum(weights))
    raw = [total * w / weight_sum for w in weights]
    parts = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (-(raw[i] - parts[i]), i))
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


def _split_sizes(total: int, low: int, high: int, rng: random.Random) -> list[int]:
    """Unit sizes in [low, high] summing to ``total``; a too-small tail joins the last unit."""
    sizes: list[int] = []
    remaining = total
    while remaining > 0:
        size = min(rng.randint(low, high), remaining)
        if 0 < remaining - size < low:
            size = remaining
        sizes.append(size)
        remaining -= size
    return sizes


def _iso(moment: datetime) -> str:
    """``datetime.now().isoformat()`` as MemPalace writes it (the fraction is omitted when zero)."""
    return moment.isoformat()


def _inode_for(directory: str) -> str:
    """A stable stand-in for ``source_dir_ino`` (the inode of the file's directory, as text)."""
    return str(1_000_000 + int(_sha(directory, 8), 16) % 90_000_000)


# ── Planning: what rows exist, in which wing, room and cluster ──────────────


@dataclass
class _Unit:
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
    start: datetime = _EPOCH
    legacy: bool = False  # pre-Tier-6a project file: no line numbers, no content_date
    tricky: str | None = None
    extra: dict = field(default_factory=dict)

    def drawer_ids(self) -> list[str]:
        """Project-miner ids (they do not depend on the text, so closets can be planned up front)."""
        from mempalace.ids import make_drawer_id_from_chunk

        return [make_drawer_id_from_chunk(self.wing, self.room, self.source_file, i) for i in range(self.size)]


@dataclass
class _Cluster:
    wing: str
    room: str
    keywords: tuple[str, ...]


def _wing_rooms(wing_index: int) -> tuple[str, ...]:
    count = 3 + wing_index % 3
    return tuple(_PROJECT_ROOMS[(wing_index * 3 + k) % len(_PROJECT_ROOMS)] for k in range(count))


def _plan_clusters(drawers: int, rng: random.Random) -> list[_Cluster]:
    """Clusters per wing in proportion to its share; each cluster has a room and keywords."""
    total = min(400, max(len(WINGS), drawers // 400))
    per_wing = [max(1, n) for n in _apportion(total, WING_SHARES)]
    clusters = []
    for wing_index, (wing, count) in enumerate(zip(WING_NAMES, per_wing)):
        rooms = _wing_rooms(wing_index)
        for k in range(count):
            keywords = tuple(rng.sample(_WING_VOCAB[wing], 5))
            clusters.append(_Cluster(wing=wing, room=rooms[k % len(rooms)], keywords=keywords))
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
        self.targets = [max(1, n) for n in _apportion(rows_with_wing, WING_SHARES)]
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


def _plan_units(
    drawers: int, rng: random.Random, clusters: list[_Cluster], wing_entities: dict[str, list[str]]
) -> list[_Unit]:
    counts = _kind_row_counts(drawers)
    scheduler = _WingScheduler(drawers - counts["sweep"])
    clusters_by_wing: dict[str, list[int]] = defaultdict(list)
    for index, cluster in enumerate(clusters):
        clusters_by_wing[cluster.wing].append(index)

    units: list[_Unit] = []

    def add_unit(kind: str, size: int, wing_index: int | None, **attrs: Any) -> _Unit:
        wing = WING_NAMES[wing_index] if wing_index is not None else rng.choice(WING_NAMES)
        cluster = rng.choice(clusters_by_wing[wing])
        unit = _Unit(index=len(units), kind=kind, size=size, cluster=cluster, **attrs)
        unit.wing = wing if wing_index is not None else None
        pool = wing_entities[wing]
        unit.entities = tuple(rng.sample(pool, min(len(pool), rng.choice((0, 1, 2, 2, 3)))))
        keywords = clusters[cluster].keywords
        unit.topics = tuple(
            f"{rng.choice(_TOPIC_VERBS)} {rng.choice(keywords)} {rng.choice(keywords)} for {wing.split('_')[0]}"
            for _ in range(rng.randint(1, 8))
        )
        units.append(unit)
        return unit

    for name in TRICKY_ROWS:
        add_unit("tricky", 1, scheduler.take(1), tricky=name)
    for kind, _, _, (low, high) in KIND_BUDGETS:
        for size in _split_sizes(counts[kind], low, high, rng):
            add_unit(kind, size, None if kind == "sweep" else scheduler.take(size))
    for wing_index in range(len(WINGS)):
        budget = scheduler.remaining(wing_index)
        for size in _split_sizes(budget, 1, 8, rng):
            unit = add_unit("project_chunk", size, wing_index)
            unit.legacy = rng.random() < 0.12
    _fit_project_rows(units, drawers, rng)
    for unit in units:
        _place_unit(unit, clusters, rng)
    _assign_timeline(units, rng)
    return units


def _fit_project_rows(units: list[_Unit], drawers: int, rng: random.Random) -> None:
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


def _place_unit(unit: _Unit, clusters: list[_Cluster], rng: random.Random) -> None:
    """Room, source file and agent, as each writer sets them."""
    n = unit.index
    wing = unit.wing or clusters[unit.cluster].wing
    kind = unit.kind
    unit.agent = rng.choice(_AGENTS)
    if kind == "project_chunk":
        unit.room = clusters[unit.cluster].room
        stem = clusters[unit.cluster].keywords[0]
        unit.source_file = f"/home/dev/code/{wing}/{unit.room}/{stem}_{n:06d}.{rng.choice(_CODE_EXTS)}"
        unit.extra["content_days_before"] = rng.randint(0, 40)  # content_date, shared by drawers and closets
    elif kind == "format_sentinel":
        unit.room = "documents"
        unit.source_file = f"/home/dev/documents/{wing}/scan_{n:06d}.{rng.choice(_DOC_EXTS)}"
    elif kind in ("convo_exchange", "convo_general", "registry_sentinel"):
        unit.room = "_registry" if kind == "registry_sentinel" else rng.choice(_CONVO_ROOMS)
        unit.source_file = f"/home/dev/chats/{wing}/session_{n:06d}.{rng.choice(('jsonl', 'md', 'txt'))}"
        if kind == "registry_sentinel":  # a zero-chunk transcript, mined in either mode
            unit.extra["extract_mode"] = rng.choice(("exchange", "exchange", "general"))
    elif kind in ("live_exchange", "tricky"):
        unit.room = rng.choice(_CONVO_ROOMS)
        unit.source_file = f"/home/dev/.hermes/sessions/{wing}/live_{n:06d}.jsonl"
    elif kind in ("mcp_drawer", "mcp_chunked"):
        unit.room = "notes"
        unit.agent = rng.choice(("mcp", "mcp", "claude"))
        if rng.random() < 0.4:
            unit.source_file = f"/home/dev/notes/{wing}/note_{n:06d}.md"
    elif kind in ("diary", "diary_chunked"):
        unit.room = "diary"
        unit.agent = rng.choice(_DIARY_AGENTS)
        unit.extra["topic"] = rng.choice(clusters[unit.cluster].keywords)
    elif kind == "sweep":
        session = _uuid(rng)
        unit.extra["session_id"] = session
        unit.source_file = f"/home/dev/.claude/projects/-home-dev-code-{wing}/{session}.jsonl"
    if unit.tricky == "long_document":  # a legacy oversized add_drawer row, from before #1539 chunking
        unit.room, unit.source_file, unit.agent = "notes", "", "mcp"
    if unit.tricky == "empty_strings":
        unit.entities = ()


def _uuid(rng: random.Random) -> str:
    value = f"{rng.getrandbits(128):032x}"
    return f"{value[:8]}-{value[8:12]}-4{value[13:16]}-a{value[17:20]}-{value[20:32]}"


def _assign_timeline(units: list[_Unit], rng: random.Random) -> None:
    """Shuffle the write order (wings and kinds interleave, as in real use) and stamp start times."""
    rng.shuffle(units)
    mean_gap = _PALACE_SPAN_DAYS * 86_400 / max(1, len(units))
    moment = _EPOCH
    for unit in units:
        moment += timedelta(seconds=rng.expovariate(1 / mean_gap), microseconds=rng.randint(1, 999_999))
        unit.start = moment


# ── Text ────────────────────────────────────────────────────────────────────


def _population(unit: _Unit, clusters: list[_Cluster]) -> list[str]:
    """Words to draw from: common words, the wing's vocabulary, the cluster's keywords (weighted up)."""
    cluster = clusters[unit.cluster]
    return list(_COMMON) + list(_WING_VOCAB[cluster.wing]) * 3 + list(cluster.keywords) * 6


def _prose(rng: random.Random, population: list[str], n_chars: int, lead: Sequence[str] = (), line_every: int = 0) -> str:
    """Sentences of words from ``population``, at most ``n_chars`` long; ``lead`` sentences come first.

    ``line_every`` > 0 puts a newline after every that many sentences (mined files have lines).
    """
    words = rng.choices(population, k=n_chars // 5 + 16)
    sentences = list(lead)
    length = sum(len(s) + 1 for s in sentences)
    position = 0
    while length < n_chars and position < len(words):
        count = rng.randint(6, 14)
        sentence = " ".join(words[position : position + count]).capitalize() + "."
        position += count
        sentences.append(sentence)
        length += len(sentence) + 1
    if line_every:
        lines = [" ".join(sentences[i : i + line_every]) for i in range(0, len(sentences), line_every)]
        text = "\n".join(lines)
    else:
        text = " ".join(sentences)
    if len(text) > n_chars:
        text = text[:n_chars].rsplit(" ", 1)[0]
    return text


def _lead_sentences(unit: _Unit, rng: random.Random) -> list[str]:
    """Sentences that name the unit's entities and topics, so metadata and closets match the text."""
    lead = [f"{topic.capitalize()}." for topic in unit.topics[:2]]
    for name in unit.entities:
        lead.append(f"{name} {rng.choice(('reviewed', 'suggested', 'owns', 'asked about'))} this.")
        lead.append(f"Thanks to {name} for the notes.")  # entities appear at least twice, as extraction needs
    return lead


def _content_date(unit: _Unit) -> str:
    return (unit.start - timedelta(days=unit.extra["content_days_before"])).date().isoformat()


def _chunk_lengths(size: int, doc_chars: int, rng: random.Random) -> list[int]:
    """Chunk lengths of a mined file: full chunks near ``doc_chars``, a shorter tail."""
    lengths = [int(doc_chars * rng.uniform(0.85, 1.0)) for _ in range(size)]
    lengths[-1] = max(60, int(doc_chars * rng.uniform(0.2, 0.95)))
    return lengths


# ── Rows: the exact ids and metadata of each MemPalace writer ───────────────


@dataclass(slots=True)
class _Row:
    id: str
    document: str
    metadata: dict
    cluster: int
    unit: int
    probe: bool = False


class _RowWriter:
    """Turns planned units into drawer rows, exactly as each MemPalace writer shapes them."""

    def __init__(self, seed: int, clusters: list[_Cluster], doc_chars: int, long_doc_chars: int) -> None:
        from mempalace.ids import ID_RECIPE
        from mempalace.palace import CONVO_CHUNKER_VERSION, NORMALIZE_VERSION

        self.seed = seed
        self.clusters = clusters
        self.doc_chars = doc_chars
        self.long_doc_chars = long_doc_chars
        self.normalize_version = NORMALIZE_VERSION
        self.chunker_version = CONVO_CHUNKER_VERSION
        self.id_recipe = ID_RECIPE

    def rows(self, unit: _Unit) -> list[_Row]:
        rng = random.Random(_sub_seed(self.seed, _STREAM_TEXT, unit.index))
        build = getattr(self, f"_{unit.kind}")
        built = build(unit, rng)
        return [_Row(i, d, m, unit.cluster, unit.index, probe=unit.tricky == "vector_probe") for i, d, m in built]

    # ── shared pieces

    def _filed(self, unit: _Unit, k: int) -> str:
        return _iso(unit.start + timedelta(microseconds=137 * k))

    def _hall(self, rng: random.Random) -> str:
        return rng.choices(_HALLS, weights=_HALL_WEIGHTS)[0]

    def _mtime(self, unit: _Unit, rng: random.Random) -> float:
        return round(unit.start.replace(tzinfo=timezone.utc).timestamp() - rng.uniform(60, 86_400 * 30), 6)

    # ── project miner (miner._build_drawer_metadata)

    def _project_chunk(self, unit: _Unit, rng: random.Random):
        from mempalace.ids import make_drawer_id_from_chunk

        population = _population(unit, self.clusters)
        mtime = self._mtime(unit, rng)
        content_date = _content_date(unit)
        date_source = rng.choice(_DATE_SOURCES)
        has_inode = rng.random() > 0.08
        entities = ";".join(unit.entities)
        line = 1
        out = []
        for index, length in enumerate(_chunk_lengths(unit.size, self.doc_chars, rng)):
            lead = _lead_sentences(unit, rng) if index == 0 else ()
            text = _prose(rng, population, length, lead, line_every=rng.randint(1, 2))
            lines = text.count("\n") + 1
            meta: dict[str, Any] = {
                "wing": unit.wing,
                "room": unit.room,
                "source_file": unit.source_file,
                "chunk_index": index,
                "added_by": unit.agent,
                "filed_at": self._filed(unit, index),
                "normalize_version": self.normalize_version,
                "id_recipe": self.id_recipe,
                "source_mtime": mtime,
            }
            if not unit.legacy:
                meta |= {"line_start": line, "line_end": line + lines - 1}
                meta |= {"content_date": content_date, "content_date_source": date_source}
            meta["chunk_total"] = unit.size
            if has_inode:
                meta["source_dir_ino"] = _inode_for(os.path.dirname(unit.source_file))
            meta["hall"] = self._hall(rng)
            if entities:
                meta["entities"] = entities
            line += lines
            out.append((make_drawer_id_from_chunk(unit.wing, unit.room, unit.source_file, index), text, meta))
        return out

    # ── format miner sentinel (format_miner._register_file)

    def _format_sentinel(self, unit: _Unit, rng: random.Random):
        meta = {
            "wing": unit.wing,
            "room": "documents",
            "source_file": unit.source_file,
            "chunk_index": -1,
            "added_by": unit.agent,
            "filed_at": self._filed(unit, 0),
            "ingest_mode": "extract",
            "extract_mode": "format",
            "normalize_version": self.normalize_version,
            "is_sentinel": True,
            "source_dir_ino": _inode_for(os.path.dirname(unit.source_file)),
        }
        return [(f"sentinel_{unit.wing}_{_sha(unit.source_file, 24)}", "[empty]", meta)]

    # ── convo miner (convo_miner.mine_convos, _register_file)

    def _transcript(self, unit: _Unit, rng: random.Random) -> list[str]:
        population = _population(unit, self.clusters)
        turns = []
        for index, length in enumerate(_chunk_lengths(unit.size, self.doc_chars, rng)):
            question = _prose(rng, population, rng.randint(40, 140)).rstrip(".") + "?"
            answer = _prose(rng, population, max(30, length - len(question) - 4), _lead_sentences(unit, rng) if index == 0 else ())
            turns.append(f"> {question}\n{answer}")
        return turns

    def _convo(self, unit: _Unit, rng: random.Random, extract_mode: str):
        from mempalace.ids import make_convo_drawer_id

        mtime = self._mtime(unit, rng)
        authored_at = _iso(unit.start - timedelta(hours=rng.randint(1, 72)))
        inode = _inode_for(os.path.dirname(unit.source_file))
        content_hash = hashlib.sha256(f"transcript {unit.index}".encode()).hexdigest()
        filed_at = self._filed(unit, 0)  # one stamp per transcript, as mine_convos takes it once
        out = []
        for index, text in enumerate(self._transcript(unit, rng)):
            room = rng.choice(_GENERAL_MEMORY_TYPES) if extract_mode == "general" else unit.room
            meta: dict[str, Any] = {
                "wing": unit.wing,
                "room": room,
                "hall": "emotions" if room == "emotional" else self._hall(rng),
                "source_file": unit.source_file,
                "chunk_index": index,
                "added_by": unit.agent,
                "filed_at": filed_at,
                "entities": ";".join(unit.entities),
                "authored_at": authored_at,
                "ingest_mode": "convos",
                "extract_mode": extract_mode,
                "normalize_version": self.normalize_version,
                "id_recipe": self.id_recipe,
                "chunk_total": unit.size,
            }
            if extract_mode == "exchange":
                meta["convo_chunker_version"] = self.chunker_version
            meta["source_mtime"] = mtime
            meta["source_dir_ino"] = inode
            if index == 0:
                meta["content_hash"] = content_hash
            out.append((make_convo_drawer_id(unit.wing, room, unit.source_file, extract_mode, index), text, meta))
        return out

    def _convo_exchange(self, unit: _Unit, rng: random.Random):
        return self._convo(unit, rng, "exchange")

    def _convo_general(self, unit: _Unit, rng: random.Random):
        return self._convo(unit, rng, "general")

    def _registry_sentinel(self, unit: _Unit, rng: random.Random):
        from mempalace.ids import make_convo_sentinel_id

        extract_mode = unit.extra["extract_mode"]
        meta: dict[str, Any] = {
            "wing": unit.wing,
            "room": "_registry",
            "source_file": unit.source_file,
            "added_by": unit.agent,
            "filed_at": self._filed(unit, 0),
            "ingest_mode": "registry",
            "extract_mode": extract_mode,
            "normalize_version": self.normalize_version,
            "id_recipe": self.id_recipe,
        }
        if extract_mode == "exchange":
            meta["convo_chunker_version"] = self.chunker_version
        meta["source_mtime"] = self._mtime(unit, rng)
        if rng.random() < 0.5:  # a content-duplicate of an already-mined transcript
            meta["content_hash"] = hashlib.sha256(f"duplicate {unit.index}".encode()).hexdigest()
        sentinel_id = make_convo_sentinel_id(unit.source_file, extract_mode)
        return [(sentinel_id, f"[registry] {unit.source_file}", meta)]

    # ── live exchange (convo_miner.file_conversation_exchange), also the tricky rows

    def _live_exchange(self, unit: _Unit, rng: random.Random, text: str | None = None, extra: dict | None = None):
        from mempalace.ids import make_exchange_drawer_id

        if text is None:
            population = _population(unit, self.clusters)
            question = _prose(rng, population, rng.randint(40, 120)).rstrip(".") + "?"
            text = f"> {question}\n{_prose(rng, population, rng.randint(150, 500), _lead_sentences(unit, rng))}"
        filed_at = self._filed(unit, 0)
        meta: dict[str, Any] = {
            "wing": unit.wing,
            "room": unit.room,
            "hall": self._hall(rng),
            "source_file": unit.source_file,
            "chunk_index": 0,
            "added_by": unit.agent,
            "filed_at": filed_at,
            "entities": ";".join(unit.entities),
            "authored_at": filed_at,
            "ingest_mode": "convos",
            "extract_mode": "exchange",
            "normalize_version": self.normalize_version,
            "convo_chunker_version": self.chunker_version,
            "id_recipe": self.id_recipe,
            "source_dir_ino": _inode_for(os.path.dirname(unit.source_file)),
        }
        for key, value in (extra or {}).items():
            meta.setdefault(key, value)
        return [(make_exchange_drawer_id(unit.wing, unit.room, unit.source_file, filed_at, text), text, meta)]

    # ── MCP add_drawer (mcp_server/tools_write.tool_add_drawer)

    def _mcp_meta(self, unit: _Unit) -> dict:
        meta: dict[str, Any] = {
            "wing": unit.wing,
            "room": unit.room,
            "source_file": unit.source_file,
            "added_by": unit.agent,
            "filed_at": self._filed(unit, 0),
            "id_recipe": self.id_recipe,
        }
        if unit.source_file:
            meta["source_dir_ino"] = _inode_for(os.path.dirname(unit.source_file))
        meta["last_modified"] = meta["filed_at"]
        return meta

    def _mcp_drawer(self, unit: _Unit, rng: random.Random, content: str | None = None):
        from mempalace.ids import make_drawer_id_from_content

        if content is None:
            population = _population(unit, self.clusters)
            content = _prose(rng, population, rng.randint(80, self.doc_chars), _lead_sentences(unit, rng))
        meta = self._mcp_meta(unit) | {"chunk_index": 0}
        return [(make_drawer_id_from_content(unit.wing, unit.room, content), content, meta)]

    def _long_content(self, unit: _Unit, rng: random.Random, length: int) -> str:
        """Exactly ``length`` characters (the writers split by character count, mid-word included)."""
        text = _prose(rng, _population(unit, self.clusters), length + 400, _lead_sentences(unit, rng))
        while len(text) < length:
            text += " " + text
        return text[:length]

    def _mcp_chunked(self, unit: _Unit, rng: random.Random):
        from mempalace.ids import make_drawer_id_from_content

        chunk = self.doc_chars
        content = self._long_content(unit, rng, (unit.size - 1) * chunk + rng.randint(1, chunk))
        drawer_id = make_drawer_id_from_content(unit.wing, unit.room, content)
        base = self._mcp_meta(unit)
        return [
            (f"{drawer_id}_chunk_{i // chunk:06d}", content[i : i + chunk], {**base, "chunk_index": i // chunk, "parent_drawer_id": drawer_id})
            for i in range(0, len(content), chunk)
        ]

    # ── MCP diary (mcp_server/tools_diary.tool_diary_write): no source_file

    def _diary_entry(self, unit: _Unit, rng: random.Random, length: int) -> tuple[str, str, dict]:
        entry = self._long_content(unit, rng, length)
        moment = unit.start
        entry_id = f"diary_{unit.wing}_{moment.strftime('%Y%m%d_%H%M%S%f')}_{hashlib.sha256(entry.encode()).hexdigest()[:12]}"
        base = {
            "wing": unit.wing,
            "room": "diary",
            "hall": "hall_diary",
            "topic": unit.extra["topic"],
            "type": "diary_entry",
            "agent": unit.agent,
            "filed_at": _iso(moment),
            "date": moment.strftime("%Y-%m-%d"),
        }
        return entry_id, entry, base

    def _diary(self, unit: _Unit, rng: random.Random):
        entry_id, entry, base = self._diary_entry(unit, rng, rng.randint(60, self.doc_chars))
        return [(entry_id, entry, {**base, "chunk_index": 0})]

    def _diary_chunked(self, unit: _Unit, rng: random.Random):
        chunk = self.doc_chars
        entry_id, entry, base = self._diary_entry(unit, rng, (unit.size - 1) * chunk + rng.randint(1, chunk))
        return [
            (
                f"{entry_id}_chunk_{i // chunk:06d}",
                entry[i : i + chunk],
                {**base, "chunk_index": i // chunk, "parent_entry_id": entry_id, "parent_drawer_id": entry_id},
            )
            for i in range(0, len(entry), chunk)
        ]

    # ── sweeper (sweeper.py): no wing, room, hall or chunk_index

    def _sweep(self, unit: _Unit, rng: random.Random):
        population = _population(unit, self.clusters)
        session = unit.extra["session_id"]
        inode = _inode_for(os.path.dirname(unit.source_file))
        out = []
        for k in range(unit.size):
            role = "user" if k % 2 == 0 else "assistant"
            message_uuid = _uuid(rng)
            moment = unit.start + timedelta(seconds=7 * k, milliseconds=rng.randint(0, 999))
            meta = {
                "session_id": session,
                "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
                "message_uuid": message_uuid,
                "role": role,
                "source_file": unit.source_file,
                "filed_at": self._filed(unit, k),
                "ingest_mode": "sweep",
                "source_dir_ino": inode,
            }
            text = f"{role.upper()}: {_prose(rng, population, rng.randint(40, 600))}"
            out.append((f"sweep_{session}_{message_uuid}", text, meta))
        return out

    # ── tricky rows

    def _tricky(self, unit: _Unit, rng: random.Random):
        name = unit.tricky
        extras: dict[str, dict] = {
            "priority_int": {"priority": 1},
            "priority_float": {"priority": 1.0},
            "priority_bool": {"priority": True},
            "int64_max": {"counter": 2**63 - 1},
            "int64_min": {"counter": -(2**63), "counter_neg": -(2**63 - 1)},
            "odd_key": {'label "quoted" $$dollar$$': 'it\'s "quoted" and costs $$'},
            "float_extremes": {"tiny": 5e-324, "neg_tiny": -5e-324, "huge": 1.7976931348623157e308},
            "unicode": {"topic": "launch 🚀\u2028retro 🎉\u2029done"},
            "vector_probe": {"probe": "subnormal and signed zeros in the vector"},
        }
        if name == "long_document":
            return self._mcp_drawer(unit, rng, self._long_content(unit, rng, self.long_doc_chars))
        if name == "empty_strings":
            return self._live_exchange(unit, rng, extra={"note": ""})
        text = None
        if name == "unicode":
            text = "> Did the launch go well? 🚀\nYes 🎉 — first line\u2028second line after LS\u2029new paragraph, Zoë ✓ 日本語."
        return self._live_exchange(unit, rng, text=text, extra=extras[name])


# ── Closets (the index layer) ───────────────────────────────────────────────


class _ClosetCapture:
    """Stands in for the closets collection so MemPalace's ``upsert_closet_lines`` packs and numbers closets."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, dict]] = []

    def upsert(self, *, documents, ids, metadatas) -> None:
        self.rows.extend(zip(ids, documents, (dict(m) for m in metadatas)))


def _closet_lines(unit: _Unit, drawer_ids: list[str], rng: random.Random) -> list[str]:
    """Pointer lines as ``build_closet_lines`` writes them: ``topic|entities|[date:Lx-Ly|]→id1,id2,id3``."""
    refs = ",".join(drawer_ids[:3])
    entity_str = ";".join(unit.entities[:5])
    date_segment = None
    if not unit.legacy:
        # Tier 6a locator: the first drawer's content date and line span (approximate, as upstream says).
        date_segment = f"{_content_date(unit)}:L1-L{rng.randint(4, 40)}"

    def pointer(prefix: str) -> str:
        return f"{prefix}|{entity_str}|{date_segment}|→{refs}" if date_segment else f"{prefix}|{entity_str}|→{refs}"

    lines = [pointer(topic.lower()) for topic in unit.topics]
    if rng.random() < 0.15:
        lines.append(pointer(f'"{unit.topics[0]} and then we shipped it"'))
    if not lines:
        lines.append(pointer(f"{unit.wing}/{unit.room}/{Path(unit.source_file).stem[:40]}"))
    return lines


def _plan_closets(units: list[_Unit], seed: int) -> list[tuple[str, str, dict, int]]:
    from mempalace.palace import NORMALIZE_VERSION, upsert_closet_lines

    closets = []
    for unit in units:
        if unit.kind != "project_chunk":
            continue
        rng = random.Random(_sub_seed(seed, "closet", unit.index))
        capture = _ClosetCapture()
        meta: dict[str, Any] = {
            "wing": unit.wing,
            "room": unit.room,
            "source_file": unit.source_file,
            "drawer_count": unit.size,
            "filed_at": _iso(unit.start + timedelta(milliseconds=250)),
            "normalize_version": NORMALIZE_VERSION,
        }
        if unit.entities:
            meta["entities"] = ";".join(unit.entities)
        base = f"closet_{unit.wing}_{unit.room}_{_sha(unit.source_file, 24)}"
        upsert_closet_lines(capture, base, _closet_lines(unit, unit.drawer_ids(), rng), meta)
        closets.extend((cid, doc, m, unit.index) for cid, doc, m in capture.rows)
    return closets


# ── Media assets (media.MediaAsset) ─────────────────────────────────────────


def _gemma_function() -> Any:
    """The EmbeddingGemma 2 function a media palace is configured with (lazy: never loads torch here)."""
    from mempalace.embeddinggemma2 import EmbeddingGemma2EmbeddingFunction

    return EmbeddingGemma2EmbeddingFunction(dimension=ASSET_DIMENSION, modalities="all", device="auto")


def _plan_assets(count: int, seed: int, clusters: list[_Cluster], units: list[_Unit]):
    from mempalace.media import MediaAsset, stable_asset_id

    rng = random.Random(_sub_seed(seed, "assets"))
    by_wing: dict[str, list[int]] = defaultdict(list)
    for index, cluster in enumerate(clusters):
        by_wing[cluster.wing].append(index)
    drawer_ids_by_wing: dict[str, list[str]] = defaultdict(list)
    for unit in units:
        if unit.kind == "project_chunk" and len(drawer_ids_by_wing[unit.wing]) < 50:
            drawer_ids_by_wing[unit.wing].append(unit.drawer_ids()[0])
    kinds = {"image": ("png", "image/png"), "audio": ("wav", "audio/x-wav"), "video": ("mp4", "video/mp4")}
    assets, asset_clusters, indexed = [], [], []
    moment = _EPOCH + timedelta(days=20)
    for wing, n in zip(WING_NAMES, _apportion(count, WING_SHARES)):
        for k in range(n):
            media_type = rng.choice(("image", "image", "audio", "video"))
            ext, mime = kinds[media_type]
            path = f"/home/dev/media/{wing}/{media_type}_{k:05d}.{ext}"
            duration = round(rng.uniform(3, 900), 3) if media_type != "image" else None
            segment = (0.0, round(duration / 2, 3)) if media_type == "video" and rng.random() < 0.5 else (None, None)
            mtime_ns = 1_767_225_600_000_000_000 + rng.randrange(10**16)
            related = rng.choice(drawer_ids_by_wing[wing]) if drawer_ids_by_wing[wing] and rng.random() < 0.4 else None
            assets.append(
                MediaAsset(
                    asset_id=stable_asset_id(path),
                    source_id=f"source_{hashlib.sha256(f'/home/dev/media/{wing}'.encode()).hexdigest()}",
                    source_file=path,
                    media_type=media_type,
                    mime_type=mime,
                    title=Path(path).name,
                    project=wing,
                    inferred_wing="audio" if media_type == "audio" else "visual",
                    file_size_bytes=rng.randint(10_000, 50_000_000),
                    file_mtime_ns=mtime_ns,
                    file_modified_at=datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).isoformat(),
                    related_drawer_id=related,
                    segment_start=segment[0],
                    segment_end=segment[1],
                    duration=duration,
                    file_exists=rng.random() > 0.1,
                )
            )
            asset_clusters.append(rng.choice(by_wing[wing]))
            moment += timedelta(minutes=rng.randint(1, 600), microseconds=rng.randint(1, 999_999))
            indexed.append(moment.replace(tzinfo=timezone.utc))
    return assets, asset_clusters, indexed


def _asset_row(asset: Any, indexed_at: datetime, identity: str) -> tuple[str, str, dict]:
    """Document and metadata exactly as ``media.store_media_asset`` writes them."""
    stamp = indexed_at.isoformat()
    metadata = asset.metadata() | {
        "embedding_model": identity,
        "embedding_identity": identity,
        "embedding_dimension": ASSET_DIMENSION,
        "embedding_modalities": "all",
        "indexed_at": stamp,
        "last_modified": stamp,
        "filed_at": stamp,
    }
    return asset.asset_id, asset.descriptor(), metadata


# ── Vectors ─────────────────────────────────────────────────────────────────


def chroma_stable(vectors: np.ndarray, max_rounds: int = 12) -> np.ndarray:
    """Unit float32 rows that are fixed points of float32 renormalisation.

    Chroma renormalises vectors of a cosine collection when it indexes them, so an
    ordinary unit vector can come back changed in its last bit (about a quarter of
    them did).  Dividing by the float32 norm (sequentially summed) until nothing
    changes gives rows that Chroma stores bit for bit (tests/test_generate.py
    checks it).  Zeros keep their sign; subnormals are scaled with the rest while
    the loop converges and stay subnormal.  Only IEEE-exact elementwise steps, so
    the result does not depend on the machine.
    """
    current = np.asarray(vectors, dtype=np.float32)
    for _ in range(max_rounds):
        norms = np.sqrt(np.cumsum(current * current, axis=1, dtype=np.float32)[:, -1]).astype(np.float32)
        following = (current / norms[:, None]).astype(np.float32)
        if np.array_equal(following.view(np.uint32), current.view(np.uint32)):
            break
        current = following
    return current


class _LatentSpace:
    """Clustered vectors: wing direction + cluster + unit offset in a 48-d latent space, projected, plus noise.

    Tuned like the "moderate" set of research/perf-anchors.md §7: at 20K drawers
    the mean top-1 cosine is ~0.69, and a drawer's ten nearest neighbours share
    its wing ~98% of the time (wings correlate with clusters: the worst case for
    post-filtered search).  Sibling chunks of one file sit closest.
    """

    WING_WEIGHT, CLUSTER_WEIGHT = 0.75, 0.65
    UNIT_SCALE, ROW_SCALE, AMBIENT_SCALE = 0.55, 0.3, 0.24

    def __init__(self, seed: int, clusters: list[_Cluster], n_units: int, n_asset_units: int) -> None:
        rng = np.random.default_rng([seed, _STREAM_SPACE])
        wing_dirs = rng.standard_normal((len(WINGS), _LATENT))
        own = rng.standard_normal((len(clusters), _LATENT))
        wing_of = np.array([WING_NAMES.index(c.wing) for c in clusters])
        self.centers = self.WING_WEIGHT * wing_dirs[wing_of] + self.CLUSTER_WEIGHT * own
        self.text_projection = self._projection(rng, TEXT_DIMENSION)
        self.asset_projection = self._projection(rng, ASSET_DIMENSION)
        self.unit_offsets = self.UNIT_SCALE * np.random.default_rng([seed, _STREAM_UNITS]).standard_normal((n_units, _LATENT))
        self.asset_offsets = self.UNIT_SCALE * np.random.default_rng([seed, _STREAM_ASSET_UNITS]).standard_normal(
            (max(1, n_asset_units), _LATENT)
        )
        self.seed = seed

    @staticmethod
    def _projection(rng: np.random.Generator, dimension: int) -> np.ndarray:
        """A random 48 → ``dimension`` map; its columns are nearly orthonormal (no LAPACK: see ``block``)."""
        return rng.standard_normal((_LATENT, dimension)) / math.sqrt(dimension)

    def block(self, stream: int, block_index: int, clusters: np.ndarray, offsets: np.ndarray,
              projection: np.ndarray, row_scale: float) -> np.ndarray:
        """Vectors for one block of rows; the noise comes from the block's own generator.

        The projection is summed term by term with elementwise operations, not a
        BLAS matmul, whose rounding depends on the CPU's kernels: the same seed
        then gives the same bits on every machine, not just on this one.
        """
        rng = np.random.default_rng([self.seed, stream, block_index])
        n = len(clusters)
        latent = self.centers[clusters] + offsets + row_scale * rng.standard_normal((n, _LATENT))
        dense = self.AMBIENT_SCALE * rng.standard_normal((n, projection.shape[1]))
        term = np.empty_like(dense)
        for k in range(_LATENT):
            np.multiply(latent[:, k : k + 1], projection[k], out=term)
            dense += term
        return chroma_stable(dense.astype(np.float32))


def _with_probe_components(vector: np.ndarray) -> np.ndarray:
    probe = vector.copy()
    for index, value in PROBE_COMPONENTS.items():
        probe[index] = np.float32(value)
    return chroma_stable(probe[None, :])[0]


def _resolve_vectors(mode: str, drawers: int) -> str:
    from . import minilm

    if mode not in VECTOR_MODES:
        raise PalacePgError(f"unknown vectors mode {mode!r}", f"use one of {', '.join(VECTOR_MODES)}")
    if mode == "minilm":
        if not minilm.model_available():
            raise PalacePgError(
                f"the MiniLM ONNX model is incomplete in {minilm.model_dir()} (missing {', '.join(minilm.missing_files())})",
                "run benchmarks/tools/export_minilm.py, or use vectors='synthetic'",
            )
        return "minilm"
    if mode == "auto" and drawers <= AUTO_MINILM_MAX_DRAWERS and minilm.model_available():
        return "minilm"
    return "synthetic"


# ── Chroma ──────────────────────────────────────────────────────────────────


class _Store:
    """The palace's chroma client, opened and closed the way MemPalace's backend does it."""

    def __init__(self, palace: Path) -> None:
        from mempalace.backends.chroma import ChromaBackend

        # make_client runs MemPalace's pre-open safety pass, then PersistentClient(settings=_CLIENT_SETTINGS).
        self.path = str(palace)
        self.client = ChromaBackend.make_client(self.path)
        self.max_batch = int(self.client.get_max_batch_size())

    def create(self, name: str, embedding_function: Any) -> Any:
        from mempalace.backends.chroma import _hnsw_creation_metadata

        # The same call ChromaBackend.get_collection(create=True) makes, with the function MemPalace passes.
        return self.client.create_collection(name, metadata=_hnsw_creation_metadata(None), embedding_function=embedding_function)

    def add(self, collection: Any, rows: Sequence[tuple[str, str, dict]], vectors: np.ndarray) -> None:
        """Through MemPalace's write chokepoint sanitisers, then chromadb ``add`` in allowed batches."""
        from mempalace.backends.chroma import ChromaCollection

        documents = ChromaCollection._sanitize_documents_for_chromadb([r[1] for r in rows])
        metadatas = ChromaCollection._sanitize_metadatas_for_chromadb([r[2] for r in rows])
        ids = [r[0] for r in rows]
        for start in range(0, len(rows), self.max_batch):
            stop = start + self.max_batch
            collection.add(ids=ids[start:stop], embeddings=vectors[start:stop], documents=documents[start:stop], metadatas=metadatas[start:stop])

    def close(self) -> None:
        from mempalace.backends.chroma import ChromaBackend, _close_client

        _close_client(self.client)
        # The pass every later MemPalace open runs first; on a populated palace it
        # leaves the marker files (.blob_seq_ids_migrated, .collection_type_fixed)
        # that a palace in use has.
        ChromaBackend._prepare_palace_for_open(self.path)


def _blocks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    block: list[Any] = []
    for item in items:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


# ── Knowledge graph ─────────────────────────────────────────────────────────


@dataclass
class _Entity:
    name: str
    id: str
    type: str
    properties: dict


def _entity_id(name: str) -> str:
    """``KnowledgeGraph._entity_id``: lower-case, spaces to ``_``, apostrophes dropped."""
    return name.lower().replace(" ", "_").replace("'", "")


def _entity_name(kind: str, rng: random.Random) -> str:
    if kind == "person":
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        return f"{first} {chr(65 + rng.randrange(26))}. {last}" if rng.random() < 0.5 else f"{first} {last}"
    if kind == "project":
        return f"Project {rng.choice(_ADJ)} {rng.choice(_NOUN)}" if rng.random() < 0.5 else f"{rng.choice(_NOUN)} {rng.choice(_NOUN)} {rng.randint(2, 99)}"
    if kind == "tool":
        if rng.random() < 0.5:  # lower-case and hyphenated: the id equals the name, like all-minilm-l6-v2
            return f"{rng.choice(_TOOL_PARTS)}-{rng.choice(_TOOL_PARTS)}-v{rng.randint(1, 40)}"
        return f"{rng.choice(_TOOL_PARTS).capitalize()}{rng.choice(_NOUN)} {rng.randint(1, 9)}.{rng.randint(0, 20)}"
    if kind == "organization":
        if rng.random() < 0.5:
            return f"{rng.choice(_LAST)}'s {rng.choice(_NOUN)} {rng.choice(_ORG_SUFFIX)}"
        return f"{rng.choice(_LAST)} & {rng.choice(_LAST)} {rng.choice(_ORG_SUFFIX)}"
    if kind == "concept":
        base = rng.choice(_CONCEPTS)
        return base if rng.random() < 0.3 else f"{base} {rng.choice(_NOUN).lower()}"
    return f"{rng.choice(_ADJ)} {rng.choice(_PLACE_NOUN)} {rng.randint(1, 400)}"


def _entity_properties(kind: str, rng: random.Random) -> dict:
    roll = rng.random()
    if roll < 0.25:
        return {}
    if kind == "person":
        props: dict[str, Any] = {"role": rng.choice(("engineer", "researcher", "manager", "designer")), "since": f"20{rng.randint(15, 26)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"}
        if roll > 0.85:
            props["nickname"] = rng.choice(("Zoë ✨", "the 🦉", "O'Neil \"Bear\""))
        return props
    if kind == "tool":
        return {"version": f"{rng.randint(0, 5)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}", "license": rng.choice(("MIT", "Apache-2.0", "BSD-3-Clause"))}
    if kind == "project":
        return {"status": rng.choice(("active", "paused", "done")), "tags": rng.sample(_CONCEPTS, 2), "budget": rng.randint(1, 50) * 1000}
    return {"note": rng.choice(("imported", "mentioned in chat", "from docs")), "weight": round(rng.random(), 3)}


def _plan_entities(count: int, rng: random.Random) -> list[_Entity]:
    entities: list[_Entity] = []
    seen: set[str] = set()
    attempts = 0
    while len(entities) < count:
        kind = rng.choices(_ENTITY_TYPES, weights=_ENTITY_TYPE_WEIGHTS)[0]
        name = _entity_name(kind, rng)
        attempts += 1
        if attempts > count * 20:  # the name space is exhausted: number the names
            name = f"{name} {attempts}"
        eid = _entity_id(name)
        if eid in seen:
            continue
        seen.add(eid)
        # A tenth were first seen only as a triple's end, so they stay 'unknown' with no properties.
        implicit = rng.random() < 0.1
        entities.append(_Entity(name, eid, "unknown" if implicit else kind, {} if implicit else _entity_properties(kind, rng)))
    return entities


def _wing_entity_pools(entities: list[_Entity], rng: random.Random, drawers: int) -> dict[str, list[str]]:
    """Entity names each wing's text mentions (metadata ``entities``, closets, hallways)."""
    mentionable = [e.name for e in entities if e.type in ("person", "project", "tool", "unknown")] or [e.name for e in entities]
    size = max(6, min(len(mentionable), 8 + drawers // 400))
    return {wing: rng.sample(mentionable, min(size, len(mentionable))) for wing in WING_NAMES}


class _KgClock:
    """The moments KG rows are recorded at: increasing, seeded, never the wall clock."""

    def __init__(self, rng: random.Random, start: datetime, mean_gap: float = 300.0) -> None:
        self.rng = rng
        self.moment = start
        self.max_gap = max(2, int(2 * mean_gap))

    def tick(self) -> datetime:
        self.moment += timedelta(seconds=self.rng.randint(1, self.max_gap), microseconds=self.rng.randint(1, 999_999))
        return self.moment


def _sql_stamp(moment: datetime) -> str:
    """The text sqlite's CURRENT_TIMESTAMP default writes."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _date(rng: random.Random, low: datetime, high: datetime) -> datetime:
    return low + timedelta(seconds=rng.randint(0, int((high - low).total_seconds())))


def _bound(moment: datetime, date_only: bool) -> str:
    return moment.strftime("%Y-%m-%d") if date_only else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _KgPlan:
    entities: list[_Entity]
    bulk_entities: list[_Entity]
    class_entities: list[_Entity]
    implicit_entities: list[_Entity]
    triples: list[tuple]  # full rows of the triples table
    class_triples: list[dict]  # kwargs for KnowledgeGraph.add_triple
    invalidations: list[tuple[tuple[str, str, str], str]]
    supersessions: list[dict]


class _TripleFactory:
    """Random but valid triples: typed ends, ordered bounds, provenance pointing into the palace."""

    def __init__(self, rng: random.Random, entities: list[_Entity], provenance: list[tuple[str, str, str]]) -> None:
        self.rng = rng
        self.provenance = provenance
        self.by_type: dict[str, list[_Entity]] = defaultdict(list)
        for entity in entities:
            self.by_type[entity.type].append(entity)
        self.everyone = entities
        self.pools: dict[tuple[str, ...], list[_Entity]] = {}

    def ends(self) -> tuple[str, _Entity, _Entity]:
        predicate, subject_types, object_types = self.rng.choice(_PREDICATES)
        return predicate, self._pick(subject_types), self._pick(object_types)

    def _pick(self, types: tuple[str, ...]) -> _Entity:
        pool = self.pools.get(types)
        if pool is None:
            pool = [e for t in types for e in self.by_type.get(t, ())] or self.by_type.get("unknown") or self.everyone
            self.pools[types] = pool
        return self.rng.choice(pool)

    def bounds(self) -> tuple[str | None, str | None]:
        rng = self.rng
        roll = rng.random()
        start_moment = _date(rng, datetime(2019, 1, 1), datetime(2026, 6, 30))
        valid_from = None if roll < 0.15 else _bound(start_moment, date_only=roll < 0.7)
        valid_to = None
        if rng.random() < 0.18:
            end_moment = start_moment + timedelta(days=rng.randint(1, 900), seconds=rng.randint(0, 86_399))
            valid_to = _bound(end_moment, date_only=rng.random() < 0.5)
        return valid_from, valid_to

    def confidence(self) -> float:
        return 1.0 if self.rng.random() < 0.6 else round(self.rng.uniform(0.5, 0.99), 2)

    def sources(self) -> dict[str, str | None]:
        rng = self.rng
        drawer_id, source_file, closet_id = rng.choice(self.provenance) if self.provenance else (None, None, None)
        return {
            "source_closet": closet_id if rng.random() < 0.25 else None,
            "source_file": source_file if rng.random() < 0.4 else None,
            "source_drawer_id": drawer_id if rng.random() < 0.3 else None,
            "adapter_name": rng.choice(_ADAPTERS) if rng.random() < 0.3 else None,
        }


def _plan_kg(seed: int, entities: list[_Entity], triples: int, provenance: list[tuple[str, str, str]]) -> _KgPlan:
    """Every KG row, decided up front: the bulk rows in full, the class part as method arguments.

    Counts come out exact: no triple repeats an open (subject, predicate, object),
    which ``add_triple``/``supersede`` would answer with the existing id instead
    of a new row, and every entity is written once, by exactly one path.
    """
    rng = random.Random(_sub_seed(seed, _STREAM_KG))
    n_class = min(300, triples // 3)
    n_supersede = min(20, triples // 10)
    n_invalidate = min(20, triples // 10)
    n_bulk = triples - n_class - n_supersede
    n_class_entities = min(40, len(entities) // 4)
    n_implicit = min(5, n_class_entities, n_class)
    cut = len(entities) - n_class_entities
    bulk_entities = entities[:cut]
    class_entities = entities[cut : len(entities) - n_implicit]
    implicit_entities = entities[len(entities) - n_implicit :]

    open_facts: set[tuple[str, str, str]] = set()
    rows = _bulk_triples(rng, bulk_entities or entities, n_bulk, provenance, open_facts)
    class_triples = _class_triples(rng, entities, implicit_entities, n_class, provenance, open_facts)

    names = {e.id: e.name for e in entities}
    open_rows = [r for r in rows if r[5] is None and (r[1], r[2], r[3]) in open_facts and (r[4] or "") < "2026-07-01"]
    targets = rng.sample(open_rows, min(len(open_rows), n_supersede + n_invalidate))
    supersessions = []
    for row in targets[:n_supersede]:
        new = _fresh_object(rng, entities[: len(entities) - n_implicit] or entities, row, open_facts)
        if new is None:
            continue
        open_facts.discard((row[1], row[2], row[3]))
        supersessions.append({
            "subject": names[row[1]], "predicate": row[2], "old_obj": names[row[3]], "new_obj": new.name,
            "at": _bound(_date(rng, datetime(2026, 7, 1), datetime(2026, 10, 30)), date_only=rng.random() < 0.3),
            "confidence": 0.9, "adapter_name": rng.choice(_ADAPTERS),
        })
    invalidations = []
    for row in targets[n_supersede:]:
        open_facts.discard((row[1], row[2], row[3]))
        ended = _bound(_date(rng, datetime(2026, 7, 1), datetime(2026, 10, 30)), date_only=rng.random() < 0.5)
        invalidations.append(((names[row[1]], row[2], names[row[3]]), ended))
    if len(supersessions) < n_supersede:  # keep the triple count exact
        rows.extend(_bulk_triples(rng, bulk_entities or entities, n_supersede - len(supersessions), provenance, open_facts))
    return _KgPlan(entities, bulk_entities, class_entities, implicit_entities, rows, class_triples, invalidations, supersessions)


def _bulk_triples(rng: random.Random, entities: list[_Entity], count: int, provenance, open_facts: set) -> list[tuple]:
    """Full ``triples`` rows, ids by ``make_triple_id``; about 4% are supersede pairs sharing one boundary."""
    from mempalace.ids import make_triple_id

    factory = _TripleFactory(rng, entities, provenance)
    clock = _KgClock(rng, datetime(2026, 1, 6, 8, 0, 0), mean_gap=_PALACE_SPAN_DAYS * 86_400 / max(1, count))
    rows: list[tuple] = []
    attempts = 0
    while len(rows) < count:
        attempts += 1
        predicate, subject, obj = factory.ends()
        valid_from, valid_to = factory.bounds()
        if (subject.id, predicate, obj.id) in open_facts and attempts < count * 50:
            continue
        successor = None
        if valid_to is None and len(rows) + 1 < count and rng.random() < 0.04:
            _, _, new_obj = factory.ends()
            if new_obj.id != obj.id and (subject.id, predicate, new_obj.id) not in open_facts:
                valid_to = _bound(_date(rng, datetime(2026, 7, 1), datetime(2026, 10, 30)), date_only=False)
                successor = new_obj
        moment = clock.tick()
        rows.append((make_triple_id(subject.id, predicate, obj.id, valid_from, _iso(moment)), subject.id, predicate, obj.id,
                     valid_from, valid_to, factory.confidence(), *factory.sources().values(), _sql_stamp(moment)))
        if valid_to is None:
            open_facts.add((subject.id, predicate, obj.id))
        if successor is not None:
            moment = clock.tick()
            rows.append((make_triple_id(subject.id, predicate, successor.id, valid_to, _iso(moment)), subject.id, predicate,
                         successor.id, valid_to, None, factory.confidence(), *factory.sources().values(), _sql_stamp(moment)))
            open_facts.add((subject.id, predicate, successor.id))
    return rows


def _class_triples(rng: random.Random, entities: list[_Entity], implicit: list[_Entity], count: int, provenance,
                   open_facts: set) -> list[dict]:
    """``add_triple`` arguments: display names (the class derives ids), some predicates with spaces."""
    factory = _TripleFactory(rng, entities[: len(entities) - len(implicit)] or entities, provenance)
    calls = []
    while len(calls) < count:
        predicate, subject, obj = factory.ends()
        if len(calls) < len(implicit):
            obj = implicit[len(calls)]  # first seen here: add_triple creates it as 'unknown'
        key = (subject.id, predicate, obj.id)
        if key in open_facts:
            continue
        valid_from, valid_to = factory.bounds()
        if valid_to is None:
            open_facts.add(key)
        calls.append({
            "subject": subject.name, "predicate": predicate.replace("_", " ") if len(calls) % 7 == 0 else predicate,
            "obj": obj.name, "valid_from": valid_from, "valid_to": valid_to, "confidence": factory.confidence(),
            **factory.sources(),
        })
    return calls


def _fresh_object(rng: random.Random, entities: list[_Entity], row: tuple, open_facts: set) -> _Entity | None:
    for _ in range(50):
        candidate = rng.choice(entities)
        if candidate.id != row[3] and (row[1], row[2], candidate.id) not in open_facts:
            open_facts.add((row[1], row[2], candidate.id))
            return candidate
    return None


@contextlib.contextmanager
def _kg_wall_clock(clock: _KgClock) -> Iterator[None]:
    """Give ``mempalace.knowledge_graph`` the seeded clock instead of ``datetime.now()``.

    ``add_triple``/``supersede`` hash ``datetime.now().isoformat()`` into the triple
    id; without this the ids would change on every run.  Restored on exit.
    """
    import mempalace.knowledge_graph as kg_module

    real = kg_module.datetime

    class _SeededDatetime(real):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001 - datetime's own signature
            moment = clock.moment
            return real(*moment.timetuple()[:6], moment.microsecond, tzinfo=tz)

    kg_module.datetime = _SeededDatetime
    try:
        yield
    finally:
        kg_module.datetime = real


_ENTITY_INSERT = "INSERT INTO entities (id, name, type, properties, created_at) VALUES (?, ?, ?, ?, ?)"
_TRIPLE_INSERT = (
    "INSERT INTO triples (id, subject, predicate, object, valid_from, valid_to, confidence, source_closet, "
    "source_file, source_drawer_id, adapter_name, extracted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _write_kg(palace: Path, plan: _KgPlan, seed: int) -> dict:
    """Build the KG in a staging folder, then copy it while still open so it lands as MemPalace leaves it.

    KnowledgeGraph opens the file in WAL mode and a closing connection checkpoints
    and deletes the ``-wal``.  A palace in use keeps its latest facts only in the
    ``-wal`` (research/mempalace.md §9), so the files are copied after the last
    commit and before any close: bulk history in the main file, the recent writes
    made through the class in the WAL.
    """
    from mempalace.knowledge_graph import KnowledgeGraph

    staging = palace / ".kg-staging"
    staging.mkdir()
    staged = staging / KG_FILENAME
    rng = random.Random(_sub_seed(seed, "kg-clock"))
    clock = _KgClock(rng, datetime(2026, 11, 1, 9, 0, 0))
    kg = KnowledgeGraph(str(staged))
    bulk = sqlite3.connect(str(staged))
    try:
        first_seen = datetime(2026, 1, 6, 7, 0, 0)
        with bulk:
            bulk.executemany(_ENTITY_INSERT, [
                (e.id, e.name, e.type, json.dumps(e.properties), _sql_stamp(first_seen + timedelta(seconds=41 * i)))
                for i, e in enumerate(plan.bulk_entities)
            ])
            bulk.executemany(_TRIPLE_INSERT, plan.triples)
        bulk.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # history is in the main file, as after MemPalace's autocheckpoints
        stamps = _write_kg_through_class(kg, plan, clock)
        with bulk:
            bulk.executemany("UPDATE entities SET created_at = ? WHERE id = ?", stamps["entities"])
            bulk.executemany("UPDATE triples SET extracted_at = ? WHERE id = ?", stamps["triples"])
        stats = kg.stats()
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{staged}{suffix}")
            if source.exists():
                shutil.copyfile(source, palace / f"{KG_FILENAME}{suffix}")
    finally:
        bulk.close()
        kg.close()
        shutil.rmtree(staging, ignore_errors=True)
    return stats | {"written_by_class": stamps["counts"]}


def _write_kg_through_class(kg: Any, plan: _KgPlan, clock: _KgClock) -> dict:
    """Entities, triples, invalidations and supersessions through KnowledgeGraph's own methods."""
    entity_stamps: list[tuple[str, str]] = []
    triple_stamps: list[tuple[str, str]] = []
    seen_entities = {e.id for e in plan.bulk_entities}
    with _kg_wall_clock(clock):
        for entity in plan.class_entities:
            moment = clock.tick()
            kg.add_entity(entity.name, entity.type, entity.properties)
            entity_stamps.append((_sql_stamp(moment), entity.id))
            seen_entities.add(entity.id)
        for kwargs in plan.class_triples:
            moment = clock.tick()
            triple_id = kg.add_triple(**kwargs)
            triple_stamps.append((_sql_stamp(moment), triple_id))
            for name in (kwargs["subject"], kwargs["obj"]):
                if _entity_id(name) not in seen_entities:
                    entity_stamps.append((_sql_stamp(moment), _entity_id(name)))
                    seen_entities.add(_entity_id(name))
        for (subject, predicate, obj), ended in plan.invalidations:
            clock.tick()
            kg.invalidate(subject, predicate, obj, ended=ended)
        for kwargs in plan.supersessions:
            moment = clock.tick()
            triple_id = kg.supersede(**kwargs)
            triple_stamps.append((_sql_stamp(moment), triple_id))
            if _entity_id(kwargs["new_obj"]) not in seen_entities:
                entity_stamps.append((_sql_stamp(moment), _entity_id(kwargs["new_obj"])))
                seen_entities.add(_entity_id(kwargs["new_obj"]))
    counts = {
        "entities": len(entity_stamps),
        "add_triple": len(plan.class_triples),
        "invalidate": len(plan.invalidations),
        "supersede": len(plan.supersessions),
    }
    return {"entities": entity_stamps, "triples": triple_stamps, "counts": counts}


# ── Sidecars: embedder identity, corpus origin, hallways, tunnels ───────────


def _write_embedder_sidecar(palace: Path, asset_identity: str | None) -> Path:
    from mempalace.backends._sidecar import EMBEDDER_SIDECAR_FILENAME, write_embedder_sidecar
    from mempalace.backends.base import EmbedderIdentity

    path = palace / EMBEDDER_SIDECAR_FILENAME
    # What _enforce_embedder_identity records for a brand-new collection: the model name, dimension 0.
    write_embedder_sidecar(str(path), DRAWERS, EmbedderIdentity(model_name="minilm", dimension=0))
    write_embedder_sidecar(str(path), CLOSETS, EmbedderIdentity(model_name="minilm", dimension=0))
    if asset_identity:
        write_embedder_sidecar(str(path), ASSETS, EmbedderIdentity(model_name=asset_identity, dimension=0))
    return path


def _write_origin(palace: Path, samples: list[str]) -> Path:
    """``<palace>/.mempalace/origin.json`` as ``mempalace init`` writes it (tier-1 heuristic only)."""
    from mempalace.corpus_origin import detect_origin_heuristic

    wrapped = {
        "schema_version": 1,
        "detected_at": datetime(2026, 1, 5, 8, 59, 30, 123456, tzinfo=timezone.utc).isoformat(),
        "result": detect_origin_heuristic(samples or ["notes"]).to_dict(),
    }
    path = palace / ".mempalace" / "origin.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(wrapped, handle, indent=2, ensure_ascii=False)
    return path


def _writes_entities(unit: _Unit) -> bool:
    """Whether the unit's drawers carry the ``entities`` metadata key (MCP, diary and sweeper rows do not)."""
    return unit.kind in ("project_chunk", "convo_exchange", "convo_general", "live_exchange") or (
        unit.kind == "tricky" and unit.tricky != "long_document"
    )


def _hallway_records(units: list[_Unit], created_at: datetime) -> list[dict]:
    """Entity pairs co-occurring in ≥2 drawers of a wing, shaped as ``compute_hallways_for_wing`` writes them."""
    from mempalace.dynamics import initialize_dynamics_fields
    from mempalace.hallways import _hallway_id

    pair_counts: dict[str, Counter] = defaultdict(Counter)
    pair_rooms: dict[tuple[str, tuple[str, str]], set[str]] = defaultdict(set)
    for unit in units:
        if unit.wing is None or not _writes_entities(unit):
            continue
        for pair in combinations(sorted(set(unit.entities)), 2):
            pair_counts[unit.wing][pair] += unit.size
            pair_rooms[(unit.wing, pair)].add(unit.room)
    records = []
    stamp = created_at.isoformat()
    for wing in sorted(pair_counts):
        for (entity_a, entity_b), count in sorted(pair_counts[wing].items()):
            if count < 2:
                continue
            rooms = sorted(pair_rooms[(wing, (entity_a, entity_b))])
            summary = ", ".join(rooms[:3]) + (f", +{len(rooms) - 3} more" if len(rooms) > 3 else "")
            record = {
                "id": _hallway_id(wing, entity_a, entity_b),
                "wing": wing,
                "entity_a": entity_a,
                "entity_b": entity_b,
                "co_occurrence_count": count,
                "rooms": rooms,
                "label": f"{entity_a} ↔ {entity_b} (co-occur in {count} drawers across {len(rooms)} room{'s' if len(rooms) != 1 else ''}: {summary})",
                "created_at": stamp,
                "created_by": "auto",
            }
            records.append(initialize_dynamics_fields(record, now=created_at))
    return records


def _tunnel_records(units: list[_Unit], clusters: list[_Cluster], rng: random.Random, created_at: datetime) -> list[dict]:
    """Explicit room-to-room tunnels (some pinned to drawers) and topic tunnels, as ``create_tunnel`` stores them."""
    from mempalace.dynamics import initialize_dynamics_fields
    from mempalace.palace_graph import _canonical_tunnel_id, topic_room

    rooms_by_wing: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for unit in units:
        if unit.kind == "project_chunk" and len(rooms_by_wing[unit.wing]) < 20:
            rooms_by_wing[unit.wing].append((unit.room, unit.drawer_ids()[0]))
    wings = [w for w in WING_NAMES if rooms_by_wing[w]]
    tunnels: dict[str, dict] = {}
    moment = created_at
    for _ in range(min(40, 4 + sum(u.size for u in units) // 2000)):
        wing_a, wing_b = rng.sample(wings, 2) if len(wings) > 1 else (wings[0], wings[0])
        (room_a, drawer_a), (room_b, drawer_b) = rng.choice(rooms_by_wing[wing_a]), rng.choice(rooms_by_wing[wing_b])
        moment += timedelta(minutes=rng.randint(5, 5000), microseconds=rng.randint(1, 999_999))
        tunnel = {
            "id": _canonical_tunnel_id(wing_a, room_a, wing_b, room_b),
            "source": {"wing": wing_a, "room": room_a},
            "target": {"wing": wing_b, "room": room_b},
            "label": f"{room_a} in {wing_a} relates to {room_b} in {wing_b}",
            "kind": "explicit",
            "created_at": moment.isoformat(),
        }
        if rng.random() < 0.4:
            tunnel["source"]["drawer_id"], tunnel["target"]["drawer_id"] = drawer_a, drawer_b
        tunnels.setdefault(tunnel["id"], initialize_dynamics_fields(tunnel, now=moment))
    shared = sorted({c.keywords[0] for c in clusters})
    for topic in shared[:6]:
        wing_a, wing_b = sorted(rng.sample(WING_NAMES, 2))
        moment += timedelta(minutes=rng.randint(5, 500))
        room = topic_room(topic)
        tunnel = {
            "id": _canonical_tunnel_id(wing_a, room, wing_b, room),
            "source": {"wing": wing_a, "room": room},
            "target": {"wing": wing_b, "room": room},
            "label": f"shared topic: {topic}",
            "kind": "topic",
            "created_at": moment.isoformat(),
        }
        tunnels.setdefault(tunnel["id"], initialize_dynamics_fields(tunnel, now=moment))
    return list(tunnels.values())


def _write_graph_sidecars(palace: Path, units: list[_Unit], clusters: list[_Cluster], seed: int) -> dict[str, int]:
    """hallways.json and tunnels.json beside the palace, through MemPalace's own savers."""
    from mempalace.config import MempalaceConfig
    from mempalace.hallways import _save_hallways
    from mempalace.palace_graph import _save_tunnels

    config = MempalaceConfig(palace_path=str(palace))  # only for the paths: dirname(palace)/{hallways,tunnels}.json
    created = datetime(2026, 11, 2, 6, 30, 0, 250000, tzinfo=timezone.utc)
    hallways = _hallway_records(units, created)
    tunnels = _tunnel_records(units, clusters, random.Random(_sub_seed(seed, "tunnels")), created)
    _save_hallways(hallways, config)
    _save_tunnels(tunnels, config)
    return {"hallways": len(hallways), "tunnels": len(tunnels)}


# ── Orchestration ───────────────────────────────────────────────────────────


def _check_destination(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PalacePgError(f"{out} exists and is not an empty folder", "generate into a new folder")
    for sidecar in ("hallways.json", "tunnels.json"):
        if (out.parent / sidecar).exists():
            raise PalacePgError(
                f"{out.parent / sidecar} already exists: hallways.json and tunnels.json sit beside the palace",
                "generate into a dedicated parent folder, e.g. <new folder>/palace",
            )


def _default_kg_sizes(drawers: int, kg_entities: int | None, kg_triples: int | None) -> tuple[int, int]:
    entities = kg_entities if kg_entities is not None else min(MAX_KG_ENTITIES, max(12, drawers // 8))
    triples = kg_triples if kg_triples is not None else min(MAX_KG_TRIPLES, max(20, round(drawers * 0.625)))
    if entities < 2 or triples < 0:
        raise PalacePgError(f"kg_entities={entities}, kg_triples={triples} cannot make a graph", "use kg_entities >= 2 and kg_triples >= 0")
    return entities, triples


class _Progress:
    def __init__(self, callback: ProgressFn | None, total: int) -> None:
        self.callback, self.total, self.done = callback, total, 0

    def advance(self, count: int) -> None:
        self.done += count
        if self.callback is not None:
            self.callback(self.done, self.total)


def make_palace(
    out: str | Path,
    drawers: int = 200,
    seed: int = 0,
    *,
    kg_entities: int | None = None,
    kg_triples: int | None = None,
    assets: bool = True,
    doc_chars: int = 800,
    progress: ProgressFn | None = None,
    vectors: str = "auto",
    long_doc_chars: int = DEFAULT_LONG_DOC_CHARS,
    scratch: str | Path | None = "auto",
) -> dict:
    """Write a MemPalace 3.11 palace of ``drawers`` drawers into the new folder ``out``; return its facts.

    ``out``'s parent receives ``hallways.json`` and ``tunnels.json`` too, so give
    each palace its own parent folder.  ``kg_entities``/``kg_triples`` default to
    ``drawers/8`` and ``drawers*0.625`` (capped at 20,000 and 100,000).
    ``doc_chars`` is MemPalace's chunk size (800).  ``vectors``: ``"synthetic"``
    (clustered), ``"minilm"`` (real embeddings; the ONNX model must already be in
    chromadb's cache) or ``"auto"`` (MiniLM when present and drawers ≤ 1,000).
    ``long_doc_chars`` sizes the one oversized document (100 KB; 1 MB works).
    ``scratch``: where the palace is built before it is copied into ``out``:
    ``"auto"`` (tmpfs ``/dev/shm`` when it has room), a folder, or ``None`` to
    build in place.  Chroma's rollback journal rewrites pages at random, so a
    160K-drawer build takes ~3.5 minutes on tmpfs against ~7 on this disk.
    ``progress(done, total)`` is called as rows are written.
    """
    if not isinstance(drawers, int) or drawers < MIN_DRAWERS:
        raise PalacePgError(f"drawers={drawers!r} is too small", f"ask for at least {MIN_DRAWERS} drawers")
    if doc_chars < 100 or long_doc_chars < doc_chars:
        raise PalacePgError("doc_chars must be >= 100 and long_doc_chars >= doc_chars", "use the defaults 800 and 100000")
    palace = Path(out).expanduser().resolve()
    _check_destination(palace)
    n_entities, n_triples = _default_kg_sizes(drawers, kg_entities, kg_triples)
    mode = _resolve_vectors(vectors, drawers)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    plan_rng = random.Random(_sub_seed(seed, _STREAM_PLAN))
    entities = _plan_entities(n_entities, plan_rng)
    clusters = _plan_clusters(drawers, plan_rng)
    units = _plan_units(drawers, plan_rng, clusters, _wing_entity_pools(entities, plan_rng, drawers))
    closets = _plan_closets(units, seed)
    asset_count = min(4000, max(3, drawers // 40)) if assets else 0
    media, asset_clusters, indexed_at = _plan_assets(asset_count, seed, clusters, units) if assets else ([], [], [])
    timings["plan_s"] = time.perf_counter() - started
    logger.info("planned %d drawers in %d units, %d closets, %d assets", drawers, len(units), len(closets), len(media))

    scratch_root = _scratch_root(scratch, drawers, long_doc_chars)
    with _build_folder(palace, scratch_root, timings) as build:
        build.mkdir(parents=True, exist_ok=True)
        os.chmod(build, 0o700)  # as ChromaBackend.get_collection(create=True) leaves a new palace
        space = _LatentSpace(seed, clusters, len(units), len(media))
        tracker = _Progress(progress, drawers + len(closets) + len(media) + n_triples)
        store = _Store(build)
        try:
            drawer_facts = _write_drawers(store, units, clusters, space, seed, doc_chars, long_doc_chars, mode, tracker, timings)
            _write_closets(store, closets, units, space, mode, tracker, timings)
            asset_identity = _write_assets(store, media, asset_clusters, indexed_at, space, tracker, timings) if assets else None
        finally:
            store.close()

        step = time.perf_counter()
        provenance = [(u.drawer_ids()[0], u.source_file, f"closet_{u.wing}_{u.room}_{_sha(u.source_file, 24)}_01")
                      for u in units if u.kind == "project_chunk"][:5000]
        kg_stats = _write_kg(build, _plan_kg(seed, entities, n_triples, provenance), seed)
        tracker.advance(n_triples)
        timings["kg_s"] = time.perf_counter() - step

        _write_embedder_sidecar(build, asset_identity)
        _write_origin(build, drawer_facts.pop("origin_samples"))
        graph = _write_graph_sidecars(build, units, clusters, seed)
    timings["total_s"] = time.perf_counter() - started
    logger.info("palace written to %s in %.1f s", palace, timings["total_s"])
    return _facts(palace, seed, mode, drawers, drawer_facts, closets, media, kg_stats, graph, timings, assets,
                  doc_chars, long_doc_chars, scratch_root)


def _scratch_root(choice: str | Path | None, drawers: int, long_doc_chars: int) -> Path | None:
    """The folder to build in: tmpfs when asked for ("auto") and roomy enough, else in place (None)."""
    if choice is None:
        return None
    if choice != "auto":
        return Path(choice)
    tmpfs = Path("/dev/shm")
    if not tmpfs.is_dir() or not os.access(tmpfs, os.W_OK):
        return None
    needed = drawers * 12_000 + 4 * long_doc_chars + 256 * 2**20  # ~10 KB a drawer measured, plus margin
    return tmpfs if shutil.disk_usage(tmpfs).free > 2 * needed else None


@contextlib.contextmanager
def _build_folder(palace: Path, scratch_root: Path | None, timings: dict) -> Iterator[Path]:
    """Yield where to write the palace; when that is scratch space, copy the result into place afterwards.

    Nothing in a palace records its own path, so a copy is the same palace.
    ``copy2`` keeps modification times, which MemPalace's HNSW staleness check reads.
    mempalace makes the folder beside a palace private (0700) when it writes
    tunnels.json there; a folder that existed before (``/tmp``, say) gets its own mode back.
    """
    parent_mode = palace.parent.stat().st_mode & 0o7777 if palace.parent.exists() else None
    try:
        if scratch_root is None:
            yield palace
            return
        scratch_root.mkdir(parents=True, exist_ok=True)
        parent = Path(tempfile.mkdtemp(prefix="palace_pg-generate-", dir=scratch_root))
        try:
            build = parent / palace.name
            yield build
            step = time.perf_counter()
            palace.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(build, palace, dirs_exist_ok=True)
            for name in ("hallways.json", "tunnels.json"):
                shutil.copy2(parent / name, palace.parent / name)
            os.chmod(palace.parent, 0o700)  # as palace_graph._save_tunnels leaves the folder beside the palace
            timings["copy_s"] = time.perf_counter() - step
        finally:
            shutil.rmtree(parent, ignore_errors=True)
    finally:
        if parent_mode is not None and palace.parent.exists():
            os.chmod(palace.parent, parent_mode)


def _drawer_rows(units: list[_Unit], writer: _RowWriter) -> Iterator[_Row]:
    for unit in units:
        yield from writer.rows(unit)


def _write_drawers(store: _Store, units, clusters, space: _LatentSpace, seed: int, doc_chars: int,
                   long_doc_chars: int, mode: str, tracker: _Progress, timings: dict) -> dict:
    step = time.perf_counter()
    collection = store.create(DRAWERS, _minilm_function())
    writer = _RowWriter(seed, clusters, doc_chars, long_doc_chars)
    embed = _minilm_embedder() if mode == "minilm" else None
    kinds: Counter = Counter()
    wings: Counter = Counter()
    tricky: dict[str, str] = {}
    probe: dict[str, Any] = {}
    samples: list[str] = []
    kind_of = {u.index: (u.kind, u.tricky) for u in units}
    for block_index, rows in enumerate(_blocks(_drawer_rows(units, writer), _VECTOR_BLOCK)):
        if embed is not None:
            vectors = chroma_stable(embed([r.document for r in rows]))
        else:
            cluster_ids = np.array([r.cluster for r in rows])
            offsets = space.unit_offsets[[r.unit for r in rows]]
            vectors = space.block(_STREAM_NOISE, block_index, cluster_ids, offsets, space.text_projection, space.ROW_SCALE)
        for position, row in enumerate(rows):
            kind, tricky_name = kind_of[row.unit]
            kinds[kind if kind != "tricky" else f"tricky:{tricky_name}"] += 1
            wings[row.metadata.get("wing")] += 1
            if tricky_name:
                tricky[tricky_name] = row.id
            if row.probe:
                vectors[position] = _with_probe_components(vectors[position])
                probe = {"id": row.id, "components": {str(i): int(vectors[position][i].view(np.uint32)) for i in PROBE_COMPONENTS}}
            if kind in ("convo_exchange", "live_exchange") and len(samples) < 20:
                samples.append(row.document)
        store.add(collection, [(r.id, r.document, r.metadata) for r in rows], vectors)
        tracker.advance(len(rows))
        logger.debug("drawers: %d written", tracker.done)
    timings["drawers_s"] = time.perf_counter() - step
    return {"kinds": dict(sorted(kinds.items())), "wings": wings, "tricky": tricky, "probe": probe, "origin_samples": samples}


def _write_closets(store: _Store, closets, units: list[_Unit], space: _LatentSpace, mode: str, tracker: _Progress, timings: dict) -> None:
    step = time.perf_counter()
    collection = store.create(CLOSETS, _minilm_function())
    cluster_of = {u.index: u.cluster for u in units}
    embed = _minilm_embedder() if mode == "minilm" else None
    for block_index, rows in enumerate(_blocks(closets, _VECTOR_BLOCK)):
        if embed is not None:
            vectors = chroma_stable(embed([r[1] for r in rows]))
        else:
            unit_ids = [r[3] for r in rows]
            vectors = space.block(_STREAM_CLOSET_NOISE, block_index, np.array([cluster_of[u] for u in unit_ids]),
                                  space.unit_offsets[unit_ids], space.text_projection, space.ROW_SCALE / 2)
        store.add(collection, [r[:3] for r in rows], vectors)
        tracker.advance(len(rows))
    timings["closets_s"] = time.perf_counter() - step


def _write_assets(store: _Store, media, asset_clusters, indexed_at, space: _LatentSpace, tracker: _Progress, timings: dict) -> str:
    step = time.perf_counter()
    function = _gemma_function()
    collection = store.create(ASSETS, function)
    rows = [_asset_row(asset, moment, function.identity) for asset, moment in zip(media, indexed_at)]
    for block_index, start in enumerate(range(0, len(rows), _VECTOR_BLOCK)):
        block = rows[start : start + _VECTOR_BLOCK]
        index = np.arange(start, start + len(block))
        vectors = space.block(_STREAM_ASSET_NOISE, block_index, np.array(asset_clusters)[index], space.asset_offsets[index],
                              space.asset_projection, space.ROW_SCALE)
        store.add(collection, block, vectors)
        tracker.advance(len(block))
    timings["assets_s"] = time.perf_counter() - step
    return function.identity


def _minilm_function() -> Any:
    """The function MemPalace passes for drawers and closets under its default config (name "default").

    Built lazily by chromadb: creating the collection never loads or downloads the model.
    """
    from mempalace.embedding import get_embedding_function

    return get_embedding_function(model="minilm", device="auto")


def _minilm_embedder() -> Callable[[list[str]], np.ndarray]:
    from . import minilm

    function = minilm.embedding_function()
    return lambda texts: minilm.embed(texts, function)


def _facts(palace: Path, seed: int, mode: str, drawers: int, drawer_facts: dict, closets, media, kg_stats: dict,
           graph: dict, timings: dict, assets: bool, doc_chars: int, long_doc_chars: int, scratch_root: Path | None) -> dict:
    import chromadb
    import mempalace
    from mempalace.backends._sidecar import EMBEDDER_SIDECAR_FILENAME

    wings = drawer_facts["wings"]
    collections = {DRAWERS: drawers, CLOSETS: len(closets)}
    if assets:
        collections[ASSETS] = len(media)
    return {
        "palace": str(palace),
        "parent": str(palace.parent),
        "kg_path": str(palace / KG_FILENAME),
        "embedder_sidecar": str(palace / EMBEDDER_SIDECAR_FILENAME),
        "origin_path": str(palace / ".mempalace" / "origin.json"),
        "hallways_path": str(palace.parent / "hallways.json"),
        "tunnels_path": str(palace.parent / "tunnels.json"),
        "seed": seed,
        "vectors": "minilm" if mode == "minilm" else "synthetic-clustered",
        "asset_vectors": "synthetic-clustered",
        "dimension": TEXT_DIMENSION,
        "asset_dimension": ASSET_DIMENSION if assets else None,
        "collections": collections,
        "kinds": drawer_facts["kinds"],
        "wings": {name: wings.get(name, 0) for name in WING_NAMES},
        "wing_shares": dict(zip(WING_NAMES, WING_SHARES)),
        "drawers_without_wing": wings.get(None, 0),
        "kg": {
            "entities": kg_stats["entities"],
            "triples": kg_stats["triples"],
            "current_facts": kg_stats["current_facts"],
            "expired_facts": kg_stats["expired_facts"],
            "relationship_types": kg_stats["relationship_types"],
            "written_by_class": kg_stats["written_by_class"],
            "journal_mode": "wal",
        },
        "hallways": graph["hallways"],
        "tunnels": graph["tunnels"],
        "tricky": drawer_facts["tricky"],
        "probe_vector": drawer_facts["probe"],
        "doc_chars": doc_chars,
        "long_doc_chars": long_doc_chars,
        "built_in": str(scratch_root) if scratch_root else "place",
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "versions": {"mempalace": mempalace.__version__, "chromadb": chromadb.__version__},
    }
