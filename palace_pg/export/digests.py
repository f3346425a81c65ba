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
