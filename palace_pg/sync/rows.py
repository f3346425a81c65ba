"""Bring one collection's table up to date with the palace: exactly the rows added, changed or deleted.

The candidates (rows written since the watermark, :mod:`.changes`) are read
as the migration reads rows (straight from the snapshot's files, chromadb for
writes still in its queue); each one's digests (document, typed
metadata, vector bits) are compared with what the target last read of it
(``source_digests``), and only rows that differ are written: deleted with
their digest and any reject, then copied in again by the migration's own
loader, in batches that each commit with their digests.  The digests are the
checkpoint: a killed sync's rerun finds the rows it already wrote equal and
writes only the rest.  A row keeps its ``seq``; a new row's ``seq`` is its
Chroma write seq_id (above every migrated row's), so a resumed sync and an
uninterrupted one write the same values.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import psycopg
from psycopg import sql

from ..faults import crash_point
from ..source.chroma_reader import CollectionFacts
from ..target_db import schema
from ..target_db.loader import copy_batch, document_digest, prepare_metadata, stored_id, vector_digest
from .changes import CollectionChanges

log = logging.getLogger(__name__)

#: Below this many rows to write, one connection does it (a second one costs more than it saves).
PARALLEL_MIN_ROWS = 256


@dataclass
class RowChanges:
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0  # candidates whose content the target already holds (a rewrite, or a resumed sync)
    rejected: list[dict] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)  # read (source rows), compare, delete, write

    def as_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "deleted": self.deleted,
                "candidates_unchanged": self.unchanged, "rejected": len(self.rejected),
                "seconds": {k: round(v, 2) for k, v in self.seconds.items()}}

    def lap(self, part: str, since: float) -> float:
        now = time.monotonic()
        self.seconds[part] = self.seconds.get(part, 0.0) + now - since
        return now

    @property
    def written(self) -> int:
        return self.added + self.updated + self.deleted


def _stored_digests(conn: psycopg.Connection, collection: str, ids: list[str]) -> dict[str, tuple]:
    return {rid: (doc, meta, vec) for rid, doc, meta, vec in conn.execute(
        sql.SQL("SELECT id, document, metadata, vector FROM {} WHERE collection = %s AND id = ANY(%s)").format(
            schema.qualified("source_digests")), [collection, ids])}


def _digests(doc, meta, vector) -> tuple:
    return document_digest(doc), prepare_metadata(meta).digest, vector_digest(vector)


def _forget(conn: psycopg.Connection, table: str, collection: str, ids: list[str]) -> None:
    """Remove rows with their digests and rejects (inside the caller's transaction)."""
    conn.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(schema.qualified(table)), [ids])
    for bookkeeping in ("source_digests", "rejects"):
        conn.execute(sql.SQL("DELETE FROM {} WHERE collection = %s AND id = ANY(%s)").format(
            schema.qualified(bookkeeping)), [collection, ids])


def _write_batch(conn: psycopg.Connection, table: str, facts: CollectionFacts, batch: list[tuple[str, int]],
                 fresh: dict):
    """Rewrite these rows with their digests in one transaction; a row keeps the ``seq`` it had."""
    ids = [rid for rid, _ in batch]
    with conn.transaction():
        kept_seq = dict(conn.execute(sql.SQL("SELECT id, seq FROM {} WHERE id = ANY(%s)").format(
            schema.qualified(table)), [ids]).fetchall())
        _forget(conn, table, facts.name, [stored_id(rid) for rid in ids])
        rows = [fresh[rid] for rid in ids]
        result = copy_batch(conn, table, facts.name, ids=ids, documents=[r[0] for r in rows],
                            metadatas=[r[1] for r in rows],
                            embeddings=np.stack([np.asarray(r[2], dtype=np.float32) for r in rows]),
                            dimension=facts.dimension, seqs=[kept_seq.get(rid, seq) for rid, seq in batch])
        crash_point("sync")
    return result


def sync_rows(conn: psycopg.Connection, read_rows, facts: CollectionFacts, table: str, changes: CollectionChanges, *,
              batch_size: int, emit, extra_writer=None) -> RowChanges:
    """``read_rows(ids)`` gives {id: (document, metadata, vector)} for the ids the palace holds now.

    ``extra_writer()``, a context manager giving a second connection, lets a large delta be written
    by two server processes at once (disjoint ids, each batch its own transaction with its digests).
    """
    out = RowChanges()
    t = time.monotonic()
    known = {r[0] for r in conn.execute(sql.SQL("SELECT id FROM {} WHERE collection = %s").format(
        schema.qualified("source_digests")), [facts.name])}  # every id the target has read (rejected ones too)
    t = out.lap("ids", t)
    fresh = read_rows(changes.candidate_ids) if changes.candidates else {}
    t = out.lap("read", t)
    candidates = set(changes.candidate_ids)
    present = {stored_id(rid) for rid in changes.present if rid not in candidates or rid in fresh}
    deleted = sorted(known - present)
    stored = _stored_digests(conn, facts.name, [stored_id(rid) for rid in fresh])
    write: list[tuple[str, int]] = []
    for rid, seq in changes.candidates:
        if rid not in fresh:
            continue  # written, then deleted by a later write still in the queue: counted in `deleted`
        if stored.get(stored_id(rid)) == _digests(*fresh[rid]):
            out.unchanged += 1
        else:
            write.append((rid, seq))
    total = len(write) + len(deleted)
    emit(facts.name, 0, total)
    t = out.lap("compare", t)
    if deleted:
        with conn.transaction():
            _forget(conn, table, facts.name, deleted)
        out.deleted = len(deleted)
        crash_point("sync")
    t = out.lap("delete", t)
    shards = [write]
    if extra_writer is not None and len(write) >= PARALLEL_MIN_ROWS:
        # HNSW inserts are the cost (a graph search each): two server processes share them
        half = (len(write) + 1) // 2
        shards = [write[:half], write[half:]]
    lock = threading.Lock()
    done = [len(deleted)]

    def write_shard(shard_conn: psycopg.Connection, shard: list[tuple[str, int]]) -> None:
        for start in range(0, len(shard), batch_size):
            batch = shard[start: start + batch_size]
            result = _write_batch(shard_conn, table, facts, batch, fresh)
            updated = sum(1 for rid, _ in batch if stored_id(rid) in known)
            with lock:
                out.updated += updated
                out.added += len(batch) - updated
                out.rejected += result.rejected
                done[0] += len(batch)
                emit(facts.name, done[0], total)
            for rej in result.rejected:
                log.warning("rejected %s/%s: %s", facts.name, rej["id"], rej["reason"])

    if len(shards) == 1:
        write_shard(conn, write)
    else:
        with extra_writer() as second, ThreadPoolExecutor(max_workers=1, thread_name_prefix="palace_pg-sync") as pool:
            job = pool.submit(write_shard, second, shards[1])
            write_shard(conn, shards[0])
            job.result()
    out.lap("write", t)
    return out
