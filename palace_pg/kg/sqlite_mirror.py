"""A read-only sqlite copy of the graph in mempalace's schema, for code that runs SQL on ``kg._conn()``.

mempalace's own helpers that do this are replaced by :mod:`palace_pg.kg.hook`;
this keeps other readers (scripts, plugins, tests that inspect rows) working.
It is a snapshot taken at the call: later writes through the KG class are not
in it, and writing to it fails (``PRAGMA query_only``) rather than being lost.
"""

from __future__ import annotations

import logging
import sqlite3

from .store import ENTITY_COLUMNS, TRIPLE_COLUMNS, KGStore

log = logging.getLogger(__name__)

# mempalace.knowledge_graph.KnowledgeGraph._init_db, verbatim in substance.
_DDL = """
CREATE TABLE entities (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, type TEXT DEFAULT 'unknown',
    properties TEXT DEFAULT '{}', created_at TEXT DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE triples (
    id TEXT PRIMARY KEY, subject TEXT NOT NULL, predicate TEXT NOT NULL, object TEXT NOT NULL,
    valid_from TEXT, valid_to TEXT, confidence REAL DEFAULT 1.0, source_closet TEXT, source_file TEXT,
    source_drawer_id TEXT, adapter_name TEXT, extracted_at TEXT DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (subject) REFERENCES entities(id), FOREIGN KEY (object) REFERENCES entities(id));
CREATE INDEX idx_triples_subject ON triples(subject);
CREATE INDEX idx_triples_object ON triples(object);
CREATE INDEX idx_triples_predicate ON triples(predicate);
CREATE INDEX idx_triples_valid ON triples(valid_from, valid_to);
"""


def sqlite_snapshot(store: KGStore) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.executescript(_DDL)
    for table, columns in (("entities", ENTITY_COLUMNS), ("triples", TRIPLE_COLUMNS)):
        rows = store.rows(table)
        conn.executemany(
            f"INSERT INTO {table} (rowid, {', '.join(columns)}) VALUES (?{', ?' * len(columns)})",
            [[r["rowid"], *(r[c] for c in columns)] for r in rows],
        )
        log.debug("sqlite snapshot: %d %s", len(rows), table)
    conn.commit()
    conn.execute("PRAGMA query_only = ON")
    return conn
