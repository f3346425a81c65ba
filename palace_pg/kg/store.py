"""The storage interface the knowledge-graph class talks to, and the row shapes it moves.

``AgeKnowledgeGraph`` holds the MemPalace semantics (id derivation, temporal
rules, idempotency, sqlite's ordering); a ``KGStore`` only stores and fetches
rows.  ``AgeStore`` is the Apache AGE implementation.

Rows are plain dicts keyed by sqlite's column names (``ENTITY_COLUMNS``,
``TRIPLE_COLUMNS``) plus ``rowid``, with the Python types ``sqlite3`` returns.
``TablesStore`` (:mod:`palace_pg.kg.tables_store`) is the plain-tables implementation;
:mod:`palace_pg.kg.stores` says which one a database uses.
Every method runs inside the connection's current transaction and never commits.
"""

from __future__ import annotations

from typing import Iterable, Protocol, runtime_checkable

ENTITY_COLUMNS = ("id", "name", "type", "properties", "created_at")
TRIPLE_COLUMNS = (
    "id",
    "subject",
    "predicate",
    "object",
    "valid_from",
    "valid_to",
    "confidence",
    "source_closet",
    "source_file",
    "source_drawer_id",
    "adapter_name",
    "extracted_at",
)
TABLES = {"entities": ENTITY_COLUMNS, "triples": TRIPLE_COLUMNS}


@runtime_checkable
class KGStore(Protocol):
    """What the knowledge-graph class needs from a storage engine."""

    name: str  # "age" | "tables": what backend_meta.kg_store records

    # -- lifecycle ---------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create the graph/tables and indexes if missing (idempotent)."""

    def prepare_session(self) -> None:
        """Once per new connection (e.g. put ag_catalog on the search_path)."""

    def lock_writes(self) -> None:
        """Serialise writers until the current transaction ends (sqlite has one writer too)."""

    # -- entities ----------------------------------------------------------
    def get_entities(self, ids: Iterable[str]) -> dict[str, dict]:
        """Stored entity rows by id (placeholders excluded)."""


    def put_entity(self, row: dict) -> None:
        """Insert the entity, or replace the stored one with the same id (keeps its edges)."""

    def insert_or_ignore_entities(self, rows: list[dict]) -> None:
        """sqlite's ``INSERT OR IGNORE INTO entities`` for each row (no rowid), in order: nothing if
        an entity has the id; else the row, with rowid max + 1 (a placeholder becomes the entity).
        Reads nothing back, so in pipeline mode it only sends."""

    def ensure_endpoints(self, ids: Iterable[str]) -> int:
        """Make sure a node exists for each id so an edge can attach; returns how many placeholders were created."""

    def entity_candidates(self, entity_id: str, name: str, name_patterns: list[str],
                          id_patterns: list[str]) -> list[dict]:
        """Entity rows whose id/name equals, or whose name/id may match a LIKE pattern, rowid order;
        a superset (e.g. ILIKE), filtered by :func:`palace_pg.kg.candidates.pick`."""

    # -- triples -----------------------------------------------------------
    def open_triples(self, subject: str, predicate: str, obj: str) -> list[dict]:
        """Triples (subject, predicate, object) with valid_to NULL, rowid order."""

    def get_triple(self, triple_id: str) -> dict | None:
        """One triple row by id."""

    def put_triple(self, row: dict) -> None:
        """Insert the triple, or replace the stored one with the same id."""

    def insert_triple(self, row: dict) -> None:
        """Insert a triple with a new id whose subject and object nodes exist (the add_triple path).

        Without a ``rowid`` the row gets max + 1.  Reads nothing back (a missing endpoint fails
        the transaction), so in pipeline mode it only sends."""

    def set_valid_to(self, triple_ids: list[str], valid_to: str) -> None:
        """Close the given triples."""

    def triples_of(self, entity_id: str, direction: str) -> list[dict]:
        """Triples whose subject ('outgoing') or object ('incoming') is the entity, with
        ``subject_name``/``object_name`` (None when that end has no entity row), rowid order."""

    def triples_with_predicate(self, predicate: str) -> list[dict]:
        """Triples with this predicate, with both names, rowid order."""

    def timeline(self, entity_id: str | None, limit: int, offset: int) -> list[dict]:
        """Triples with both ends named, ordered valid_from ASC NULLS LAST, id (bytewise)."""

    def open_named_triples(self) -> list[dict]:
        """Open triples (valid_to NULL) with both ends named, rowid order."""

    def open_predicate_counts(self) -> dict[str, int]:
        """{predicate: count} over open triples."""

    def count_triples(self, entity_id: str | None = None) -> int:
        """All triples, or those touching the entity."""

    def stats(self) -> dict:
        """entities, triples, current_facts, distinct predicates (sorted bytewise)."""

    # -- replication / verification -----------------------------------------
    def next_rowid(self, table: str) -> int:
        """sqlite's rowid for the next insert into ``table``: max(rowid) + 1."""

    def rows(self, table: str, after_rowid: int = 0, limit: int | None = None) -> list[dict]:
        """Rows of ``table`` in rowid order (placeholders excluded), with ``rowid``."""
