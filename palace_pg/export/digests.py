"""Per-row digests the export and its verification compare, and what Chroma does to a vector.

A row is (sha256 of the UTF-8 document, sha256 of the type-strict canonical
metadata, the float32 vector's bytes).  The metadata digest is phase 6's
(``loader.metadata_digest``: 1, 1.0 and true differ; key order does not).

Chroma renormalises the vectors of a cosine collection: hnswlib stores
``v * (1 / |v|)`` and Chroma's fork keeps ``|v|`` beside it, so ``get()`` returns
``(v * (1 / |v|)) * |v|`` in float32, with ``|v|`` the square root of a sequential
float32 sum of squares.  Measured with chromadb 1.5.9 on 1,300 ordinary unit
vectors: 353 came back changed in their last bit, all exactly as predicted here,
whether still in the write queue, flushed, or read after a reopen.
:func:`chroma_returns` computes the result exactly, so verification can demand
bit equality with what Chroma must return and count the rows Chroma changed.

The renormalisation is in Chroma's storage (its hnswlib fork), not in an
embedding function: ``add(embeddings=...)`` with no embedding function changes
the same rows, an ``l2`` or ``ip`` collection changes none, and it is not
idempotent (of vectors Chroma returned, ~13% change again when re-added), so a
plain round trip of a real palace would change vectors Chroma itself had
returned.  :func:`chroma_preimage` therefore writes, per changed row, a vector
at most an ulp away per coordinate that Chroma turns into exactly the
database's bits: measured on 20K rows, it leaves 1.1% of vectors Chroma had
returned changed (13.2% without) and 12% of ordinary unit vectors (27%).
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..target_db.loader import metadata_digest

Digest = tuple  # (document sha256 | None, metadata sha256 | None, vector bytes)


def document_digest(doc: str | None) -> bytes | None:
    return None if doc is None else hashlib.sha256(doc.encode("utf-8", "surrogatepass")).digest()


def row_digests(ids, documents, metadatas, vectors: np.ndarray) -> dict[str, Digest]:
    v = np.ascontiguousarray(vectors, dtype="<f4")
    return {rid: (document_digest(documents[i]), metadata_digest(metadatas[i]), v[i].tobytes())
            for i, rid in enumerate(ids)}


def chroma_returns(vectors: np.ndarray, space: str | None) -> np.ndarray:
    """The float32 rows Chroma's ``get()`` returns after ``add(embeddings=vectors)``."""
    v = np.asarray(vectors, dtype=np.float32)
    if space != "cosine" or not v.size:
        return v
    norms = np.sqrt(np.cumsum(v * v, axis=1, dtype=np.float32)[:, -1]).astype(np.float32)
    safe = np.where(norms == 0, np.float32(1), norms)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ((v * (np.float32(1) / safe)).astype(np.float32) * safe).astype(np.float32)
    return np.where(norms[:, None] == 0, v, out)


def changed_rows(vectors: np.ndarray, returned: np.ndarray) -> np.ndarray:
    """Boolean mask of rows whose bits differ."""
    a = np.asarray(vectors, dtype=np.float32).view(np.uint32)
    b = np.asarray(returned, dtype=np.float32).view(np.uint32)
    return (a != b).any(axis=1) if a.size else np.zeros(len(a), dtype=bool)


def _norms(v: np.ndarray) -> np.ndarray:
    return np.sqrt(np.cumsum(v * v, axis=1, dtype=np.float32)[:, -1]).astype(np.float32)


def chroma_preimage(vectors: np.ndarray, space: str | None, *, rounds: int = 3) -> np.ndarray:
    """Vectors to ``add`` so that Chroma's ``get()`` returns ``vectors`` bit for bit, where one is found.

    With the row's norm held, Chroma maps each coordinate on its own
    (``(w * (1 / n)) * n``, monotone in ``w``), so the coordinate itself or its
    float32 neighbour one ulp either side usually maps onto the wanted bits.
    Moving coordinates can move the norm, so a few rounds re-check.  Rows with
    no pre-image found keep their own bits (Chroma then changes them, as
    :func:`chroma_returns` predicts).  Deterministic: verification recomputes it.
    """
    want = np.ascontiguousarray(vectors, dtype=np.float32)
    if space != "cosine" or not want.size:
        return want
    written = want.copy()
    todo = np.flatnonzero(changed_rows(want, chroma_returns(want, space)))
    for _ in range(rounds):
        if not len(todo):
            break
        current, target = written[todo], want[todo]
        n = _norms(current)
        if not (n > 0).all() or not np.isfinite(n).all():
            keep = (n > 0) & np.isfinite(n)
            todo, current, target, n = todo[keep], current[keep], target[keep], n[keep]
        r = (np.float32(1) / n).astype(np.float32)[:, None]
        best, found = current.copy(), np.zeros(current.shape, dtype=bool)
        for step in (0, -1, 1):  # ulps away from the wanted bits, nearest first
            with np.errstate(invalid="ignore", over="ignore"):
                candidate = (target.view(np.int32) + np.int32(step)).view(np.float32)
                maps_to = ((candidate * r).astype(np.float32) * n[:, None]).astype(np.float32)
            hit = (maps_to.view(np.uint32) == target.view(np.uint32)) & ~found & np.isfinite(candidate)
            best[hit] = candidate[hit]
            found |= hit
        written[todo] = best
        todo = todo[changed_rows(want[todo], chroma_returns(written[todo], space))]
    written[todo] = want[todo]  # a row whose search did not land keeps the database's own bits
    return written
