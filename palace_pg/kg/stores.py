"""Which KG store a database uses (``age`` or ``tables``), and the store-neutral entry points.

- ``age``: the Apache AGE graph (:mod:`~palace_pg.kg.age_ddl`, ``age_bulk``, ``age_store``);
- ``tables``: plain tables, for servers without AGE (:mod:`~palace_pg.kg.tables_ddl`, ``tables_bulk``,
  ``tables_store``).

The choice is made once, at migration (``--kg-store age|tables|auto``; auto = AGE
where the extension is installed in the database, tables otherwise), recorded in
``backend_meta`` (key ``kg_store``) and in the marker.  Everything that opens the
graph afterwards asks :func:`held`: the record, else whichever store's objects exist.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import psycopg

from ..target_db import schema, state
from .errors import KgError

STORES = ("age", "tables")
CHOICES = ("auto", *STORES)
META_KEY = "kg_store"


class KgStoreUnavailable(KgError):
    """The requested KG store cannot be used on this database (e.g. ``age`` without the extension)."""


def _modules(store: str) -> tuple[ModuleType, ModuleType, ModuleType]:
    """(ddl, bulk, online store) modules of a store, imported on demand."""
    if store not in STORES:
        raise KgStoreUnavailable(f"unknown KG store {store!r}", f"use one of {', '.join(STORES)}")
    return tuple(importlib.import_module(f"{__package__}.{store}_{part}") for part in ("ddl", "bulk", "store"))


def age_installed(conn: psycopg.Connection) -> bool:
    return conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'age'").fetchone() is not None


def recorded(conn: psycopg.Connection) -> str | None:
    """The store backend_meta records (None before the schema phase, or on a bare database)."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{schema.SCHEMA}.backend_meta"]).fetchone()[0]
    value = state.get_meta(conn, META_KEY) if exists else None
    return value if value in STORES else None


def present(conn: psycopg.Connection) -> list[str]:
    """The stores whose objects exist in this database."""
    from .age_ddl import graph_exists
    from .tables_ddl import tables_exist

    found = ["tables"] if tables_exist(conn) else []
    if age_installed(conn) and graph_exists(conn):
        found.insert(0, "age")
    return found


def held(conn: psycopg.Connection) -> str | None:
    """The store this database's graph lives in: the record, else the one whose objects exist (None: neither)."""
    name = recorded(conn)
    if name:
        return name
    found = present(conn)
    if len(found) == 2:  # both, unrecorded (a test database): the one holding rows
        return "tables" if not is_empty(conn, "tables") or is_empty(conn, "age") else "age"
    return found[0] if found else None


def resolve(conn: psycopg.Connection, requested: str = "auto") -> str:
    """The store to use: the requested one (checked), or for ``auto`` the held one, else AGE if installed."""
    if requested not in CHOICES:
        raise KgStoreUnavailable(f"unknown KG store {requested!r}", f"use one of {', '.join(CHOICES)}")
    if requested == "auto":
        return held(conn) or ("age" if age_installed(conn) else "tables")
    if requested == "age" and not age_installed(conn):
        raise KgStoreUnavailable("the age extension is not installed in this database",
                                 "CREATE EXTENSION age (with 'age' in shared_preload_libraries), "
                                 "or use --kg-store tables")
    return requested


def store_class(store: str):
    return getattr(_modules(store)[2], {"age": "AgeStore", "tables": "TablesStore"}[store])


def ensure(conn: psycopg.Connection, store: str) -> None:
    """Create the store's graph/tables and indexes if missing (idempotent, never commits)."""
    ddl = _modules(store)[0]
    (ddl.ensure_graph if store == "age" else ddl.ensure_tables)(conn)


def is_empty(conn: psycopg.Connection, store: str) -> bool:
    """No row in the store (true when its objects do not exist)."""
    ddl = _modules(store)[0]
    if store == "age":
        return not (age_installed(conn) and ddl.graph_exists(conn)) or ddl.graph_is_empty(conn)
    return not ddl.tables_exist(conn) or ddl.tables_are_empty(conn)


def drop(conn: psycopg.Connection, store: str) -> None:
    """Drop the store's objects, if any (its rows with them)."""
    if store == "age":
        if age_installed(conn):
            _modules("age")[0].drop_graph(conn)
    else:
        _modules("tables")[0].drop_tables(conn)


def bulk_load(conn: psycopg.Connection, entities, triples, *, store: str | None = None) -> dict:
    """The migration's bulk route into ``store`` (default: the held one, else auto)."""
    return _modules(store or resolve(conn))[1].bulk_load(conn, entities, triples)


def read_entities(conn: psycopg.Connection, *, store: str | None = None, ids: list[str] | None = None) -> list[dict]:
    """Every entity row (or those of ``ids``) as sqlite returns it, plus ``rowid``, ordered by id; [] without a graph."""
    store = store or held(conn)
    return _modules(store)[1].read_entities(conn, ids) if store else []


def read_triples(conn: psycopg.Connection, *, store: str | None = None, ids: list[str] | None = None) -> list[dict]:
    """Every triple row (or those of ``ids``) as sqlite returns it, plus ``rowid``, ordered by id; [] without a graph."""
    store = store or held(conn)
    return _modules(store)[1].read_triples(conn, ids) if store else []


def count_rows(conn: psycopg.Connection, *, store: str | None = None) -> tuple[int, int]:
    """(entities, triples) the database's KG holds."""
    store = store or held(conn)
    return _modules(store)[1].count_rows(conn) if store else (0, 0)
