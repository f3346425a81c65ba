"""Binary COPY of one batch of rows into a collection table, with rejects kept, not dropped.

PostgreSQL cannot hold some values as they are: a NUL in text or jsonb, a
lone UTF-16 surrogate, NaN/Infinity in a vector or in jsonb, and jsonb's
numeric has no negative zero.  Such a row goes, whole and unchanged, into
``mempalace.rejects`` with the reason (its payload as JSON bytes, its vector as
raw float32 bytes), and the run reports it.  Nothing is silently altered.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass, field

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from . import jsonfmt
from .ddl import copy_rows
from .schema import qualified

_SURROGATE = re.compile("[\ud800-\udfff]")


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "NUL character (PostgreSQL text cannot hold U+0000)"
    if _SURROGATE.search(value):
        return "lone UTF-16 surrogate (not valid UTF-8)"
    return None


def _metadata_problem(meta: dict | None) -> str | None:
    if not meta:
        return None
    for key, value in meta.items():
        if (p := _text_problem(key)) is not None:
            return f"metadata key {key!r}: {p}"
        if isinstance(value, str):
            if (p := _text_problem(value)) is not None:
                return f"metadata {key!r}: {p}"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return f"metadata {key!r}: {value!r} (jsonb has no NaN/Infinity)"
            if value == 0.0 and math.copysign(1.0, value) < 0:
                return f"metadata {key!r}: -0.0 (jsonb numeric has no negative zero)"
        elif isinstance(value, (list, dict)):
            if (p := _metadata_problem(value if isinstance(value, dict) else dict(enumerate(value)))) is not None:
                return p
    return None


def document_digest(doc: str | None) -> bytes | None:
    if doc is None:
        return None
    return hashlib.sha256(doc.encode("utf-8", "surrogatepass")).digest()


def metadata_digest(meta: dict | None) -> bytes | None:
    return None if meta is None else hashlib.sha256(jsonfmt.canonical(meta).encode("utf-8", "surrogatepass")).digest()


def vector_digest(vec: np.ndarray) -> bytes:
    """sha256 of pgvector's binary (vector_send) form: int16 dim, int16 0, float32 big-endian."""
    v = np.asarray(vec, dtype=np.float32)
    return hashlib.sha256(struct.pack(">HH", v.shape[0], 0) + v.astype(">f4").tobytes()).digest()


# Anything in a row's canonical JSON that may need the precise (slow) check: an escaped NUL,
# NaN/Infinity, a negative zero, a lone surrogate.  Most rows match none and skip it.
_SUSPECT = re.compile(r"\\u0000|NaN|Infinity|-0\.0|[\ud800-\udfff]")


def _as_is(text: str) -> str:
    return text


@dataclass
class _PreparedMetadata:
    problem: str | None
    jsonb_text: str | None  # what COPY sends (None: SQL NULL)
    digest: bytes | None


def prepare_metadata(meta: dict | None) -> _PreparedMetadata:
    """One serialisation per row: its canonical JSON is the digest's input and, almost always, the jsonb text."""
    if meta is None:
        return _PreparedMetadata(None, None, None)
    text = jsonfmt.canonical(meta)
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    if _SUSPECT.search(text) and (problem := _metadata_problem(meta)) is not None:
        return _PreparedMetadata(problem, None, digest)
    # floats >= 1e16 print with an exponent, which jsonb would turn into integers
    return _PreparedMetadata(None, jsonfmt.dumps(meta) if "e+" in text else text, digest)


def vector_digests(vectors: np.ndarray) -> list[bytes]:
    """vector_digest for every row of a batch, with one big-endian conversion."""
    big = np.ascontiguousarray(vectors, dtype=">f4")
    head = struct.pack(">HH", big.shape[1], 0)
    return [hashlib.sha256(head + row.tobytes()).digest() for row in big]


@dataclass
class BatchResult:
    loaded: int = 0
    rejected: list[dict] = field(default_factory=list)


def _reject_payload(rid: str, doc, meta) -> bytes:
    # ensure_ascii escapes NUL and lone surrogates; allow_nan keeps NaN visible.
    return json.dumps({"id": rid, "document": doc, "metadata": meta}, ensure_ascii=True, allow_nan=True).encode()


def stored_id(rid: str) -> str:
    # an id PostgreSQL cannot hold is kept JSON-escaped (the reject's payload has it exactly)
    return rid if _text_problem(rid) is None else json.dumps(rid)


def copy_batch(conn: psycopg.Connection, table: str, collection: str, *, ids, documents, metadatas,
               embeddings: np.ndarray, first_seq: int = 0, dimension: int | None,
               seqs: list[int] | None = None) -> BatchResult:
    """COPY the good rows, keep the bad ones in rejects.  Runs inside the caller's transaction.

    Row ``i`` gets ``seq`` ``first_seq + i``, or ``seqs[i]`` when given (a sync keeps an updated row's).
    """
    result = BatchResult()
    prepared = [prepare_metadata(m) for m in metadatas]
    vectors = np.asarray(embeddings, dtype=np.float32)
    wrong_width = bool(dimension) and vectors.shape[1] != dimension
    finite = np.isfinite(vectors).all(axis=1) if vectors.shape[1] else np.ones(len(ids), dtype=bool)
    good: list[int] = []
    for i, rid in enumerate(ids):
        problem = None
        if (p := _text_problem(rid)) is not None:
            problem = f"id: {p}"
        elif documents[i] is not None and (p := _text_problem(documents[i])) is not None:
            problem = f"document: {p}"
        elif prepared[i].problem is not None:
            problem = prepared[i].problem
        elif wrong_width:
            problem = f"vector has {vectors.shape[1]} dimensions, the collection {dimension}"
        elif not finite[i]:
            problem = "vector holds NaN or Infinity (pgvector refuses them)"
        if problem:
            result.rejected.append({"collection": collection, "id": rid, "reason": problem, "index": i})
        else:
            good.append(i)
    if good:
        copy_rows(conn, table, ((ids[i], documents[i],
                                 Jsonb(prepared[i].jsonb_text, dumps=_as_is) if prepared[i].jsonb_text is not None
                                 else None, vectors[i], seqs[i] if seqs is not None else first_seq + i)
                                for i in good))
        result.loaded = len(good)
    # the digests of every row read (rejected ones too), for verification
    stmt = sql.SQL("COPY {} (collection, id, document, metadata, vector) FROM STDIN WITH (FORMAT BINARY)").format(
        qualified("source_digests"))
    with conn.cursor() as cur, cur.copy(stmt) as copy:
        copy.set_types(["text", "text", "bytea", "bytea", "bytea"])
        for i, (rid, vec_sha) in enumerate(zip(ids, vector_digests(vectors))):
            copy.write_row((collection, stored_id(rid), document_digest(documents[i]), prepared[i].digest, vec_sha))
    for rej in result.rejected:
        i = rej.pop("index")
        rid = ids[i]
        conn.execute(sql.SQL(
            "INSERT INTO {} (collection, id, reason, payload, vector) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (collection, id) DO UPDATE SET reason = EXCLUDED.reason, payload = EXCLUDED.payload, "
            "vector = EXCLUDED.vector").format(qualified("rejects")),
            [collection, stored_id(rid), rej["reason"], _reject_payload(rid, documents[i], metadatas[i]),
             np.asarray(embeddings[i], dtype="<f4").tobytes()])
    return result
