"""What every phase shares: the contract, the run's options, its context and progress events.

A phase declares ``requires`` (the phases that must be done first), ``plan``
(what it will do, changing nothing) and ``apply`` (the work, checkpointed per
unit).  The runner (:mod:`.runner`) is the only writer of a phase's own
checkpoint row: it marks the phase done inside the transaction of the phase's
last unit, which the phase opens with ``ctx.final_transaction()``, so a phase's
last work and its "done" commit together or not at all (alembic's
``run_migrations`` + ``update_to_step``).  Preflight is not a phase: it runs
before every run, writes nothing, and has no row.
"""

from __future__ import annotations

import logging
import uuid
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator

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
    hnsw_m: int = 24  # target_db/schema.py HNSW_M, HNSW_EF_CONSTRUCTION: why
    hnsw_ef_construction: int = 200
    ef_search: int = 200  # the backend's floor (SearchSettings.ef_search): phase 6 measures what it runs
    recall_queries: int = 200
    verify_rows: str = "all"  # "all" compares every row; an int samples that many per collection
    daemon_url: str | None = None
    keep_snapshot: bool = False
    online: bool = False  # MemPalace may be writing: copy until still, catch up later with sync
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
    # set by the runner: writes the phase's "done" row inside the caller's transaction
    mark_phase_done: Callable[[dict], None] | None = None
    # set by a sync that compared the whole KG under this run's lock (palace_pg.sync.kg.KgProof)
    kg_proof: object | None = None

    def emit(self, phase: str, unit: str, done: int, total: int | None, message: str = "") -> None:
        try:
            self.progress(ProgressEvent(phase, unit, done, total, message))
        except Exception:  # a broken progress display must never break a migration
            log.exception("progress callback failed")

    @contextmanager
    def final_transaction(self, details: dict | None = None) -> Iterator[psycopg.Connection]:
        """The transaction of the phase's last unit: it also marks the phase done (the runner's row,
        with ``details`` beside the phase's seconds)."""
        with self.conn.transaction():
            yield self.conn
            if self.mark_phase_done is not None:
                self.mark_phase_done(details or {})


class Phase(ABC):
    name: str
    title: str
    requires: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def plan(self, ctx: RunContext) -> dict:
        """What the phase will do: steps, sizes, statements (for the plan and --dry-run).  Writes nothing."""

    @abstractmethod
    def apply(self, ctx: RunContext) -> dict:
        """Do the work, checkpointed per unit; the last unit inside ``ctx.final_transaction()``.

        Returns details for the run's summary.
        """
