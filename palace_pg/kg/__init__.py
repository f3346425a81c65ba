"""The MemPalace knowledge graph on Apache AGE.

- :mod:`palace_pg.kg.age_store`: the graph layout, ``ensure_graph``, ``bulk_load``,
  ``read_entities``/``read_triples`` (the migration's KG phase) and ``AgeStore``.
- :mod:`palace_pg.kg.graph`: ``AgeKnowledgeGraph``, mempalace's ``KnowledgeGraph`` API over a ``KGStore``.
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
    "AgeStore": ".age_store",
    "bulk_load": ".age_store",
    "ensure_graph": ".age_store",
    "read_entities": ".age_store",
    "read_triples": ".age_store",
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
