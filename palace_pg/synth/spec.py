"""What a generated palace contains: collection names, sizes, the wing-share table, row kinds, the tricky rows;
and the small seeded helpers every part of the generator shares.
"""

from __future__ import annotations

import hashlib
import math
import random
from datetime import datetime
from typing import Callable, Sequence

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

LATENT = 48
VECTOR_BLOCK = 4096  # rows per noise block; the vectors do not depend on the write batch size
EPOCH = datetime(2026, 1, 5, 9, 0, 0)  # the palace's first write (naive local time, like MemPalace)
PALACE_SPAN_DAYS = 300

STREAM_PLAN, STREAM_UNITS, STREAM_NOISE, STREAM_SPACE, STREAM_KG = 1, 2, 3, 4, 5
STREAM_CLOSET_NOISE, STREAM_ASSET_NOISE, STREAM_ASSET_UNITS, STREAM_TEXT = 6, 7, 8, 9

def sha(text: str, length: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def sub_seed(seed: int, *parts: object) -> int:
    """A 64-bit seed derived from ``seed`` and ``parts`` (stable across processes and platforms)."""
    return int(sha(":".join(map(str, (seed, *parts))), 16), 16)


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder, ties to the lower index)."""
    weight_sum = float(sum(weights))
    raw = [total * w / weight_sum for w in weights]
    parts = [math.floor(r) for r in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (-(raw[i] - parts[i]), i))
    for i in by_remainder[: total - sum(parts)]:
        parts[i] += 1
    return parts


def split_sizes(total: int, low: int, high: int, rng: random.Random) -> list[int]:
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


def iso(moment: datetime) -> str:
    """``datetime.now().isoformat()`` as MemPalace writes it (the fraction is omitted when zero)."""
    return moment.isoformat()


def inode_for(directory: str) -> str:
    """A stable stand-in for ``source_dir_ino`` (the inode of the file's directory, as text)."""
    return str(1_000_000 + int(sha(directory, 8), 16) % 90_000_000)


#: ``progress(stage, done, total)``: ``stage`` names what is being written now ("drawers",
#: "closets", "assets", "kg"); ``done`` and ``total`` count the rows of all stages together
#: (KG triples for "kg"), and ``total`` is the same from the first call to the last.
ProgressFn = Callable[[str, int, int], None]


class Progress:
    """Counts written rows across the stages and reports them to a :data:`ProgressFn`."""

    def __init__(self, callback: ProgressFn | None, total: int) -> None:
        self.callback, self.total, self.done, self.stage = callback, total, 0, ""

    def begin(self, stage: str) -> None:
        self.stage = stage
        self._report()

    def advance(self, count: int) -> None:
        self.done += count
        self._report()

    def _report(self) -> None:
        if self.callback is not None:
            self.callback(self.stage, self.done, self.total)
