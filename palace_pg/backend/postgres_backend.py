"""``PostgresBackend``: MemPalace's BaseBackend for a palace moved to PostgreSQL.

Registered as ``postgres`` in the ``mempalace.backends`` entry-point group.
A palace is a folder holding palace_pg's marker ``palace_pg.json`` (no
password) plus one database holding its tables (target_db/schema.py); one
database holds exactly one palace.  ``detect(path)`` only stats the marker.

Isolation (RFC 001): a palace is its database.  The marker and the
database's ``backend_meta.palace_id`` carry the same id; a marker naming
another id, or a new palace pointed at a database that already holds one, is
a ``BackendMismatchError``: two palaces never share rows.  Namespaces are not
supported (``PalaceRef.namespace`` set → ``UnsupportedCapabilityError``).

``get_collection``:

* ``create=False``: no marker → ``PalaceNotFoundError``; no such collection
  → ``CollectionNotInitializedError``;
* ``create=True`` (not read-only): a palace without a marker is created —
  schema, ``palace_id``, marker — and a missing collection gets its table,
  indexes and registry row.  The DSN for a new palace: settings.py.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import Optional

from mempalace.backends.base import (
    BackendClosedError,
    BackendError,
    BackendMismatchError,
    BaseBackend,
    CollectionNotInitializedError,
    HealthStatus,
    PalaceNotFoundError,
    PalaceRef,
    UnsupportedCapabilityError,
)
from psycopg.conninfo import conninfo_to_dict

from ..dsn import redact
from ..marker import MARKER_NAME, Marker, marker_path
from ..target_db import schema
from . import maintenance, meta
from .collection import PostgresCollection
from .connection import ConnectionPool
from .handle import PalaceHandle, TableState
from .search_plan import Planner
from .settings import SearchSettings, marker_for, new_palace_dsn

log = logging.getLogger(__name__)

_COMPARED_TARGET_KEYS = ("host", "port", "dbname")




class PostgresBackend(BaseBackend):
    name = "postgres"
    spec_version = "1.0"
    capabilities = frozenset({
        "requires_explicit_embeddings",
        "supports_embeddings_in",
        "supports_embeddings_passthrough",
        "supports_embeddings_out",
        "supports_metadata_filters",
        "supports_contains_fast",
        "supports_lexical_search",
        "supports_metadata_facets",
        "supports_recency_order",
        "supports_update",
        "supports_server_side_indexes",
        "server_mode",
    })
    distance_metric = "cosine"
    maintenance_kinds = maintenance.KINDS

    def __init__(self) -> None:
        # No I/O here: the registry builds one instance per process at discovery.
        self._handles: dict[tuple[str, str], PalaceHandle] = {}
        self._pools: dict[str, ConnectionPool] = {}
        self._lock = threading.RLock()
        self._closed = False

    # -- discovery ------------------------------------------------------------------------
    @classmethod
    def detect(cls, path: str) -> bool:
        return os.path.isfile(os.path.join(path, MARKER_NAME))

    # -- opening --------------------------------------------------------------------------
    def get_collection(self, *args, **kwargs) -> PostgresCollection:
        palace, collection_name, create, options = _normalize_args(args, kwargs)
        if self._closed:
            raise BackendClosedError("PostgresBackend has been closed")
        if not palace.local_path:
            raise BackendError("the postgres backend needs a local palace path: its marker (palace_pg.json) says "
                               "which database holds the palace; pure-remote palaces are not supported")
        self.require_namespace_support(palace)
        options = dict(options or {})
        read_only = bool(options.get("read_only"))
        handle = self._handle(palace, options, create=create and not read_only)
        state = self._table_state(handle, collection_name, create=create and not read_only)
        return PostgresCollection(backend=self, handle=handle, state=state, read_only=read_only)

    def _pool(self, dsn: str) -> ConnectionPool:
        with self._lock:
            pool = self._pools.get(dsn)
            if pool is None:
                pool = self._pools[dsn] = ConnectionPool(dsn)
            return pool

    def _handle(self, palace: PalaceRef, options: dict, *, create: bool) -> PalaceHandle:
        path = palace.local_path
        marker = marker_for(path)
        explicit = options.get("dsn") or options.get("url")
        if marker is not None:
            dsn = marker.dsn()
            if explicit and not _same_target(explicit, dsn):
                raise BackendMismatchError(
                    f"{marker_path(path)} places this palace in {redact(dsn)}, not {redact(explicit)}; "
                    "open it without a dsn option, or set PALACE_PG_DSN if the database moved")
        elif not create:
            raise PalaceNotFoundError(f"{path} holds no {MARKER_NAME}: not a palace_pg palace")
        else:
            dsn = explicit or new_palace_dsn()
            os.makedirs(path, mode=0o700, exist_ok=True)  # before the database is claimed for it
        key = (str(palace.id), dsn)
        with self._lock:
            handle = self._handles.get(key)
            if handle is not None and not handle.closed and (marker is not None or not create):
                return handle
        pool = self._pool(dsn)
        palace_id = pool.run(lambda conn: self._claim(conn, path, marker, create))
        if marker is None:
            Marker.for_target(palace_id, dsn).write(path)
            log.info("new postgres palace %s in %s (marker written to %s)", palace_id, redact(dsn), path)
        stored = pool.run(lambda conn: meta.get(conn, meta.SEARCH)) or {}
        settings = SearchSettings.resolve(options, stored if isinstance(stored, dict) else {})
        handle = PalaceHandle(palace_id=palace_id, local_path=path, dsn=dsn, pool=pool, settings=settings,
                              planner=Planner(settings))
        with self._lock:
            self._handles[key] = handle
        return handle

    @staticmethod
    def _claim(conn, path: str, marker: Optional[Marker], create: bool) -> str:
        """The palace id, checked against (or, for a new palace, written to) the database."""
        with conn.transaction():
            stored = meta.get(conn, meta.PALACE_ID)
            if marker is not None:
                if stored and stored != marker.palace_id:
                    raise BackendMismatchError(
                        f"{marker_path(path)} names palace {marker.palace_id} but {redact(conn.info.dsn)} holds "
                        f"palace {stored}; point PALACE_PG_DSN at this palace's database")
                if not stored and create:
                    meta.ensure_base(conn)
                    meta.put(conn, meta.PALACE_ID, marker.palace_id)
                return marker.palace_id
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('palace_pg.claim'))")
            stored = meta.get(conn, meta.PALACE_ID)
            if stored:
                raise BackendMismatchError(
                    f"{redact(conn.info.dsn)} already holds palace {stored}; a new palace at {path} needs a "
                    "database of its own: set PALACE_PG_DSN (or postgres_dsn in MemPalace's config.json)")
            meta.ensure_base(conn)
            palace_id = str(uuid.uuid4())
            meta.put(conn, meta.PALACE_ID, palace_id)
            return palace_id

    def _table_state(self, handle: PalaceHandle, name: str, *, create: bool) -> TableState:
        with self._lock:
            state = handle.tables.get(name)
        if state is not None:
            return state

        def lookup(conn):
            if conn.execute("SELECT to_regclass('mempalace.collections') IS NULL").fetchone()[0]:
                return None
            row = conn.execute("SELECT table_name FROM mempalace.collections WHERE name = %s", [name]).fetchone()
            if row is None:
                return None
            if conn.execute("SELECT to_regclass(%s) IS NULL", [f"{schema.SCHEMA}.{row[0]}"]).fetchone()[0]:
                return None
            return TableState(name=name, table=row[0], dimension=maintenance.column_dimension(conn, row[0]))

        state = handle.pool.run(lookup)
        if state is None:
            if not create:
                raise CollectionNotInitializedError(
                    f"palace {handle.palace_id} has no collection {name!r} in {redact(handle.dsn)}")
            drawers = handle.pool.run(lambda conn: meta.get(conn, meta.DRAWERS_COLLECTION)) or _configured_drawers()
            table = schema.table_for_collection(name, drawers)

            def create_it(conn):
                with conn.transaction():
                    maintenance.create_collection(conn, name, table, None)

            handle.pool.run(create_it)
            state = handle.pool.run(lookup)
        with self._lock:
            return handle.tables.setdefault(name, state)

    # -- lifecycle ------------------------------------------------------------------------
    def close_palace(self, palace) -> None:
        palace_id = palace.id if isinstance(palace, PalaceRef) else str(palace)
        with self._lock:
            for key in [k for k in self._handles if k[0] == palace_id]:
                self._handles.pop(key).closed = True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for handle in self._handles.values():
                handle.closed = True
            self._handles.clear()
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close()

    def health(self, palace: Optional[PalaceRef] = None) -> HealthStatus:
        if self._closed:
            return HealthStatus.unhealthy("backend closed")
        if palace is None or not palace.local_path:
            return HealthStatus.healthy("postgres backend ready (no palace given)")
        try:
            marker = marker_for(palace.local_path)
            if marker is None:
                return HealthStatus.unhealthy(f"{palace.local_path} holds no {MARKER_NAME}")
            pool = self._pool(marker.dsn())
            stored = pool.run(lambda conn: meta.get(conn, meta.PALACE_ID))
        except Exception as exc:  # noqa: BLE001 - health summarises
            return HealthStatus.unhealthy(str(exc))
        if stored and stored != marker.palace_id:
            return HealthStatus.unhealthy(f"database holds palace {stored}, marker names {marker.palace_id}")
        return HealthStatus.healthy(f"palace {marker.palace_id} in {redact(marker.dsn())}")


def _same_target(a: str, b: str) -> bool:
    try:
        da, db = conninfo_to_dict(a), conninfo_to_dict(b)
    except Exception:  # noqa: BLE001 - unparseable means different
        return False
    return all(str(da.get(k) or "") == str(db.get(k) or "") for k in _COMPARED_TARGET_KEYS)


def _configured_drawers() -> str:
    try:
        from mempalace.config import get_configured_collection_name

        return get_configured_collection_name()
    except Exception:  # noqa: BLE001
        return "mempalace_drawers"


def _normalize_args(args, kwargs) -> tuple[PalaceRef, str, bool, Optional[dict]]:
    """Accept ``palace=PalaceRef`` (RFC 001) and the legacy ``(palace_path, collection_name, create)`` forms."""
    kwargs = dict(kwargs)
    if "palace" in kwargs:
        palace = kwargs.pop("palace")
        if not isinstance(palace, PalaceRef):
            raise TypeError("palace= must be a PalaceRef")
    elif args or "palace_path" in kwargs:
        path = str(args[0]) if args else str(kwargs.pop("palace_path"))
        args = args[1:]
        palace = PalaceRef(id=path, local_path=path)
    else:
        raise TypeError("get_collection needs palace= or a palace path")
    args = list(args)
    name = kwargs.pop("collection_name", None) or (args.pop(0) if args else None)
    if not name:
        raise TypeError("collection_name is required")
    create = bool(kwargs.pop("create", args.pop(0) if args else False))
    options = kwargs.pop("options", None)
    if args or kwargs:
        raise TypeError(f"unexpected arguments to get_collection: {args or ''} {sorted(kwargs) or ''}")
    return palace, str(name), create, options


__all__ = ["PostgresBackend", "PalaceHandle", "UnsupportedCapabilityError"]
