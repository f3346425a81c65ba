"""What one open palace and one of its tables hold, shared by the backend and its collections.

Kept apart from both so neither has to import the other to name them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from .connection import ConnectionPool
from .search_plan import Planner
from .settings import SearchSettings


@dataclass
class TableState:
    """What every collection object of one table shares (per backend, per palace)."""

    name: str
    table: str
    dimension: Optional[int]
    sequence_ready: bool = False

    @property
    def sequence(self) -> str:
        return f"{self.table}_seq"


@dataclass
class PalaceHandle:
    """One open palace: its pool, tuning and the table states its collections share."""

    palace_id: str
    local_path: Optional[str]
    dsn: str
    pool: ConnectionPool
    settings: SearchSettings
    planner: Planner
    tables: dict[str, TableState] = field(default_factory=dict)
    closed: bool = False
