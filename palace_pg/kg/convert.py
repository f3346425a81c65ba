"""Move a migrated knowledge graph between the KG stores (``age`` ⇄ ``tables``), verified, in one transaction.

``convert(conn, to)`` takes the graph's write lock (online writers wait), reads
every entity and triple of the store in use, bulk-loads them into the other
store, reads that store back and compares every column of every row (type-strict),
records the new store in ``backend_meta`` and, unless told to keep it, drops the
old store.  All of it is one transaction: any failure or difference rolls back
and the old store stays in use, untouched.  A non-empty destination is refused.

Processes that already hold a ``AgeKnowledgeGraph`` (an MCP server) keep the
store they opened: restart them after a conversion.
"""

from __future__ import annotations

import logging
import time

import psycopg

from ..dsn import shown
from ..target_db import schema, state
from . import stores
from .errors import KgError, KgIntegrityError
from .store import TABLES

log = logging.getLogger(__name__)


class KgConvertRefused(KgError):
    """The conversion cannot start (nothing to convert, same store, destination not empty, no AGE)."""


def _same(a, b) -> bool:
    # type-strict: 1, 1.0 and True differ, as sqlite's values do
    return type(a) is type(b) and a == b


def differences(want: dict[str, list[dict]], got: dict[str, list[dict]], limit: int = 20) -> list[dict]:
    """Rows missing, extra, or differing in a column between two {table: rows} reads."""
    found: list[dict] = []
    for table, columns in TABLES.items():
        a = {r["id"]: r for r in want[table]}
        b = {r["id"]: r for r in got[table]}
        found += [{"table": table, "id": i, "kind": "missing"} for i in sorted(a.keys() - b.keys())]
        found += [{"table": table, "id": i, "kind": "extra"} for i in sorted(b.keys() - a.keys())]
        for i in sorted(a.keys() & b.keys()):
            for col in (*columns, "rowid"):
                if not _same(a[i].get(col), b[i].get(col)):
                    found.append({"table": table, "id": i, "kind": "column", "column": col,
                                  "source": a[i].get(col), "destination": b[i].get(col)})
    return found[:limit] if limit else found


def _read(conn: psycopg.Connection, store: str) -> dict[str, list[dict]]:
    return {"entities": stores.read_entities(conn, store=store), "triples": stores.read_triples(conn, store=store)}


def convert(conn: psycopg.Connection, to: str, *, keep_old: bool = False) -> dict:
    """Convert the graph on ``conn``'s database to store ``to``; returns what was done.

    ``conn`` must not be in a transaction; the whole conversion is one, committed at the end.
    """
    if to not in stores.STORES:
        raise KgConvertRefused(f"unknown KG store {to!r}", f"use --to {' or --to '.join(stores.STORES)}")
    started = time.monotonic()
    with conn.transaction():
        # The writers' lock: no KG write lands between the read and the switch.
        stores.store_class("tables")(conn).lock_writes()
        source = stores.held(conn)
        if source is None:
            raise KgConvertRefused(f"{shown(conn)} holds no knowledge graph",
                                   "migrate the palace first (`palace-pg migrate`)")
        if source == to:
            raise KgConvertRefused(f"the knowledge graph is already in the {to} store", "nothing to do")
        if to == "age" and not stores.age_installed(conn):
            raise KgConvertRefused("the age extension is not installed in this database",
                                   "CREATE EXTENSION age (with 'age' in shared_preload_libraries) first")
        if not stores.is_empty(conn, to):
            raise KgConvertRefused(f"the destination store {to} already holds rows",
                                   f"drop them first (nothing was changed); the graph in use is in {source}")
        want = _read(conn, source)
        stores.ensure(conn, to)
        counts = stores.bulk_load(conn, want["entities"], want["triples"], store=to)
        got = _read(conn, to)
        found = differences(want, got)
        if found:
            raise KgIntegrityError(f"the converted graph differs from the {source} store in {len(found)}+ place(s), "
                                   f"e.g. {found[0]}", f"nothing was changed: the graph stays in {source}; "
                                   "report the difference", differences=found)
        if conn.execute("SELECT to_regclass(%s)", [f"{schema.SCHEMA}.backend_meta"]).fetchone()[0] is not None:
            state.set_meta(conn, stores.META_KEY, to)
        if not keep_old:
            stores.drop(conn, source)
    result = {"from": source, "to": to, "entities": len(want["entities"]), "triples": len(want["triples"]),
              "columns_compared": sum(len(want[t]) * (len(c) + 1) for t, c in TABLES.items()),
              "differences": 0, "old_store_dropped": not keep_old, "load": counts,
              "seconds": round(time.monotonic() - started, 2)}
    log.info("kg convert: %s", result)
    return result
