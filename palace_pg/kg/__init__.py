"""The MemPalace knowledge graph in PostgreSQL: on Apache AGE, or on plain tables where AGE is missing.

- :mod:`palace_pg.kg.stores`: which store a database uses (``age`` | ``tables``), and the
  store-neutral ``bulk_load``/``read_entities``/``read_triples`` (the migration's KG phase, verify).
- :mod:`palace_pg.kg.age_ddl` / ``age_bulk`` / ``age_store``: the AGE graph's layout and DDL
  (``ensure_graph``), its bulk route, and ``AgeStore``.
- :mod:`palace_pg.kg.tables_ddl` / ``tables_bulk`` / ``tables_store``: the same on plain tables
  (``TablesStore``).
- :mod:`palace_pg.kg.graph`: ``AgeKnowledgeGraph`` (alias ``PostgresKnowledgeGraph``), mempalace's
  ``KnowledgeGraph`` API over whichever ``KGStore`` the database holds.
- :mod:`palace_pg.kg.store`: the ``KGStore`` interface and row shapes.
- :mod:`palace_pg.kg.hook` / :mod:`palace_pg.kg.autoload`: make mempalace use it
  (``MEMPALACE_KG_BACKEND=age``).

Names are resolved lazily: the ``.pth`` bootstrap imports ``palace_pg.kg.autoload``
at every interpreter start, and that must not pull in psycopg or mempalace.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "AgeKnowledgeGraph": ".graph",
    "PostgresKnowledgeGraph": ".graph",
    "AgeStore": ".age_store",
    "TablesStore": ".tables_store",
    "bulk_load": ".stores",
    "ensure_graph": ".age_ddl",
    "read_entities": ".stores",
    "read_triples": ".stores",
    "KgStoreUnavailable": ".stores",
    "KGStore": ".store",
    "ENTITY_COLUMNS": ".store",
    "TRIPLE_COLUMNS": ".store",
    "KgError": ".errors",
    "KgIntegrityError": ".errors",
    "KgNotConfigured": ".errors",
    "KgValueRejected": ".errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
