"""``make_text_palace``: a MemPalace palace mined from real local text, with real all-MiniLM-L6-v2 vectors.

Each file goes through MemPalace's own miner pieces, in the order its
``process_file`` calls them: ``chunk_text`` (800 characters, 100 overlap, 50
minimum), ``make_drawer_id_from_chunk``, ``_build_drawer_metadata`` (hall,
entities, content date, line span, ``chunk_total``, ``source_mtime``,
``source_dir_ino``), then ``build_closet_lines`` and ``upsert_closet_lines``
for the file's closets.  Only the embedding differs: texts are embedded at
their own token length (:mod:`.embedder`), which MemPalace's function is
checked against on a sample before anything is written.

Wings are the source trees of :mod:`.corpus` (``python_stdlib``,
``man_pages``, ``debian_docs``, ``python_packages``), each filled to its share
of ``drawers`` with whole files in a seeded order; rooms come from the tree
(man section, top-level package, kind of doc file).  A file is never cut, so
the palace holds ``drawers`` drawers or a few more.  The palace also gets
MemPalace's sidecars (embedder identity, corpus origin) and a small knowledge
graph (wing → room facts) written through :class:`KnowledgeGraph`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from ..errors import PalacePgError
from ..synth.closets import _ClosetCapture
from ..synth.spec import CLOSETS, DRAWERS, KG_FILENAME, Progress, ProgressFn
from ..synth.store import Store
from ..synth.vectors import chroma_stable, minilm_function
from . import corpus
from .embedder import LengthBatchedMiniLM

log = logging.getLogger(__name__)

AGENT = "mempalace"
#: Drawers embedded and written per round (whole files' chunks): also how finely ``embed_budget_s`` is checked.
WRITE_BLOCK = 128
#: Chunks compared with MemPalace's own embedding function before the build.
CHECK_SAMPLE = 24


def mine_file(item: corpus.SourceFile, text: str) -> tuple[list[tuple[str, str, dict]], list[tuple[str, str, dict]]]:
    """A file's drawer rows and closet rows, exactly as MemPalace's ``process_file`` builds them."""
    from mempalace.ids import make_drawer_id_from_chunk
    from mempalace.miner import (
        MIN_CHUNK_SIZE,
        _build_drawer_metadata,
        _extract_content_date_with_source,
        _extract_entities_for_metadata,
        chunk_text,
    )
    from mempalace.palace import (
        NORMALIZE_VERSION,
        build_closet_lines,
        upsert_closet_lines,
    )
    from mempalace.source_identity import source_directory_identity

    content = text.strip()
    if len(content) < MIN_CHUNK_SIZE:
        return [], []
    source_file = str(item.path)
    chunks = chunk_text(content, source_file)
    if not chunks:
        return [], []
    mtime = item.path.stat().st_mtime
    content_date, content_date_source = _extract_content_date_with_source(source_file, content)
    dir_ino = source_directory_identity(item.path)
    drawers = []
    for chunk in chunks:
        metadata = _build_drawer_metadata(
            item.wing, item.room, source_file, chunk["chunk_index"], AGENT, chunk["content"], mtime,
            line_start=chunk.get("line_start"), line_end=chunk.get("line_end"), content_date=content_date,
            chunk_total=len(chunks), content_date_source=content_date_source, source_dir_ino=dir_ino)
        drawers.append((make_drawer_id_from_chunk(item.wing, item.room, source_file, chunk["chunk_index"]),
                        chunk["content"], metadata))
    lines = build_closet_lines(source_file, [d[0] for d in drawers], content, item.wing, item.room,
                               drawer_metas=[d[2] for d in drawers])
    closet_meta = {"wing": item.wing, "room": item.room, "source_file": source_file, "drawer_count": len(drawers),
                   "filed_at": datetime.now().isoformat(), "normalize_version": NORMALIZE_VERSION}
    entities = _extract_entities_for_metadata(content)
    if entities:
        closet_meta["entities"] = entities
    capture = _ClosetCapture()
    base = f"closet_{item.wing}_{item.room}_{hashlib.sha256(source_file.encode()).hexdigest()[:24]}"
    upsert_closet_lines(capture, base, lines, closet_meta)
    return drawers, capture.rows


def plan_files(drawers: int, seed: int, sources=corpus.SOURCES) -> Iterator[tuple[list, list]]:
    """Mined files, wing by wing in turn, until every wing has its share of ``drawers``."""
    total_share = sum(s.share for s in sources)
    quota = {s.wing: max(1, round(drawers * s.share / total_share)) for s in sources}
    streams = {s.wing: corpus.shuffled(s, seed) for s in sources}
    filled: Counter = Counter()
    while streams:
        for wing in list(streams):
            if filled[wing] >= quota[wing]:
                del streams[wing]
                continue
            try:
                item, text = next(streams[wing])
            except StopIteration:
                log.warning("wing %s ran out of files at %d of %d drawers", wing, filled[wing], quota[wing])
                del streams[wing]
                continue
            rows, closets = mine_file(item, text)
            if rows and len(rows) <= max(50, quota[wing] // 4):  # one huge file would be a wing of its own
                filled[wing] += len(rows)
                yield rows, closets


def _blocks(plan: Iterator[tuple[list, list]], size: int) -> Iterator[tuple[list, list]]:
    drawers, closets = [], []
    for rows, closet_rows in plan:
        drawers += rows
        closets += closet_rows
        if len(drawers) >= size:
            yield drawers, closets
            drawers, closets = [], []
    if drawers:
        yield drawers, closets


def _write_kg(palace: Path, wings_rooms: dict[str, Counter]) -> dict:
    from mempalace.knowledge_graph import KnowledgeGraph

    kg = KnowledgeGraph(str(palace / KG_FILENAME))
    try:
        triples = 0
        for wing, rooms in sorted(wings_rooms.items()):
            kg.add_entity(wing, "wing")
            for room, count in sorted(rooms.items()):
                kg.add_triple(wing, "has_room", room)
                triples += 1
        return kg.stats()
    finally:
        kg.close()


def _write_sidecars(palace: Path, samples: list[str]) -> None:
    from ..synth.sidecars import write_embedder_sidecar, write_origin

    write_embedder_sidecar(palace, None)
    write_origin(palace, samples)


def make_text_palace(out: str | Path, drawers: int = 2000, seed: int = 0, *, progress: ProgressFn | None = None,
                     sources=corpus.SOURCES, threads: int | None = None, embed_budget_s: float | None = None) -> dict:
    """Mine about ``drawers`` drawers of this machine's own text into the new folder ``out``; return its facts.

    ``embed_budget_s``: stop taking new files once embedding has taken this
    long (the machine is shared, so the rate is not known in advance); the
    facts then say ``"stopped_by": "embed_budget"`` and how many drawers it holds.
    """
    from ..synth.build import _check_destination

    if drawers < 50:
        raise PalacePgError(f"drawers={drawers} is too small", "ask for at least 50 drawers")
    palace = Path(out).expanduser().resolve()
    _check_destination(palace)
    embed = LengthBatchedMiniLM(threads=threads)
    started = time.perf_counter()
    tracker = Progress(progress, drawers)
    palace.mkdir(parents=True, exist_ok=True)
    os.chmod(palace, 0o700)
    store = Store(palace)
    wings_rooms: dict[str, Counter] = {}
    counts = Counter()
    embed_s = 0.0
    min_cosine = None
    samples: list[str] = []
    try:
        drawer_col = store.create(DRAWERS, minilm_function())
        closet_col = store.create(CLOSETS, minilm_function())
        tracker.begin("drawers")
        for rows, closet_rows in _blocks(plan_files(drawers, seed, sources), WRITE_BLOCK):
            if min_cosine is None:  # before the first write: the vectors must be MemPalace's
                min_cosine = embed.check_against([r[1] for r in rows[:: max(1, len(rows) // CHECK_SAMPLE)]][:CHECK_SAMPLE])
            t = time.perf_counter()
            vectors = chroma_stable(embed([r[1] for r in rows]))
            closet_vectors = chroma_stable(embed([r[1] for r in closet_rows])) if closet_rows else None
            embed_s += time.perf_counter() - t
            store.add(drawer_col, rows, vectors)
            if closet_rows:
                store.add(closet_col, closet_rows, closet_vectors)
            for _, document, meta in rows:
                wings_rooms.setdefault(meta["wing"], Counter())[meta["room"]] += 1
                if len(samples) < 20:
                    samples.append(document)
            counts["drawers"] += len(rows)
            counts["closets"] += len(closet_rows)
            counts["files"] += len({r[2]["source_file"] for r in rows})
            tracker.advance(len(rows))
            if embed_budget_s is not None and embed_s >= embed_budget_s:
                log.info("embedding budget of %.0f s spent at %d drawers", embed_budget_s, counts["drawers"])
                counts["stopped_by_budget"] = 1
                break
    finally:
        store.close()
    kg = _write_kg(palace, wings_rooms)
    _write_sidecars(palace, samples)
    total_s = time.perf_counter() - started
    embedded = counts["drawers"] + counts["closets"]
    return {
        "palace": str(palace),
        "text": "local",
        "vectors": "minilm",
        "embedding": {"method": "onnx, length-batched (no padding to 256)", "model_dir": str(embed.folder),
                      "check_min_cosine_vs_mempalace": round(min_cosine or 0.0, 7), "check_sample": CHECK_SAMPLE,
                      "texts": embedded, "tokens": embed.tokens_seen, "seconds": round(embed_s, 1),
                      "texts_per_s": round(embedded / embed_s, 2) if embed_s else None,
                      "load_average": [round(x, 2) for x in os.getloadavg()]},
        "collections": {DRAWERS: counts["drawers"], CLOSETS: counts["closets"]},
        "files": counts["files"],
        "wings": {w: sum(r.values()) for w, r in sorted(wings_rooms.items())},
        "rooms": {w: dict(sorted(r.items())) for w, r in sorted(wings_rooms.items())},
        "kg": {k: kg[k] for k in ("entities", "triples") if k in kg},
        "seed": seed,
        "drawers_asked": drawers,
        "stopped_by": "embed_budget" if counts["stopped_by_budget"] else "drawers",
        "timings": {"total_s": round(total_s, 1), "embed_s": round(embed_s, 1)},
    }
