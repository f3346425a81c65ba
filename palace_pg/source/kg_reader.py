"""Read the sqlite knowledge graph (entities and triples, every column) from the snapshot.

The KG lives in WAL mode and its newest facts are often only in the ``-wal``
file; the snapshot copied it, and sqlite applies it when the copy is opened.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..errors import SourceError

ENTITY_COLUMNS = ("id", "name", "type", "properties", "created_at")
TRIPLE_COLUMNS = ("id", "subject", "predicate", "object", "valid_from", "valid_to", "confidence",
                  "source_closet", "source_file", "source_drawer_id", "adapter_name", "extracted_at")


def resolve_kg_path(palace: Path) -> Path | None:
    """The KG that belongs to the palace, by mempalace 3.11's rule (``palace_audit.resolve_kg_path``).

    A palace-local ``knowledge_graph.sqlite3`` wins; the legacy
    ``~/.mempalace/knowledge_graph.sqlite3`` belongs to the default palace alone.
    The rule is restated over mempalace's own constants because importing
    ``palace_audit`` imports chromadb (~3 s); tests/test_kg_reader.py holds the
    two to the same answers.
    """
    from mempalace.config import DEFAULT_PALACE_PATH
    from mempalace.knowledge_graph import DEFAULT_KG_PATH

    local = os.path.join(palace, "knowledge_graph.sqlite3")
    if os.path.isfile(local):
        path = local
    elif os.path.realpath(palace) == os.path.realpath(DEFAULT_PALACE_PATH):
        path = DEFAULT_KG_PATH
    else:
        path = local
    return Path(path) if os.path.isfile(path) else None


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]  # table from a fixed pair


def read_kg(kg_path: Path | None) -> tuple[list[dict], list[dict]]:
    """(entities, triples) as dicts of every column plus ``rowid``, in rowid order."""
    if kg_path is None:
        return [], []
    try:
        db = sqlite3.connect(str(kg_path))  # the snapshot copy: opening applies its -wal
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            out = []
            for table, wanted in (("entities", ENTITY_COLUMNS), ("triples", TRIPLE_COLUMNS)):
                if table not in tables:
                    out.append([])
                    continue
                present = _columns(db, table)
                # Older palaces lack source_drawer_id/adapter_name (added by mempalace's _migrate_schema).
                cols = [c for c in wanted if c in present]
                extra = [c for c in present if c not in wanted]
                select = ", ".join(["rowid"] + cols + extra)
                rows = db.execute(f"SELECT {select} FROM {table} ORDER BY rowid").fetchall()
                names = ["rowid"] + cols + extra
                records = []
                for row in rows:
                    rec = dict(zip(names, row))
                    for c in wanted:
                        rec.setdefault(c, None)
                    records.append(rec)
                out.append(records)
            return out[0], out[1]
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"the knowledge graph {kg_path} is not readable ({exc})",
                          "restore knowledge_graph.sqlite3 (with its -wal) from a backup") from None
