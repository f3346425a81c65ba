"""What every phase shares: the run's options, its context and progress events."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import psycopg

from ..source.palace import SourcePalace

log = logging.getLogger(__name__)


@dataclass
class MigrationOptions:
    palace: Path
    dsn: str | None = None
    batch_size: int = 5000
    work_dir: Path | None = None
    restart: bool = False
    only: list[str] | None = None  # phase names to run (None: all pending)
    hnsw_m: int = 16
    hnsw_ef_construction: int = 100
    ef_search: int = 100
    recall_queries: int = 200
    verify_rows: str = "all"  # "all" compares every row; an int samples that many per collection
    daemon_url: str | None = None
    keep_snapshot: bool = False
    kg_store: str = "auto"  # issue 18: "age" | "tables" | "auto" (AGE where installed, else tables)


@dataclass
class ProgressEvent:
    phase: str
    unit: str
    done: int
    total: int | None
    message: str = ""


ProgressFn = Callable[[ProgressEvent], None]


@dataclass
class RunContext:
    options: MigrationOptions
    conn: psycopg.Connection
    source: SourcePalace
    run_id: uuid.UUID
    progress: ProgressFn = lambda event: None
    results: dict = field(default_factory=dict)

    def emit(self, phase: str, unit: str, done: int, total: int | None, message: str = "") -> None:
        try:
            self.progress(ProgressEvent(phase, unit, done, total, message))
        except Exception:  # a broken progress display must never break a migration
            log.exception("progress callback failed")


class Phase(Protocol):
    name: str
    title: str

    def describe(self, ctx: RunContext) -> dict:
        """What the phase will do: steps, sizes, statements (for the plan and --dry-run)."""

    def run(self, ctx: RunContext) -> dict:
        """Do the work, checkpointed in the target; return details for the summary."""
