"""The vectors of writes still in Chroma's ``embeddings_queue``, as chromadb's ``get()`` returns them.

chromadb applies a write to the metadata segment (documents, metadata) at
once, but to the HNSW vector segment only in batches, and persists that
segment (``data_level0.bin``, its ``max_seq_id``) every ``sync_threshold``
writes.  So right after MemPalace wrote, the newest vectors exist only in the
queue.  Reading them through chromadb means a process that loads the whole
HNSW index and replays the queue: ~5 s at 160K drawers, on the cutover's
critical path.  This module replays the queue itself:

* per id, in seq_id order, with the vector segment's rules (checked against
  chromadb 1.x): ADD of an id that exists is ignored, UPDATE of an id that does
  not exist is ignored, UPDATE without a vector keeps the old one, UPSERT
  always writes, DELETE removes;
* a vector is returned as hnswlib's cosine space hands it back: normalised in
  float32 (sequential sum of squares, ``1 / (sqrt + 1e-30)``) and multiplied by
  the norm Chroma keeps in ``length.bin``: bit for bit what ``get()`` gives
  (6,000/6,000 vectors of three scales and a zero vector, 266/266 queued
  MemPalace upserts; the raw queue bytes of 72 of those 266 are not what
  ``get()`` returns).

Anything outside these rules (an unknown operation or encoding, a vector of
the wrong length, an UPSERT without a vector) returns ``None``: the caller
reads those ids through chromadb instead.  Exactness is never traded.
"""

from __future__ import annotations

import sqlite3
from typing import Iterable

import numpy as np

# chromadb's embeddings_queue operation codes (chromadb/db/mixins/embeddings_queue.py)
ADD, UPDATE, UPSERT, DELETE = 0, 1, 2, 3
#: A replayed id whose final vector is the one the HNSW files already hold.
IN_FILE = "in-file"


def queued_writes(db: sqlite3.Connection, collection_uuid: str, after: int) -> list[tuple]:
    """(seq_id, operation, id, vector bytes, encoding) of the collection's writes after ``after``, oldest first."""
    return db.execute(
        "SELECT seq_id, operation, id, vector, encoding FROM embeddings_queue "
        "WHERE topic LIKE ? AND seq_id > ? ORDER BY seq_id", [f"%/{collection_uuid}", after]).fetchall()


def replay(writes: Iterable[tuple], in_file: set[str], dimension: int) -> dict[str, object] | None:
    """{id: final float32 vector, ``IN_FILE`` or ``None`` (deleted)} for every id the writes touch.

    ``in_file``: the touched ids the persisted HNSW segment holds (not delete-marked).
    ``None`` as a whole when a write falls outside the rules this replay knows.
    """
    state: dict[str, object] = {}
    for _seq, operation, rid, blob, encoding in writes:
        current = state.get(rid, IN_FILE if rid in in_file else None)
        vector = None
        if blob is not None:
            if (encoding or "").upper() != "FLOAT32" or len(blob) != 4 * dimension:
                return None
            vector = np.frombuffer(blob, dtype="<f4")
        if operation == ADD:
            if vector is None:
                return None
            state[rid] = current if current is not None else vector
        elif operation == UPSERT:
            if vector is None:
                return None
            state[rid] = vector
        elif operation == UPDATE:
            state[rid] = vector if (current is not None and vector is not None) else current
        elif operation == DELETE:
            state[rid] = None
        else:
            return None
    return state


def as_chromadb_returns(vectors: np.ndarray) -> np.ndarray:
    """Rows of float32 vectors after hnswlib's cosine normalisation and Chroma's multiplication by the norm."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.size == 0:
        return vectors.reshape(len(vectors), -1)
    # cumsum runs left to right in float32, like hnswlib's loop (numpy's sum would pair terms up)
    norms = np.sqrt(np.cumsum(vectors * vectors, axis=1, dtype=np.float32)[:, -1])
    inverse = np.float32(1) / (norms + np.float32(1e-30))
    return (vectors * inverse[:, None]) * norms[:, None]
