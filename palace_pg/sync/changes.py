"""What changed in a Chroma palace since the target last caught up: found through Chroma's write seq_ids.

Every write to a row (add, update, upsert, even a metadata-only update) gives
its ``embeddings`` row the write's ``seq_id`` (checked against chromadb 1.x:
``update`` and ``upsert`` rewrite it, ``delete`` removes the row).  So a
collection's rows with ``seq_id`` above the watermark recorded when the target
last read the palace are exactly the rows added or changed since; the ids that
are no longer there are the deletions.  Writes still waiting in
``embeddings_queue`` (not yet applied to the metadata segment) are candidates
too.  Nothing else is read: a palace with nothing new costs one indexed query
per collection.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..source.chroma_reader import CollectionFacts, sqlite_ro


def _seq(value) -> int:
    # chromadb 0.4 stored seq_ids as big-endian blobs; 0.5+ as integers
    return int.from_bytes(value, "big") if isinstance(value, (bytes, memoryview)) else int(value or 0)


def _metadata_segment(db: sqlite3.Connection, collection_uuid: str) -> str | None:
    row = db.execute("SELECT id FROM segments WHERE collection = ? AND scope = 'METADATA'", [collection_uuid]).fetchone()
    return row[0] if row else None


def _applied_seq(db: sqlite3.Connection, segment: str | None) -> int:
    row = db.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", [segment]).fetchone() if segment else None
    return _seq(row[0]) if row else 0


def _queued(db: sqlite3.Connection, collection_uuid: str, after: int) -> list[tuple[str, int]]:
    """(id, seq_id) of writes in the queue after ``after`` for this collection, oldest first."""
    return [(rid, _seq(s)) for rid, s in db.execute(
        "SELECT id, seq_id FROM embeddings_queue WHERE topic LIKE ? AND seq_id > ? ORDER BY seq_id",
        [f"%/{collection_uuid}", after])]


def watermarks(palace: Path, collections: list[CollectionFacts]) -> dict[str, int]:
    """{collection: the highest write seq_id the palace holds for it}: what a read of it has seen."""
    db = sqlite_ro(Path(palace) / "chroma.sqlite3")
    try:
        out = {}
        for facts in collections:
            applied = _applied_seq(db, _metadata_segment(db, facts.uuid))
            queued = _queued(db, facts.uuid, applied)
            out[facts.name] = max([applied] + [s for _, s in queued])
        return out
    finally:
        db.close()


@dataclass
class CollectionChanges:
    name: str
    candidates: list[tuple[str, int]]  # (id, seq_id) written after the watermark, oldest write first
    present: set[str]                  # every id the palace holds now (queued adds included)
    watermark: int                     # the highest seq_id seen now

    @property
    def candidate_ids(self) -> list[str]:
        return [rid for rid, _ in self.candidates]


def changes_since(palace: Path, facts: CollectionFacts, watermark: int) -> CollectionChanges:
    db = sqlite_ro(Path(palace) / "chroma.sqlite3")
    try:
        segment = _metadata_segment(db, facts.uuid)
        applied = _applied_seq(db, segment)
        present = {r[0] for r in db.execute("SELECT embedding_id FROM embeddings WHERE segment_id = ?", [segment])}
        # sqlite compares a 0.4-era BLOB seq_id above any integer: such rows are all candidates, which
        # the digests then sort out (slower, never wrong)
        latest = {rid: s for rid, seq in db.execute(
            "SELECT embedding_id, seq_id FROM embeddings WHERE segment_id = ? AND seq_id > ?", [segment, watermark])
            if (s := _seq(seq)) > watermark}
        for rid, seq in _queued(db, facts.uuid, max(applied, watermark)):
            present.add(rid)  # a queued delete leaves it absent from chromadb's answer: the caller sees that
            latest[rid] = max(seq, latest.get(rid, 0))
        top = max([watermark, applied, *latest.values()])
        return CollectionChanges(facts.name, sorted(latest.items(), key=lambda item: item[1]), present, top)
    finally:
        db.close()
