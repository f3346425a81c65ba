"""A few reusable connections per database, safe to share between threads.

MemPalace's MCP server and daemon call one backend instance from several
threads, so each call borrows a connection of its own instead of serialising
on one.  Connections are autocommit with ``pgvector`` registered (vectors
travel in binary); statements that must see each other (SET LOCAL and the
query it tunes, a write and its sequence) run in ``conn.transaction()``.

A connection the server dropped (restart, failover) surfaces on its next
statement; :meth:`ConnectionPool.run` retries such a call once on a fresh
connection.  Every other error propagates unchanged.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import psycopg
from mempalace.backends.base import BackendClosedError, BackendError

from ..dsn import connect, redact
from ..errors import PalacePgError

log = logging.getLogger(__name__)
T = TypeVar("T")

APPLICATION_NAME = "palace_pg.backend"


class ConnectionPool:
    def __init__(self, dsn: str, *, max_idle: int = 4) -> None:
        self.dsn = dsn
        self.max_idle = max_idle
        self._idle: list[psycopg.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _open(self) -> psycopg.Connection:
        try:
            return connect(self.dsn, autocommit=True, application_name=APPLICATION_NAME)
        except PalacePgError as exc:  # TargetUnreachable: message already redacted
            raise BackendError(str(exc)) from None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            if self._closed:
                raise BackendClosedError(f"postgres backend connections to {redact(self.dsn)} are closed")
            conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = self._open()
        try:
            yield conn
        finally:
            healthy = not conn.closed and not conn.broken and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            with self._lock:
                if healthy and not self._closed and len(self._idle) < self.max_idle:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def run(self, fn: Callable[[psycopg.Connection], T]) -> T:
        """``fn(conn)``, retried once on a new connection if the server dropped the old one."""
        for attempt in (1, 2):
            with self.connection() as conn:
                try:
                    return fn(conn)
                except psycopg.OperationalError:
                    if attempt == 2 or not (conn.closed or conn.broken):
                        raise
                    log.warning("connection to %s was lost; retrying once", redact(self.dsn))
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
