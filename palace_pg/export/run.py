"""``export_palace``: write the palace a target database holds as a MemPalace 3.11 Chroma palace.

The palace is built in ``OUT.partial`` (a folder holding this module's claim
file, so a rerun after a crash may remove it and start again) and renamed to
``OUT`` only once the read-back verification passed; ``OUT`` itself is never
overwritten.  Files beside the palace (hallways.json, tunnels.json) are written
after the rename, and only where none exist.

Rows the database cannot hand back as MemPalace wrote them are said so, never
guessed: a row without an embedding refuses the export before anything is
written (Chroma holds no row without a vector); rows the migration kept in
``mempalace.rejects`` (NUL in text, NaN vectors: never in any table, so
MemPalace on PostgreSQL never saw them) are not exported, counted in the
summary's ``rejected_rows_not_exported`` and logged; the pre-cutover backup
still holds them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from ..errors import PalacePgError
from ..phases.base import ProgressEvent
from .chroma_out import ChromaPalaceWriter, embedding_function_for
from .files_out import write_beside, write_inside
from .kg_out import write_kg
from .snapshot import TargetSnapshot
from .verify import CHROMADB_SAMPLE, Expected, ExpectedCollection, check_palace

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
CLAIM = ".palace_pg-export-in-progress"


def _prepare_partial(out: Path) -> Path:
    if out.exists():
        raise PalacePgError(f"{out} already exists; an export never overwrites a folder",
                            "pass a new --to path, or move the existing folder away first")
    if not out.parent.is_dir():
        raise PalacePgError(f"{out.parent} does not exist", "create the parent folder first")
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    if partial.exists():
        if not (partial / CLAIM).is_file():
            raise PalacePgError(f"{partial} exists and was not made by an export",
                                "move it away; the export builds its palace there")
        log.info("removing the unfinished export at %s", partial)
        shutil.rmtree(partial)
    partial.mkdir(mode=0o700)  # as ChromaBackend.get_collection(create=True) leaves a new palace
    (partial / CLAIM).write_text(dt.datetime.now(dt.timezone.utc).isoformat())
    return partial


def export_palace(dsn: str | None, out: str | os.PathLike, *, progress: Callable[[ProgressEvent], None] | None = None,
                  verify: bool = True, strict_vectors: bool = False, store_factory=None,
                  chromadb_sample: int | None = CHROMADB_SAMPLE) -> dict:
    """Export the target's palace to ``out`` and verify it; returns a summary.

    ``chromadb_sample``: rows per collection the read-back through chromadb compares in full
    besides every id (None: every row; the direct read-back always compares every row).
    ``strict_vectors``: fail on vectors Chroma renormalises (see ``verify``), not only report them.
    """
    started = time.monotonic()
    emit = _safe(progress)
    out = Path(out).expanduser().resolve()
    timings: dict[str, float] = {}
    clock = _Clock()
    with TargetSnapshot.open(dsn, store_factory=store_factory) as snap:
        source_db = snap.conn.info.dsn
        collections = snap.collections()
        _refuse_null_embeddings(snap, collections)
        partial = _prepare_partial(out)
        embedder = snap.meta("embedder") or {}
        expected = Expected(files=snap.files())
        rejected = snap.rejected()
        if rejected:  # rows PostgreSQL could not hold (NUL in text, NaN vectors, ...): never in any table
            log.warning("%d row(s) kept in mempalace.rejects are not exported (%s); the source palace held them, "
                        "its pre-cutover backup still does", sum(rejected.values()), rejected)
        writer = ChromaPalaceWriter(partial)
        try:
            for coll in collections:
                exp = expected.collections[coll.name] = ExpectedCollection(coll)
                identity = embedder.get(coll.name) or {}
                chroma = writer.create(coll.name, coll.metadata,
                                       embedding_function_for(identity.get("model_name"), coll.dimension))
                done = 0
                emit(ProgressEvent("export", coll.name, 0, coll.count))
                pages = snap.pages(coll, page=writer.max_batch)
                while (page := clock.timed("read_postgres_s", next, pages, None)) is not None:
                    written = clock.timed("digests_s", exp.add_page, page.ids, page.documents, page.metadatas,
                                          page.embeddings, strict_vectors=strict_vectors)
                    clock.timed("chromadb_add_s", writer.add, chroma, page.ids, page.documents, page.metadatas,
                                written)
                    done += len(page.ids)
                    emit(ProgressEvent("export", coll.name, done, coll.count))
        finally:
            clock.timed("chromadb_close_s", writer.close)
        timings["collections_s"] = time.monotonic() - started
        # after the collections (chromadb's memory is released by then), page by page, kept for the read-back
        kg = clock.timed("kg_s", write_kg, partial, {"entities": _kept(snap.kg_pages("entities"), expected.entities),
                                                     "triples": _kept(snap.kg_pages("triples"), expected.triples)})
    inside = write_inside(partial, expected.files)
    timings["kg_files_s"] = time.monotonic() - started - timings["collections_s"]
    timings.update(clock.parts)
    report = None
    if verify:
        step = time.monotonic()
        report = check_palace(partial, expected, progress=emit, chromadb_sample=chromadb_sample)
        timings["verify_s"] = time.monotonic() - step
    (partial / CLAIM).unlink()  # last: a failed verification leaves a partial a rerun may remove
    os.rename(partial, out)
    beside = write_beside(out, expected.files)
    timings["total_s"] = time.monotonic() - started
    log.info("exported %s to %s in %.1f s", source_db, out, timings["total_s"])
    return {"palace": str(out), "collections": {c.name: c.count for c in collections}, "kg": kg,
            "files_inside": inside, "files_beside": beside, "rejected_rows_not_exported": rejected,
            "verification": report, "timings": {k: round(v, 2) for k, v in timings.items()}}


def _refuse_null_embeddings(snap: TargetSnapshot, collections) -> None:
    """Chroma stores no row without a vector (``add`` needs one per id): refuse before writing anything."""
    missing = {c.name: snap.null_embeddings(c) for c in collections}
    missing = {name: found for name, found in missing.items() if found[0]}
    if missing:
        listed = "; ".join(f"{name}: {n} row(s), e.g. {', '.join(ids)}" for name, (n, ids) in missing.items())
        raise PalacePgError(f"rows without an embedding, which a Chroma palace cannot hold: {listed}",
                            "give those rows their vectors (or delete them) in the database, then export again",
                            rows_without_embedding={name: n for name, (n, _) in missing.items()})


class _Clock:
    """Seconds per part of the export (summed over pages), for the summary and the benchmark."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}

    def timed(self, part: str, fn, *args, **kwargs):
        start = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            self.parts[part] = self.parts.get(part, 0.0) + time.monotonic() - start


def _kept(pages, into: list):
    for rows in pages:
        into.extend(rows)
        yield rows


def _safe(progress):
    def emit(event: ProgressEvent) -> None:
        if progress is None:
            return
        try:
            progress(event)
        except Exception:  # a broken display must never break an export
            log.exception("progress callback failed")
    return emit
