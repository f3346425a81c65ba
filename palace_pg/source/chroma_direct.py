"""Read a snapshot's collections straight from Chroma's files, ~10x faster than its client.

chromadb's ``get()`` runs at ~2K rows/s on drawers with twenty metadata keys and
loads each HNSW segment whole.  The same rows sit in two places we can read
directly (``../shared/research/perf-anchors.md`` §3.1):

* documents and metadata: the collection's METADATA segment in ``chroma.sqlite3``
  (``embeddings`` + ``embedding_metadata``; the document is key ``chroma:document``);
* vectors: the VECTOR segment's ``data_level0.bin``, one fixed-size hnswlib record
  per element (link block, float32 vector, 8-byte label), mapped to ids by
  ``index_metadata.pickle``, with hnswlib's delete mark honoured.  In a cosine
  space hnswlib stores each vector normalised and Chroma's fork keeps its norm
  in ``length.bin``; ``get()`` returns ``stored * norm`` (a float32 product), so
  this reader does the same and its vectors equal chromadb's bit for bit.

Writes newer than a segment's ``max_seq_id`` exist only in ``embeddings_queue``.
Usually only the vector segment lags (chromadb applies documents and metadata
at once, vectors at its HNSW flush): those vectors are replayed from the queue
itself (:mod:`.chroma_queue`, bit-exact with chromadb's answer).  Otherwise the
ids the queue touched are read through chromadb itself (``get(ids=...)``, which
replays the queue exactly as MemPalace sees it), and everything else directly.
When the files disagree with each other (HNSW/sqlite drift, a truncated
segment, array metadata this reader does not decode) the collection is read
through chromadb as a whole: speed is given up, never exactness.

Rows come in ``embeddings.id`` order (insertion order, also chromadb's own), then
ids that exist only in the queue in the order they were first written.  The
order is a pure function of the frozen snapshot, so a resumed run's offset
points at the same row.
"""

from __future__ import annotations

import json
import logging
import pickle
import sqlite3
import struct
from itertools import groupby
from operator import itemgetter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import SourceError
from . import chroma_queue
from .chroma_reader import MAX_PAGE, Batch, ChromaReader, CollectionFacts, TailRead, sqlite_ro

log = logging.getLogger(__name__)

DOCUMENT_KEY = "chroma:document"
# hnswlib's header.bin, the HEADER_FIELDS macro: version, offsetLevel0, max_elements,
# cur_element_count, size_data_per_element, label_offset, offsetData, maxlevel,
# enterpoint_node, maxM, maxM0, M, mult, ef_construction.
_HEADER = struct.Struct("<iQQQQQQiIQQQdQ")
_DELETE_MARK = 0x01
# Beyond this many queue-only ids the tail is read through chromadb page by page instead.
MAX_TAIL_IDS = 50_000


@dataclass
class _Files:
    """A collection as its files describe it, before any chromadb read."""
    stored: list[tuple[int, str]]  # (embeddings.id, id) of the metadata segment, in order
    touched: list[str]            # ids written after a segment's max_seq_id, in the order first written
    vectors: "_Vectors | None"    # the HNSW segment's flushed vectors, or None (none needed)
    positions: dict[str, int]     # record index in data_level0.bin per untouched id
    queued: dict[str, np.ndarray] = field(default_factory=dict)  # id -> vector replayed from the queue


@dataclass
class _Plan:
    """How one collection is read: its row order and where each row comes from."""
    row_keys: np.ndarray          # embeddings.id per row of the metadata segment (-1: a queue-only row)
    ids: list[str]
    tail: dict[str, tuple]        # id -> (document, metadata, vector) for ids the queue tail touched
    vectors: "_Vectors | None"
    positions: np.ndarray         # record index in data_level0.bin per row (-1: from the tail or the queue)
    queued: dict[str, np.ndarray] = field(default_factory=dict)  # id -> vector replayed from the queue
    index: dict[str, int] | None = None  # row per id, built on the first lookup by id


class DirectReader:
    """Paged reads of one snapshot from chroma.sqlite3 and the HNSW files, chromadb for the rest."""

    def __init__(self, palace: Path, collections: list[CollectionFacts]) -> None:
        self.palace = Path(palace)
        self._facts = {c.name: c for c in collections}
        self._inspected: dict[str, _Files | None] = {}
        self._tails: dict[str, TailRead] = {}
        self._plans: dict[str, _Plan | None] = {}
        self._chroma: ChromaReader | None = None
        self.fallbacks: dict[str, str] = {}  # collection -> why it is read through chromadb

    # -- the reader interface (same as ChromaReader) -------------------------------------
    def count(self, name: str) -> int:
        plan = self._plan(name)
        return len(plan.ids) if plan is not None else self._client().count(name)

    def batches(self, name: str, *, batch_size: int, start: int = 0, stop: int | None = None,
                include_embeddings: bool = True) -> Iterator[Batch]:
        plan = self._plan(name)
        if plan is None:
            yield from self._client().batches(name, batch_size=batch_size, start=start, stop=stop,
                                              include_embeddings=include_embeddings)
            return
        batch_size = max(1, min(batch_size, MAX_PAGE))
        total = len(plan.ids) if stop is None else min(stop, len(plan.ids))
        dimension = self._facts[name].dimension or 0
        db = sqlite_ro(self.palace / "chroma.sqlite3")
        try:
            for offset in range(start, total, batch_size):
                end = min(offset + batch_size, total)
                yield self._page(db, plan, np.arange(offset, end), dimension, include_embeddings)
        finally:
            db.close()

    def rows(self, name: str, ids: list[str]) -> dict[str, tuple]:
        """{id: (document, metadata, float32 vector)} for the given ids the collection holds (a sync's reads)."""
        plan = self._plan(name)
        if plan is None:
            return TailRead(self.palace, name, list(ids)).result()
        if plan.index is None:
            plan.index = {rid: i for i, rid in enumerate(plan.ids)}
        rows = np.array(sorted(plan.index[rid] for rid in ids if rid in plan.index), dtype=np.int64)
        out: dict[str, tuple] = {}
        db = sqlite_ro(self.palace / "chroma.sqlite3")
        try:
            for start in range(0, len(rows), MAX_PAGE):
                batch = self._page(db, plan, rows[start:start + MAX_PAGE], self._facts[name].dimension or 0, True)
                out.update(zip(batch.ids, zip(batch.documents, batch.metadatas, batch.embeddings)))
        finally:
            db.close()
        return out

    def close(self) -> None:
        for pending in self._tails.values():
            pending.cancel()
        self._tails.clear()
        self._inspected.clear()
        self._plans.clear()
        if self._chroma is not None:
            self._chroma.close()
            self._chroma = None

    # -- one page ------------------------------------------------------------------------
    def _page(self, db: sqlite3.Connection, plan: _Plan, rows: np.ndarray, dimension: int,
              include_embeddings: bool) -> Batch:
        """The rows at these indices of the plan (a contiguous range for the load, any for a sync)."""
        ids = [plan.ids[i] for i in rows]
        keys = plan.row_keys[rows]
        in_sqlite = keys[keys >= 0]
        docs: dict[int, str | None] = {}
        metas: dict[int, dict] = {}
        if in_sqlite.size:
            # chromadb writes exactly one value column per key, and sqlite's COALESCE keeps that
            # value's own type (TEXT, INTEGER or REAL); a bool is an INTEGER in bool_value
            low, high = int(in_sqlite.min()), int(in_sqlite.max())
            where, args = ("id BETWEEN ? AND ?", [low, high]) if high - low < 4 * in_sqlite.size else (
                "id IN (SELECT value FROM json_each(?))", [json.dumps(in_sqlite.tolist())])
            rows_ = db.execute(
                "SELECT id, key, COALESCE(string_value, int_value, float_value), bool_value FROM embedding_metadata "
                f"WHERE {where} ORDER BY id", args).fetchall()  # `where` is one of two fixed strings
            wanted = set(in_sqlite.tolist())
            for key, group in groupby(rows_, itemgetter(0)):
                if key not in wanted:
                    continue
                meta = {}
                for _, mkey, value, flag in group:
                    meta[mkey] = value if flag is None else flag == 1
                if DOCUMENT_KEY in meta:
                    docs[key] = meta.pop(DOCUMENT_KEY)
                if meta:
                    metas[key] = meta
        documents, metadatas = [], []
        for rid, key in zip(ids, keys):
            if key < 0 or rid in plan.tail:
                doc, meta, _ = plan.tail[rid]
            else:
                doc, meta = docs.get(int(key)), metas.get(int(key))
            documents.append(doc)
            metadatas.append(meta)
        if include_embeddings:
            vectors = np.empty((len(ids), dimension), dtype=np.float32)
            pos = plan.positions[rows]
            direct = pos >= 0
            if direct.any():
                vectors[direct] = plan.vectors.read(pos[direct])
            for j in np.flatnonzero(~direct):
                queued = plan.queued.get(ids[j])
                vectors[j] = queued if queued is not None else plan.tail[ids[j]][2]
        else:
            vectors = np.zeros((len(ids), 0), np.float32)
        return Batch(int(rows[0]) if len(rows) else 0, ids, documents, metadatas, vectors)

    # -- planning ------------------------------------------------------------------------
    def needs_chromadb(self, name: str) -> bool:
        """True when some of the collection's rows can only be read through chromadb itself."""
        files = self._files(name)
        return files is None or bool(files.touched)

    def fallback_reason(self, name: str) -> str | None:
        return self.fallbacks.get(name)

    def _client(self) -> ChromaReader:
        if self._chroma is None:
            self._chroma = ChromaReader(self.palace)
        return self._chroma

    def _files(self, name: str) -> _Files | None:
        """What the files alone say about a collection; None when chromadb must read all of it."""
        if name not in self._inspected:
            try:
                self._inspected[name] = self._inspect(name)
            except _Fallback as why:
                log.info("reading %s through chromadb: %s", name, why)
                self.fallbacks[name] = str(why)
                self._inspected[name] = None
        return self._inspected[name]

    def _plan(self, name: str) -> _Plan | None:
        if name not in self._plans:
            files = self._files(name)
            self._plans[name] = None if files is None else self._compose(name, files)
        return self._plans[name]

    def _inspect(self, name: str) -> _Files:
        facts = self._facts.get(name)
        if facts is None:
            raise SourceError(f"the palace has no collection {name!r}", "check the palace path")
        db = sqlite_ro(self.palace / "chroma.sqlite3")
        try:
            segments = dict(db.execute("SELECT scope, id FROM segments WHERE collection = ?", [facts.uuid]))
            meta_seg, vec_seg = segments.get("METADATA"), segments.get("VECTOR")
            if meta_seg is None or vec_seg is None:
                raise _Fallback("the collection lacks a metadata or vector segment")
            flushed = dict(db.execute("SELECT segment_id, seq_id FROM max_seq_id WHERE segment_id IN (?, ?)",
                                      [meta_seg, vec_seg]))
            meta_max, vec_max = flushed.get(meta_seg, 0) or 0, flushed.get(vec_seg, 0) or 0
            if _has_table(db, "embedding_metadata_array") and db.execute(
                    "SELECT 1 FROM embedding_metadata_array a JOIN embeddings e ON e.id = a.id "
                    "WHERE e.segment_id = ? LIMIT 1", [meta_seg]).fetchone():
                raise _Fallback("array-valued metadata")
            space = _space(db, facts)
            # every id a write newer than either segment touched, in the order first written
            touched = list(dict.fromkeys(r[0] for r in db.execute(
                "SELECT id FROM embeddings_queue WHERE topic LIKE ? AND seq_id > ? ORDER BY seq_id",
                [f"%/{facts.uuid}", min(meta_max, vec_max)])))
            stored = db.execute("SELECT id, embedding_id FROM embeddings WHERE segment_id = ? ORDER BY id",
                                [meta_seg]).fetchall()
            # the usual tail: documents and metadata applied, only the vectors waiting for the HNSW flush
            vector_writes = (chroma_queue.queued_writes(db, facts.uuid, vec_max)
                             if touched and space == "cosine" and meta_max >= vec_max else None)
        finally:
            db.close()
        if len(touched) > MAX_TAIL_IDS:
            raise _Fallback(f"{len(touched)} ids only in the write queue")
        if vector_writes is not None and vector_writes and vector_writes[-1][0] > meta_max:
            vector_writes = None  # the metadata segment lags too: chromadb replays those ids
        touched_set = set(touched)
        direct_ids = [eid for _, eid in stored if eid not in touched_set]
        if direct_ids and space != "cosine":
            raise _Fallback(f"a {space!r} space (only cosine's stored form is decoded here)")
        # the HNSW files hold nothing a queued id could keep until the segment first persisted
        optional = touched if vector_writes is not None and vec_max > 0 else []
        vectors, positions, touched_positions = self._map_vectors(facts, vec_seg, direct_ids, optional)
        touched_positions = touched_positions if optional else np.full(len(touched), -1, dtype=np.int64)
        files = _Files(stored, touched, vectors, dict(zip(direct_ids, positions.tolist())))
        if vector_writes is not None:
            self._replay_queue(facts, files, vector_writes, dict(zip(touched, touched_positions.tolist())))
        return files

    def _replay_queue(self, facts: CollectionFacts, files: _Files, writes: list[tuple],
                      in_file: dict[str, int]) -> None:
        """Take the touched ids' vectors from the queue itself (palace_pg.source.chroma_queue), if it can be exact.

        It can when the replay knows every write and agrees with the metadata segment on which ids
        exist; otherwise ``files.touched`` stays as it is and chromadb reads those ids.
        """
        final = chroma_queue.replay(writes, {rid for rid, pos in in_file.items() if pos >= 0}, facts.dimension or 0)
        live = {eid for _, eid in files.stored}
        if final is None or any((final.get(rid, chroma_queue.IN_FILE if in_file[rid] >= 0 else None) is not None)
                                != (rid in live) for rid in files.touched):
            log.info("the write queue of %s is replayed through chromadb (outside the known rules)", facts.name)
            return
        replayed = [rid for rid in files.touched if rid in live and isinstance(final.get(rid), np.ndarray)]
        if replayed:
            vectors = chroma_queue.as_chromadb_returns(np.stack([final[rid] for rid in replayed]))
            files.queued = dict(zip(replayed, vectors))
        for rid in files.touched:
            if rid in live and rid not in files.queued:
                files.positions[rid] = in_file[rid]  # its last vector write is already in the HNSW files
        files.touched = []

    def _compose(self, name: str, files: _Files) -> _Plan:
        """The row order: the metadata segment's, queued deletes dropped, queue-only ids appended."""
        tail = self._read_tail(name, files.touched) if files.touched else {}
        touched = set(files.touched)
        ids, keys, positions = [], [], []
        for key, eid in files.stored:
            if eid in touched:
                if eid not in tail:
                    continue  # deleted by a queued write
                positions.append(-1)
            elif eid in files.queued:
                positions.append(-1)
            else:
                positions.append(files.positions[eid])
            ids.append(eid)
            keys.append(key)
        stored_ids = {eid for _, eid in files.stored}
        for eid in files.touched:
            if eid not in stored_ids and eid in tail:
                ids.append(eid)
                keys.append(-1)
                positions.append(-1)
        return _Plan(np.asarray(keys, dtype=np.int64), ids, tail, files.vectors, np.asarray(positions, dtype=np.int64),
                     files.queued)

    def prefetch(self) -> None:
        """Start reading every queue tail now, in the background (a chromadb process takes seconds to start)."""
        for name in self._facts:
            files = self._files(name)
            if files is not None and files.touched and name not in self._tails:
                self._tails[name] = TailRead(self.palace, name, files.touched)

    def _read_tail(self, name: str, ids: list[str]) -> dict[str, tuple]:
        """The current state of the ids the queue tail touched, through chromadb's own replay."""
        pending = self._tails.pop(name, None)
        return (pending or TailRead(self.palace, name, ids)).result()

    def _map_vectors(self, facts: CollectionFacts, vec_seg: str, ids: list[str], optional: list[str] = ()):
        """(the segment's vectors, record index per id, record index or -1 per ``optional`` id).

        Every id of ``ids`` must be in the HNSW files (else the files have drifted from
        sqlite: a fallback); an ``optional`` id may be absent or delete-marked (-1).
        """
        none = np.zeros(0, dtype=np.int64)
        if not ids and not optional:
            return None, none, none
        seg_dir = self.palace / vec_seg
        try:
            header = _HEADER.unpack((seg_dir / "header.bin").read_bytes()[:_HEADER.size])
            with open(seg_dir / "index_metadata.pickle", "rb") as fh:
                id_to_label = pickle.load(fh)["id_to_label"]
        except (OSError, struct.error, pickle.UnpicklingError, KeyError, EOFError, TypeError) as exc:
            raise _Fallback(f"the HNSW segment files are unreadable ({exc})") from None
        _, offset_level0, _, count, record, label_offset, offset_data, *_ = header
        dimension = facts.dimension or 0
        level0 = seg_dir / "data_level0.bin"
        if offset_level0 != 0 or offset_data + 4 * dimension > label_offset or level0.stat().st_size < count * record:
            raise _Fallback("data_level0.bin is shorter than its header says, or laid out unexpectedly")
        lengths = seg_dir / "length.bin"
        if not lengths.is_file() or lengths.stat().st_size < count * 4:
            raise _Fallback("length.bin is missing or short")
        norms = np.fromfile(lengths, dtype="<f4", count=count)
        records = _Vectors(level0, count, record, slice(offset_data, offset_data + 4 * dimension), norms)
        label_bytes, link_headers = records.columns((label_offset, 8), (0, 4))
        labels = label_bytes.view("<u8").ravel()
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]

        def positions(wanted_ids) -> tuple[np.ndarray, np.ndarray]:
            """Record index per id (-1: not in the files) and whether hnswlib marked it deleted."""
            wanted = np.fromiter((id_to_label.get(rid, -1) for rid in wanted_ids), dtype=np.int64,
                                 count=len(wanted_ids))
            pos = np.full(len(wanted), -1, dtype=np.int64)
            if count:
                at = np.minimum(np.searchsorted(sorted_labels, wanted.astype(np.uint64)), count - 1)
                hit = (wanted >= 0) & (sorted_labels[at] == wanted.astype(np.uint64))
                pos[hit] = order[at[hit]]
            deleted = np.zeros(len(pos), dtype=bool)
            deleted[pos >= 0] = (link_headers[pos[pos >= 0], 2] & _DELETE_MARK) != 0  # byte 2 of the link header
            return pos, deleted

        pos, deleted = positions(ids)
        if (pos < 0).any():
            raise _Fallback("ids in chroma.sqlite3 that the HNSW segment does not hold (drift)")
        if deleted.any():
            raise _Fallback("ids in chroma.sqlite3 whose HNSW element is marked deleted (drift)")
        extra, extra_deleted = positions(list(optional))
        return records, pos, np.where(extra_deleted, -1, extra)


class _Vectors:
    """The vectors of hnswlib's data_level0.bin as chromadb returns them (stored × norm).

    The file is mapped only while a read runs: a mapping kept open would leave
    every page it touched in the migrator's RSS (268 MB at 160K drawers);
    unmapped after each read they stay in the page cache only.
    """

    def __init__(self, path: Path, count: int, record: int, vector_bytes: slice, norms: np.ndarray) -> None:
        self.path, self.count, self.record = path, count, record
        self.vector_bytes, self.norms = vector_bytes, norms

    def _map(self) -> np.memmap:
        return np.memmap(self.path, dtype=np.uint8, mode="r", shape=(self.count, self.record))

    def read(self, positions: np.ndarray) -> np.ndarray:
        """float32 vectors of the records at ``positions``: the stored (normalised) vector times its norm."""
        mm = self._map()
        try:
            stored = mm[positions, self.vector_bytes].view("<f4")  # fancy indexing copies
        finally:
            del mm
        return stored * self.norms[positions, None]

    def columns(self, *ranges: tuple[int, int]) -> list[np.ndarray]:
        """Byte ranges (offset, width) of every record, in one pass of slices so that memory stays flat."""
        out = [np.empty((self.count, width), dtype=np.uint8) for _, width in ranges]
        step = max(1, (64 << 20) // self.record)
        for start in range(0, self.count, step):
            mm = self._map()
            for dest, (offset, width) in zip(out, ranges):
                dest[start:start + step] = mm[start:start + step, offset:offset + width]
            del mm
        return out


class _Fallback(Exception):
    """This collection's files cannot be read directly; chromadb reads it."""


def _space(db: sqlite3.Connection, facts: CollectionFacts) -> str:
    """The distance space: legacy ``hnsw:space`` metadata, else the 1.x configuration, else Chroma's l2."""
    if facts.metadata.get("hnsw:space"):
        return str(facts.metadata["hnsw:space"])
    row = db.execute("SELECT config_json_str FROM collections WHERE id = ?", [facts.uuid]).fetchone()
    try:
        config = json.loads(row[0]) if row and row[0] else {}
    except json.JSONDecodeError:
        config = {}
    hnsw = config.get("hnsw") or config.get("hnsw_configuration") or {}
    return str(hnsw.get("space") or "l2") if isinstance(hnsw, dict) else "l2"


def _has_table(db: sqlite3.Connection, table: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone() is not None

