"""The source palace as the migration sees it: a snapshot plus the facts read from it."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import SourceError
from .chroma_direct import DirectReader
from .chroma_reader import CollectionFacts, probe_in_subprocess, read_collection_facts
from .kg_reader import read_kg, resolve_kg_path
from .snapshot import Snapshot, take_snapshot

log = logging.getLogger(__name__)

DEFAULT_DRAWERS = "mempalace_drawers"
EMBEDDER_SIDECAR = "mempalace_embedder.json"
# Files that are the Chroma store itself or the KG: carried as rows, not as files.
_STORE_FILES = ("chroma.sqlite3", "chroma.sqlite3-wal", "chroma.sqlite3-shm", "chroma.sqlite3-journal")
# Other files are carried into mempalace.files up to this size; larger ones stay in the backup, reported.
MAX_CARRIED_FILE = 64 << 20


def default_work_dir(palace: Path) -> Path:
    """Where snapshots go: $PALACE_PG_WORK_DIR, else the system temp folder (never inside the palace)."""
    return Path(os.environ.get("PALACE_PG_WORK_DIR") or Path(tempfile.gettempdir()) / "palace_pg-work")


def drawers_collection_name() -> str:
    """The drawers collection's configured name (mempalace's config `collection_name`)."""
    try:
        from mempalace.config import MempalaceConfig

        return MempalaceConfig().collection_name or DEFAULT_DRAWERS
    except Exception:  # an unreadable config must not stop a read-only preflight
        return DEFAULT_DRAWERS


@dataclass
class SourcePalace:
    path: Path
    snapshot: Snapshot
    collections: list[CollectionFacts]
    kg_source_path: Path | None
    drawers_name: str = DEFAULT_DRAWERS
    embedder: dict = field(default_factory=dict)
    _kg: tuple[list[dict], list[dict]] | None = None
    _reader: DirectReader | None = None

    @classmethod
    def open(cls, palace: str | os.PathLike, work_dir: str | os.PathLike | None = None,
             progress: Callable[[int, int], None] | None = None, *, online: bool = False) -> "SourcePalace":
        path = Path(palace).expanduser().resolve()
        if not path.is_dir():
            raise SourceError(f"the palace folder {path} does not exist", "pass --palace with the palace's path")
        if not (path / "chroma.sqlite3").is_file():
            hint = " (it holds palace_pg.json: it was already cut over)" if (path / "palace_pg.json").exists() else ""
            raise SourceError(f"{path} has no chroma.sqlite3: not a ChromaDB palace{hint}",
                              "pass --palace with the folder that holds chroma.sqlite3")
        kg = resolve_kg_path(path)
        snap = take_snapshot(path, Path(work_dir) if work_dir else default_work_dir(path), kg, progress,
                             online=online)
        collections = read_collection_facts(snap.palace)
        sidecar = snap.palace / EMBEDDER_SIDECAR
        embedder = {}
        if sidecar.is_file():
            try:
                embedder = json.loads(sidecar.read_text())
            except json.JSONDecodeError as exc:
                raise SourceError(f"{EMBEDDER_SIDECAR} is not valid JSON ({exc})",
                                  "fix or remove the sidecar (mempalace palace set-embedder rewrites it)") from None
        src = cls(path, snap, collections, kg, drawers_collection_name(), embedder)
        src.reader.prefetch()
        return src

    # -- rows ---------------------------------------------------------------------------
    @property
    def reader(self) -> DirectReader:
        if self._reader is None:
            self._reader = DirectReader(self.snapshot.palace, self.collections)
        return self._reader

    def probe(self) -> dict:
        """How each collection will be read; chromadb is tried first in a throwaway process where needed.

        Rows are read straight from the files (``chroma_direct``).  Rows that
        exist only in the write queue are read by chromadb in a throwaway
        process.  When the files disagree, chromadb reads the whole collection
        in this process: it is then first opened in a separate one, so that a
        crash on a damaged palace is a finding (SourceError), not the migrator's death.
        Returns {collection: {"reader": "direct" | "direct+chromadb" | "chromadb", "why": str}}.
        """
        out = {}
        for facts in self.collections:
            if not self.reader.needs_chromadb(facts.name):
                out[facts.name] = {"reader": "direct", "why": ""}
            elif (why := self.reader.fallback_reason(facts.name)) is not None:
                out[facts.name] = {"reader": "chromadb", "why": why}
            else:
                out[facts.name] = {"reader": "direct+chromadb", "why": "writes still in embeddings_queue"}
        if any(v["reader"] == "chromadb" for v in out.values()):  # a queue tail is read in its own process anyway
            probed = probe_in_subprocess(self.snapshot.palace)
            for facts in self.collections:
                if facts.name in probed and out[facts.name]["reader"] == "chromadb":
                    facts.count = probed[facts.name]["count"]
        return out

    def count(self, name: str) -> int:
        facts = self.collection(name)
        if facts.count is None:
            facts.count = self.reader.count(name)
        return facts.count

    def collection(self, name: str) -> CollectionFacts:
        for facts in self.collections:
            if facts.name == name:
                return facts
        raise SourceError(f"the palace has no collection {name!r}", "check the palace path")

    @property
    def drawers(self) -> CollectionFacts | None:
        return next((c for c in self.collections if c.name == self.drawers_name), None)

    @property
    def other_collections(self) -> list[CollectionFacts]:
        return [c for c in self.collections if c.name != self.drawers_name]

    def kg(self) -> tuple[list[dict], list[dict]]:
        if self._kg is None:
            self._kg = read_kg(self.snapshot.kg_path)
        return self._kg

    def embedder_identity(self, name: str) -> dict:
        """{model_name, dimension} for a collection: the sidecar's, the dimension from Chroma."""
        entry = self.embedder.get(name) if isinstance(self.embedder, dict) else None
        dim = self.collection(name).dimension
        model = (entry or {}).get("model_name") or ("minilm" if name != "mempalace_assets" else "unknown")
        return {"model_name": model, "dimension": dim, "recorded_dimension": (entry or {}).get("dimension")}

    def identity(self) -> dict:
        """What makes this palace this palace: its Chroma collection UUIDs (stable across moves)."""
        return {"collections": {c.name: c.uuid for c in self.collections}}

    # -- non-store files ----------------------------------------------------------------
    def carried_files(self) -> tuple[list[tuple[str, Path]], list[dict]]:
        """(files to carry into mempalace.files, files left in the Chroma backup with the reason)."""
        carried, left = [], []
        segment_dirs = {c_dir for c_dir in (p.name for p in self.snapshot.palace.iterdir() if p.is_dir())
                        if (self.snapshot.palace / c_dir / "header.bin").exists()
                        or (self.snapshot.palace / c_dir / "data_level0.bin").exists()}
        kg_names = {"knowledge_graph.sqlite3", "knowledge_graph.sqlite3-wal", "knowledge_graph.sqlite3-shm"}
        for entry in self.snapshot.files:
            rel = entry.relpath
            top = rel.split("/")[1] if rel.startswith("palace/") else None
            if top in _STORE_FILES or top in segment_dirs:
                continue
            if top in kg_names or rel.startswith("kg/"):
                left.append({"path": rel, "reason": "the knowledge graph: carried as AGE vertices and edges"})
                continue
            if entry.size > MAX_CARRIED_FILE:
                left.append({"path": rel, "reason": f"{entry.size} bytes: too large to carry; stays in the backup"})
                continue
            carried.append((rel, self.snapshot.root / rel))
        return carried, left

    def release_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
            import gc

            gc.collect()

    def close(self, *, remove_snapshot: bool = True) -> None:
        self.release_reader()
        if remove_snapshot:
            self.snapshot.remove()
