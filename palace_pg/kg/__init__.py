"""The MemPalace knowledge graph on Apache AGE.

- :mod:`palace_pg.kg.age_store`: the graph layout, ``ensure_graph``, ``bulk_load``,
  ``read_entities``/``read_triples`` (the migration's KG phase) and ``AgeStore``.
- :mod:`palace_pg.kg.graph`: ``AgeKnowledgeGraph``, mempalace's ``KnowledgeGraph`` API over a ``KGStore``.
- :mod:`palace_pg.kg.store`: the ``KGStore`` interface and row shapes.
"""

from .graph import AgeKnowledgeGraph
from .age_store import AgeStore, bulk_load, ensure_graph, read_entities, read_triples
from .errors import KgError, KgIntegrityError, KgNotConfigured, KgValueRejected
from .store import ENTITY_COLUMNS, TRIPLE_COLUMNS, KGStore

__all__ = [
    "AgeKnowledgeGraph",
    "AgeStore", "KGStore", "bulk_load", "ensure_graph", "read_entities", "read_triples",
    "ENTITY_COLUMNS", "TRIPLE_COLUMNS", "KgError", "KgIntegrityError", "KgNotConfigured", "KgValueRejected",
]
