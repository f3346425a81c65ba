"""The exported palace read back two ways and compared with the database, row by row.

What the database holds (``Expected``) is taken from the same snapshot the export
wrote from: per collection, each row's document and typed-metadata digests and
the sha256 of the exact float32 bytes Chroma must return (``digests.chroma_returns``);
the collection's dimension and metadata; every KG row with every column and
rowid; every carried file's sha256.  The palace is then read

* directly from its files (``source.chroma_direct.DirectReader``, the migration's
  reader: chroma.sqlite3 plus the HNSW segment, chromadb for a queue tail), and
* through chromadb's own ``get()``: its whole id set and count, and a spread
  sample of rows in full (every row with ``chromadb_sample=None``: ~2K rows/s),

and the KG through sqlite.  Any difference fails with ``VerificationFailed``.
Vectors are written as their pre-images (``digests.chroma_preimage``), so
Chroma returns the database's bits wherever one exists; the few rows it still
renormalises (a last-bit change) are predicted exactly, counted and reported;
with ``strict_vectors`` they fail too.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ..errors import VerificationFailed
from ..phases.base import ProgressEvent
from ..phases.verify_phase import MAX_LISTED, kg_differences
from ..source.chroma_direct import DirectReader
from ..source.chroma_reader import read_collection_facts
from ..kg.store import ENTITY_COLUMNS, TRIPLE_COLUMNS
from ..target_db.compare import same as _same
from .digests import changed_rows, chroma_preimage, chroma_returns, row_digests
from .files_out import PALACE_PREFIX
from .kg_out import KG_FILENAME
from .snapshot import KG_PAGE, TargetCollection, TargetSnapshot

log = logging.getLogger(__name__)

READ_PAGE = 5000  # below chromadb's 32,766-variable limit on metadata reads
ID_PAGE = 30_000  # ids only: no metadata variables
CHROMADB_SAMPLE = 2000


def _vector_sha(digest: tuple) -> tuple:
    return digest[0], digest[1], hashlib.sha256(digest[2]).digest()


@dataclass
class ExpectedCollection:
    facts: TargetCollection
    rows: dict[str, tuple] = field(default_factory=dict)  # id -> (doc sha, metadata sha, vector sha)
    renormalised: int = 0

    @property
    def space(self) -> str | None:
        return (self.facts.metadata or {}).get("hnsw:space", "l2")

    def add_page(self, ids, documents, metadatas, vectors, *, strict_vectors: bool):
        """Record what Chroma must return for these rows; returns the vectors to ``add`` (their pre-images)."""
        written = chroma_preimage(vectors, self.space)
        returned = chroma_returns(written, self.space)
        self.renormalised += int(changed_rows(vectors, returned).sum())
        # strict: the database's own bits are expected, so a renormalised row is a difference
        for rid, digest in row_digests(ids, documents, metadatas, vectors if strict_vectors else returned).items():
            self.rows[rid] = _vector_sha(digest)
        return written


@dataclass
class Expected:
    collections: dict[str, ExpectedCollection] = field(default_factory=dict)
    entities: list[dict] = field(default_factory=list)
    triples: list[dict] = field(default_factory=list)
    files: list[tuple[str, bytes, str]] = field(default_factory=list)

    @classmethod
    def from_snapshot(cls, snap: TargetSnapshot, *, strict_vectors: bool = False,
                      progress: Callable[[ProgressEvent], None] | None = None) -> "Expected":
        out = cls(entities=snap.kg_rows("entities"), triples=snap.kg_rows("triples"), files=snap.files())
        for coll in snap.collections():
            exp = out.collections[coll.name] = ExpectedCollection(coll)
            done = 0
            for page in snap.pages(coll):
                exp.add_page(page.ids, page.documents, page.metadatas, page.embeddings, strict_vectors=strict_vectors)
                done += len(page.ids)
                if progress:
                    progress(ProgressEvent("verify", f"{coll.name} (database)", done, coll.count))
        return out


def _compare_rows(how: str, exp: ExpectedCollection, batches: Iterable, differences: list[dict],
                  progress: Callable[[ProgressEvent], None] | None) -> int:
    name = exp.facts.name
    seen: set[str] = set()
    for ids, documents, metadatas, vectors in batches:
        for rid, got in row_digests(ids, documents, metadatas, vectors).items():
            got = _vector_sha(got)
            if rid in seen:
                differences.append({"kind": "duplicate", "read": how, "collection": name, "id": rid})
                continue
            seen.add(rid)
            want = exp.rows.get(rid)
            if want is None:
                differences.append({"kind": "extra", "read": how, "collection": name, "id": rid})
                continue
            for fieldname, a, b in zip(("document", "metadata", "vector"), want, got):
                if a != b:
                    differences.append({"kind": fieldname, "read": how, "collection": name, "id": rid})
        if progress:
            progress(ProgressEvent("verify", f"{name} ({how})", len(seen), len(exp.rows)))
    for rid in sorted(exp.rows.keys() - seen)[:MAX_LISTED]:
        differences.append({"kind": "missing", "read": how, "collection": name, "id": rid})
    return len(seen)


def _direct_batches(reader: DirectReader, name: str):
    for b in reader.batches(name, batch_size=READ_PAGE):
        yield b.ids, b.documents, b.metadatas, b.embeddings


def _chromadb_batches(collection, ids: list[str] | None = None):
    """Every row through chromadb's ``get`` (``ids`` None), or just those ids."""
    import numpy as np

    include = ["documents", "metadatas", "embeddings"]
    pages = (range(0, collection.count(), READ_PAGE) if ids is None else range(0, len(ids), READ_PAGE))
    for start in pages:
        got = (collection.get(limit=READ_PAGE, offset=start, include=include) if ids is None
               else collection.get(ids=ids[start:start + READ_PAGE], include=include))
        yield got["ids"], got["documents"], got["metadatas"], np.asarray(got["embeddings"], dtype=np.float32)


def _sample(ids: list[str], size: int) -> list[str]:
    """Evenly spread over insertion order, plus the last rows (the write queue's tail is newest)."""
    if len(ids) <= size:
        return ids
    step = max(1, len(ids) // (size // 2))
    return list(dict.fromkeys(ids[::step] + ids[-(size // 2):]))


def _compare_chromadb(exp: ExpectedCollection, collection, differences: list[dict], progress,
                      sample: int | None) -> tuple[int, int]:
    """chromadb's view of one collection: every row (``sample`` None), or its whole id set and ~``sample`` rows.

    Returns (ids chromadb holds, rows compared in full).

    The direct reader has already compared every row and vector bit from the files; chromadb's
    ``get`` of twenty-key metadata runs at ~2K rows/s, so by default it proves the id set and count
    and reads a spread sample in full (the direct reader matches chromadb bit for bit by construction).
    """
    if sample is None:
        n = _compare_rows("chromadb", exp, _chromadb_batches(collection), differences, progress)
        return n, n
    name, ids, seen = exp.facts.name, [], set()
    for offset in range(0, collection.count(), ID_PAGE):
        ids += collection.get(limit=ID_PAGE, offset=offset, include=[])["ids"]
    for rid in ids:
        if rid in seen:
            differences.append({"kind": "duplicate", "read": "chromadb", "collection": name, "id": rid})
        seen.add(rid)
    listed = [{"kind": "extra", "read": "chromadb", "collection": name, "id": rid} for rid in sorted(seen - exp.rows.keys())]
    listed += [{"kind": "missing", "read": "chromadb", "collection": name, "id": rid}
               for rid in sorted(exp.rows.keys() - seen)]
    differences += listed[:MAX_LISTED]
    chosen = _sample(list(exp.rows), sample)
    part = ExpectedCollection(exp.facts, rows={rid: exp.rows[rid] for rid in chosen})
    return len(seen), _compare_rows("chromadb", part, _chromadb_batches(collection, chosen), differences, progress)


def check_palace(palace: Path, expected: Expected, *, progress: Callable[[ProgressEvent], None] | None = None,
                 chromadb_sample: int | None = CHROMADB_SAMPLE) -> dict:
    """Compare a written palace with ``expected``; raises VerificationFailed on any difference.

    ``chromadb_sample``: rows per collection read in full through chromadb besides its id set (None: all).
    """
    palace = Path(palace)
    differences: list[dict] = []
    report: dict = {"collections": {}, "kg": {}, "files": {}}
    facts = {f.name: f for f in read_collection_facts(palace)}
    for name in sorted(expected.collections.keys() ^ facts.keys()):
        differences.append({"kind": "collection_missing" if name in expected.collections else "collection_extra",
                            "collection": name})
    for name, exp in expected.collections.items():
        if name in facts:
            f = facts[name]
            if exp.facts.dimension is not None and f.dimension != exp.facts.dimension:
                differences.append({"kind": "dimension", "collection": name, "target": exp.facts.dimension,
                                    "palace": f.dimension})
            if not _same(exp.facts.metadata or {}, f.metadata or {}):
                differences.append({"kind": "collection_metadata", "collection": name,
                                    "target": exp.facts.metadata, "palace": f.metadata})
    present = [n for n in expected.collections if n in facts]
    seconds, step = {}, time.monotonic()
    reader = DirectReader(palace, [facts[n] for n in present])
    try:
        direct = {n: _compare_rows("direct", expected.collections[n], _direct_batches(reader, n), differences, progress)
                  for n in present}
    finally:
        reader.close()
    seconds["direct_s"], step = time.monotonic() - step, time.monotonic()
    from mempalace.backends.chroma import ChromaBackend, _close_client

    client = ChromaBackend.make_client(str(palace))
    try:
        via_chromadb = {n: _compare_chromadb(expected.collections[n], client.get_collection(n, embedding_function=None),
                                             differences, progress, chromadb_sample) for n in present}
    finally:
        _close_client(client)
    seconds["chromadb_s"], step = time.monotonic() - step, time.monotonic()
    for name, exp in expected.collections.items():
        report["collections"][name] = {"target_rows": len(exp.rows), "direct_rows": direct.get(name),
                                       "chromadb_rows": via_chromadb.get(name, (None, None))[0],
                                       "chromadb_rows_read_in_full": via_chromadb.get(name, (None, None))[1],
                                       "renormalised_by_chroma": exp.renormalised}
    report["kg"] = _compare_kg(palace / KG_FILENAME, expected, differences)
    report["files"] = _compare_files(palace, expected, differences)
    seconds["kg_files_s"] = time.monotonic() - step
    report["seconds"] = {k: round(v, 2) for k, v in seconds.items()}
    report["differences"] = len(differences)
    if differences:
        raise VerificationFailed(differences)
    return report


def _sqlite_kg_rows(db: sqlite3.Connection, table: str, columns: tuple, low: int, high: int | None) -> list[dict]:
    names = ("rowid",) + columns
    # table and column names come from the fixed tuples in kg/store.py
    query = f"SELECT {', '.join(names)} FROM {table} WHERE rowid > ?" + (" AND rowid <= ?" if high is not None else "")
    return [dict(zip(names, row)) for row in db.execute(query + " ORDER BY rowid",
                                                        (low,) if high is None else (low, high))]


def _compare_kg(kg_path: Path, expected: Expected, differences: list[dict]) -> dict:
    """Every KG row and column (rowid included) against the written sqlite file, a rowid window at a time.

    Windowed so the read-back holds one page of the file, not all 100K triples beside the expected ones.
    A row written under another rowid shows as missing in one window and extra in another: still a difference.
    """
    out: dict = {}
    if not kg_path.is_file():
        differences.append({"kind": "kg_file_missing", "path": str(kg_path)})
        return out
    db = sqlite3.connect(kg_path.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        for kind, table, columns, want_rows in (("entity", "entities", ENTITY_COLUMNS, expected.entities),
                                                ("triple", "triples", TRIPLE_COLUMNS, expected.triples)):
            found, listed, low = 0, [], 0
            for start in range(0, max(len(want_rows), 1), KG_PAGE):
                window = want_rows[start:start + KG_PAGE]
                last = start + KG_PAGE >= len(want_rows)
                high = None if last else window[-1]["rowid"]
                got = _sqlite_kg_rows(db, table, columns, low, high)
                found += len(got)
                listed += kg_differences(kind, window, got, labels=("target", "palace"))
                low = high if high is not None else low
            differences += listed[:MAX_LISTED]
            if len(listed) > MAX_LISTED:
                differences.append({"kind": f"kg_{kind}_more_differences", "count": len(listed) - MAX_LISTED})
            out[f"{kind}_target"] = len(want_rows)
            out[f"{kind}_palace"] = found
    finally:
        db.close()
    return out


def _compare_files(palace: Path, expected: Expected, differences: list[dict]) -> dict:
    checked = 0
    for rel, _content, sha in expected.files:
        if not rel.startswith(PALACE_PREFIX):
            continue  # beside/ files are written after the rename, next to the palace, when absent
        path = palace / rel.removeprefix(PALACE_PREFIX)
        got = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        if got != sha:
            differences.append({"kind": "file", "path": rel, "detail": "missing" if got is None else "content differs"})
        checked += 1
    return {"checked": checked}


def verify_export(dsn: str | None, palace, *, strict_vectors: bool = False, store_factory=None,
                  progress: Callable[[ProgressEvent], None] | None = None,
                  chromadb_sample: int | None = CHROMADB_SAMPLE) -> dict:
    """Compare an exported palace with what the database holds now (one read-only snapshot)."""
    with TargetSnapshot.open(dsn, store_factory=store_factory) as snap:
        expected = Expected.from_snapshot(snap, strict_vectors=strict_vectors, progress=progress)
    return check_palace(Path(palace).expanduser().resolve(), expected, progress=progress,
                        chromadb_sample=chromadb_sample)
