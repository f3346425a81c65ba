"""Read the collections of a snapshot: facts from chroma.sqlite3, rows through chromadb.

Rows come through chromadb's own client (on the snapshot copy, never the
source), because only it merges the HNSW segment with the pending
``embeddings_queue`` tail and honours delete marks exactly as MemPalace sees
them.  Pages are offset-based over Chroma's internal row order, which is fixed
on a frozen snapshot, so a resumed run starts at exactly the next row.

chromadb refuses ``get()`` with metadatas for more than 32,766 rows (one SQL
variable per row), so a page never exceeds that.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import SourceError

log = logging.getLogger(__name__)

MAX_PAGE = 32_766


@dataclass
class CollectionFacts:
    name: str
    uuid: str
    dimension: int | None
    metadata: dict
    count: int | None = None  # rows as chromadb sees them (filled by `count_rows`)
    pending_queue_rows: int = 0  # writes newer than the flushed segment (replayed by chromadb)
    segment_files: dict | None = None


@dataclass
class Batch:
    offset: int
    ids: list[str]
    documents: list[str | None]
    metadatas: list[dict | None]
    embeddings: np.ndarray  # float32, one row per id


def sqlite_ro(path: Path) -> sqlite3.Connection:
    # The snapshot is ours, but reading read-only keeps even the copy as taken.
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def read_collection_facts(palace: Path) -> list[CollectionFacts]:
    """Collections, dimensions, collection metadata and pending queue rows, from chroma.sqlite3."""
    db_path = Path(palace) / "chroma.sqlite3"
    if not db_path.is_file():
        raise SourceError(f"{palace} has no chroma.sqlite3: not a ChromaDB palace",
                          "pass --palace with the folder that holds chroma.sqlite3")
    try:
        db = sqlite_ro(db_path)
        rows = db.execute("SELECT id, name, dimension FROM collections ORDER BY name").fetchall()
        facts = []
        for uuid, name, dimension in rows:
            meta = {}
            for key, s, i, f, b in db.execute(
                    "SELECT key, str_value, int_value, float_value, bool_value FROM collection_metadata "
                    "WHERE collection_id = ?", [uuid]):
                meta[key] = s if s is not None else bool(b) if b is not None else i if i is not None else f
            pending = 0
            try:
                seg = db.execute("SELECT id FROM segments WHERE collection = ? AND scope = 'VECTOR'", [uuid]).fetchone()
                flushed = db.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", [seg[0]]).fetchone() if seg else None
                pending = db.execute(
                    "SELECT count(*) FROM embeddings_queue WHERE topic LIKE ? AND seq_id > ?",
                    [f"%{uuid}", flushed[0] if flushed else 0]).fetchone()[0]
                segment_files = {}
                if seg:
                    seg_dir = Path(palace) / seg[0]
                    if seg_dir.is_dir():
                        segment_files = {p.name: p.stat().st_size for p in seg_dir.iterdir()}
            except sqlite3.Error:
                segment_files = None
            facts.append(CollectionFacts(name, uuid, dimension, meta, None, pending, segment_files))
        db.close()
        return facts
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"{db_path} is not a readable ChromaDB database ({exc})",
                          "restore the palace from a backup, or run `mempalace repair` on a copy first") from None


class ChromaReader:
    """Paged reads of one snapshot through chromadb's PersistentClient."""

    def __init__(self, palace: Path) -> None:
        import chromadb
        from chromadb.config import Settings

        self.palace = Path(palace)
        self._client = chromadb.PersistentClient(path=str(self.palace),
                                                 settings=Settings(anonymized_telemetry=False))

    def _collection(self, name: str):
        return self._client.get_collection(name, embedding_function=None)

    def count(self, name: str) -> int:
        return self._collection(name).count()

    def batches(self, name: str, *, batch_size: int, start: int = 0, stop: int | None = None,
                include_embeddings: bool = True) -> Iterator[Batch]:
        batch_size = max(1, min(batch_size, MAX_PAGE))
        col = self._collection(name)
        total = col.count() if stop is None else stop
        include = ["documents", "metadatas"] + (["embeddings"] if include_embeddings else [])
        offset = start
        while offset < total:
            try:
                page = col.get(limit=min(batch_size, total - offset), offset=offset, include=include)
            except Exception as exc:  # chromadb's own errors (Rust panics, damaged segments) carry no fix
                raise SourceError(
                    f"chromadb failed reading {name} at row {offset}: {exc}",
                    "the HNSW segment or chroma.sqlite3 is damaged; run `mempalace repair --mode from-sqlite` "
                    "on a COPY of the palace and migrate the repaired copy",
                ) from exc
            ids = page["ids"]
            if not ids:
                break
            emb = page.get("embeddings") if include_embeddings else None
            vectors = np.asarray(emb, dtype=np.float32) if emb is not None and len(emb) else np.zeros((len(ids), 0), np.float32)
            yield Batch(offset, list(ids), list(page["documents"]), list(page["metadatas"]), vectors)
            offset += len(ids)  # advance by rows actually returned (MemPalace #1153)

    def close(self) -> None:
        try:
            self._client.clear_system_cache()
        except Exception:  # chromadb versions differ; closing is best effort
            pass


_PROBE = r"""
import json, sys
import chromadb
from chromadb.config import Settings
c = chromadb.PersistentClient(path=sys.argv[1], settings=Settings(anonymized_telemetry=False))
out = {}
for col in c.list_collections():
    col = c.get_collection(col.name, embedding_function=None)
    n = col.count()
    got = col.get(limit=1, offset=max(0, n - 1), include=["embeddings", "documents", "metadatas"]) if n else {"ids": []}
    out[col.name] = {"count": n, "probe_ok": len(got["ids"]) == (1 if n else 0)}
print(json.dumps(out))
"""


class ChromadbChild:
    """A chromadb script in a throwaway process: its memory and any crash stay out of the migrator."""

    def __init__(self, script: str, args: list[str], timeout: float = 600) -> None:
        self._proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True)
        self._timeout = timeout

    def wait(self) -> str:
        """The child's stdout; its death becomes a SourceError with the fix."""
        out, err = self._proc.communicate(timeout=self._timeout)
        if self._proc.returncode != 0:
            tail = (err or out).strip().splitlines()[-3:]
            code = self._proc.returncode
            how = f"signal {-code}" if code < 0 else f"exit {code}"
            raise SourceError(
                f"chromadb cannot read the palace ({how}): {' | '.join(tail) or 'no message'}",
                "the HNSW segment or chroma.sqlite3 is damaged; run `mempalace repair --mode from-sqlite` "
                "on a COPY of the palace and migrate the repaired copy",
                returncode=code,
            )
        return out

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()


def probe_in_subprocess(palace: Path, timeout: float = 600) -> dict:
    """Open the snapshot with chromadb in a throwaway process: a segfault there is a finding, not a crash.

    Returns {collection: {"count": n, "probe_ok": bool}}; raises SourceError when chromadb dies.
    """
    out = ChromadbChild(_PROBE, [str(palace)], timeout).wait()
    return json.loads(out.strip().splitlines()[-1])


_READ_IDS = r"""
import json, pickle, sys
import numpy as np
import chromadb
from chromadb.config import Settings
palace, name, ids_file, out_file = sys.argv[1:5]
ids = json.load(open(ids_file))
col = chromadb.PersistentClient(path=palace, settings=Settings(anonymized_telemetry=False)).get_collection(
    name, embedding_function=None)
out = {}
for i in range(0, len(ids), 5000):
    got = col.get(ids=ids[i:i + 5000], include=["documents", "metadatas", "embeddings"])
    for rid, doc, meta, vec in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"]):
        out[rid] = (doc, meta, np.asarray(vec, dtype=np.float32))
with open(out_file, "wb") as fh:
    pickle.dump(out, fh, protocol=pickle.HIGHEST_PROTOCOL)
"""


TAIL_PREFIX = "palace_pg-tail-"  # + the owning process's pid + "-": a folder whose owner died is found by it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_orphaned_tails(root: Path | None = None) -> list[Path]:
    """Remove the tail folders of processes that died (a SIGKILL runs no cleanup); returns what it removed."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{TAIL_PREFIX}*-*"):
        pid = path.name[len(TAIL_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class TailRead:
    """{id: (document, metadata, float32 vector)} for ids chromadb holds, read in a throwaway process.

    chromadb replays its write queue exactly as MemPalace sees it.  The read
    starts at once and runs while the migrator does other work; ``result()``
    waits for it.  Ids chromadb does not return (deleted by a queued write) are absent.
    Its temp folder goes when the result is read, on ``cancel()`` (the reader's close), on any error,
    and, for a process that was killed, at the next TailRead's start (:func:`sweep_orphaned_tails`).
    """

    def __init__(self, palace: Path, name: str, ids: list[str], timeout: float = 600) -> None:
        sweep_orphaned_tails()
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{TAIL_PREFIX}{os.getpid()}-")
        try:
            ids_file, self._out = Path(self._tmp.name) / "ids.json", Path(self._tmp.name) / "rows.pickle"
            ids_file.write_text(json.dumps(ids))
            self._child = ChromadbChild(_READ_IDS, [str(palace), name, str(ids_file), str(self._out)], timeout)
        except BaseException:
            self._tmp.cleanup()
            raise

    @property
    def folder(self) -> Path:
        return Path(self._tmp.name)

    def result(self) -> dict[str, tuple]:
        try:
            self._child.wait()
            with open(self._out, "rb") as fh:
                return pickle.load(fh)  # written by our own child process just now
        finally:
            self._child.kill()  # a no-op once it exited; a timeout must not leave it writing into the folder
            self._tmp.cleanup()

    def cancel(self) -> None:
        self._child.kill()
        self._tmp.cleanup()
