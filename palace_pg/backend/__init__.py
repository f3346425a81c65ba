"""MemPalace's ``postgres`` storage backend: the palace after the move, served from PostgreSQL.

Entry point (pyproject): ``mempalace.backends`` → ``postgres = palace_pg.backend:PostgresBackend``.
"""

from .collection import PostgresCollection
from .postgres_backend import PostgresBackend

__all__ = ["PostgresBackend", "PostgresCollection"]
