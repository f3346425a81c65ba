"""Write the knowledge graph as MemPalace's sqlite file, every column and rowid kept.

The schema is the one ``mempalace.knowledge_graph.KnowledgeGraph`` creates (its
``_init_db``: tables, indexes, WAL).  Rows then go in on the class's own
connection in one transaction.  Not through ``apply_row``: it commits per row
(100K fsyncs) and lets sqlite pick rowids, while mempalace's unordered queries
answer in rowid order and ``dump_rows`` pages by it, so rowids are written as
the target holds them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..kg.store import ENTITY_COLUMNS, TRIPLE_COLUMNS

KG_FILENAME = "knowledge_graph.sqlite3"


def write_kg(palace: Path, pages: dict[str, Iterable[list[dict]]]) -> dict:
    """Write ``{"entities": pages, "triples": pages}`` (pages of rows with ``rowid``); returns the counts."""
    from mempalace.knowledge_graph import KnowledgeGraph

    counts = {"entities": 0, "triples": 0}
    graph = KnowledgeGraph(str(Path(palace) / KG_FILENAME))
    try:
        conn = graph._conn()
        with graph._lock, conn:  # one transaction
            for table, columns in (("entities", ENTITY_COLUMNS), ("triples", TRIPLE_COLUMNS)):
                names = ("rowid",) + columns
                # table and column names come from the fixed tuples in kg/store.py
                insert = f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
                for rows in pages.get(table, ()):
                    conn.executemany(insert, ([r.get("rowid")] + [r.get(c) for c in columns] for r in rows))
                    counts[table] += len(rows)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a self-contained main file
    finally:
        graph.close()
    return counts
