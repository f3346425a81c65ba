"""``AgeKnowledgeGraph``: mempalace's ``KnowledgeGraph`` 3.11, answering from PostgreSQL.

Same public API, same answers.  The MemPalace rules live here (id derivation,
predicate normalisation, temporal filters, idempotent adds, sqlite's answer
order, the LIKE candidate fallback); storage lives behind a
:class:`~palace_pg.kg.store.KGStore`: by default the one the database holds
(``AgeStore`` or ``TablesStore``, see :mod:`palace_pg.kg.stores`), so the class
works on servers without AGE too (``PostgresKnowledgeGraph`` is the same class).

Each public call is one PostgreSQL transaction, like each ``with conn:`` block of
the sqlite class; writers take a graph-wide advisory lock, so writers in several
processes serialise as they do on sqlite's file lock.  Results without an ORDER
BY in sqlite come back in rowid order, the order sqlite's index scans give.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from datetime import date, datetime
from typing import Callable, Iterator

import psycopg
from psycopg.pq import TransactionStatus
from mempalace.config import sanitize_iso_temporal
from mempalace.ids import make_triple_id
from mempalace.knowledge_graph import DEFAULT_KG_PATH

from .. import dsn as dsn_mod
from . import candidates, locate, stores, temporal
from .errors import KgIntegrityError, KgValueRejected
from .sqlite_mirror import sqlite_snapshot
from .store import TABLES, KGStore
from .values import as_sqlite_stores

log = logging.getLogger(__name__)

ENV_SYNC_COMMIT = "PALACE_PG_KG_SYNCHRONOUS_COMMIT"
_NOT_NULL = {"entities": ("id", "name"), "triples": ("id", "subject", "predicate", "object")}


def _has_nul(*values) -> bool:
    return any(isinstance(v, str) and "\x00" in v for v in values)


def _refuse_nul(**values) -> None:
    """PostgreSQL text cannot hold NUL: refuse the write before touching the database."""
    for column, value in values.items():
        if _has_nul(value):
            raise KgValueRejected(
                f"{column} {value!r} contains a NUL character, which PostgreSQL text cannot hold",
                "remove the NUL (\\x00) from the value; nothing was written",
                column=column,
            )


def _predicate(predicate) -> str:
    return str(predicate).lower().replace(" ", "_")


class AgeKnowledgeGraph:
    """Drop-in for ``mempalace.knowledge_graph.KnowledgeGraph`` over the AGE graph.

    ``AgeKnowledgeGraph(db_path)`` (as mempalace constructs it) finds the database
    through the palace_pg marker next to ``db_path``; ``dsn=`` names it directly.
    ``store=`` picks ``age`` or ``tables`` (default: the store the database holds,
    else AGE where the extension is installed, else tables); ``store_factory=`` a class.
    """

    backend = "age"  # what mempalace's code may check; `store` names the storage in use
    _REPLICATION_TABLES = TABLES

    def __init__(self, db_path: str | None = None, *, dsn: str | None = None,
                 store_factory: Callable[[psycopg.Connection], KGStore] | None = None,
                 store: str | None = None, synchronous_commit: bool | None = None) -> None:
        self.db_path = db_path or DEFAULT_KG_PATH
        self.dsn = dsn or locate.dsn_for_db_path(self.db_path)
        # Durable by default, like mempalace's sqlite (WAL, synchronous=FULL): every write
        # waits for its WAL flush.  Opting out (PALACE_PG_KG_SYNCHRONOUS_COMMIT=off) may lose
        # the last fraction of a second of writes on a server crash, never consistency.
        if synchronous_commit is None:
            synchronous_commit = os.environ.get(ENV_SYNC_COMMIT, "on").strip().lower() not in ("off", "0", "false")
        self.synchronous_commit = synchronous_commit
        self._store_factory = store_factory
        self._store_choice = store or "auto"
        self._connection: psycopg.Connection | None = None
        # Re-entrant: mempalace callers hold kg._lock around kg._conn() (sqlite's takes no lock).
        self._lock = threading.RLock()
        self._snapshots: list[sqlite3.Connection] = []
        with self._store() as store:
            store.ensure_schema()

    # ── connection and transactions ─────────────────────────────────────────

    def _pg(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            conn = dsn_mod.connect(self.dsn, autocommit=True, vector=False, application_name="palace_pg.kg")
            if self._store_factory is None:  # once per instance: which store this database holds
                self._store_factory = stores.store_class(stores.resolve(conn, self._store_choice))
            self._store_factory(conn).prepare_session()
            if not self.synchronous_commit:
                conn.execute("SET synchronous_commit = off")
            self._connection = conn
        return self._connection

    @contextmanager
    def _store(self, *, write: bool = False) -> Iterator[KGStore]:
        """One transaction; a writer holds the graph's write lock until it commits."""
        with self._lock:
            conn = self._pg()
            try:
                if write and conn.info.transaction_status == TransactionStatus.IDLE:
                    with self._write_transaction(conn) as store:
                        yield store
                else:
                    # Readers, and a writer nested in an open transaction (a savepoint then).
                    with conn.transaction():
                        store = self._store_factory(conn)
                        if write:
                            store.lock_writes()
                        yield store
            except psycopg.OperationalError:
                # The server went away: drop the connection so the next call reconnects.
                self._drop_connection()
                raise

    @contextmanager
    def _write_transaction(self, conn: psycopg.Connection) -> Iterator[KGStore]:
        """BEGIN, the write lock, the caller's statements and COMMIT, queued in one pipeline.

        Statements still execute in order (the lock first, each with its own snapshot).
        Nothing waits for the server until the caller reads a result or the block ends:
        add_triple costs two round trips (BEGIN … the open-fact lookup; the insert and
        COMMIT), where psycopg's ``conn.transaction()`` adds a sync after BEGIN and around
        COMMIT.  The block returns once the COMMIT has been acknowledged, i.e. is durable
        under synchronous_commit=on (the default).
        """
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                store = self._store_factory(conn)
                store.lock_writes()
                yield store
                conn.execute("COMMIT")
        except BaseException:
            # A failed statement leaves the transaction aborted (the queued COMMIT was skipped);
            # an exception in the block leaves it open.  Either way: roll back, then re-raise.
            if not conn.closed and conn.info.transaction_status in (TransactionStatus.INTRANS,
                                                                   TransactionStatus.INERROR):
                try:
                    conn.execute("ROLLBACK")
                except psycopg.Error as exc:
                    log.warning("rollback after a failed KG write failed too: %s", exc)
            raise

    def _drop_connection(self) -> None:
        conn, self._connection = self._connection, None
        if conn is not None:
            try:
                conn.close()
            except psycopg.Error:
                pass

    def _conn(self) -> sqlite3.Connection:
        """A read-only sqlite snapshot in mempalace's schema (see :mod:`palace_pg.kg.sqlite_mirror`).

        For code that reads SQL off ``kg._conn()``; closed by :meth:`close`.
        """
        with self._store() as store:
            snap = sqlite_snapshot(store)
        self._snapshots.append(snap)
        return snap

    def close(self) -> None:
        """Close the connection (the next call reopens it, as the sqlite class does)."""
        with self._lock:
            self._drop_connection()
            while self._snapshots:
                self._snapshots.pop().close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    @property
    def store_name(self) -> str:
        """``age`` or ``tables``: the store this graph reads and writes."""
        with self._lock:
            self._pg()
            return getattr(self._store_factory, "name", "age")

    def _entity_id(self, name: str) -> str:
        return name.lower().replace(" ", "_").replace("'", "")

    # ── write helpers ────────────────────────────────────────────────────────

    @staticmethod
    def _insert_or_ignore_entities(store: KGStore, *pairs: tuple[str, str]) -> None:
        """sqlite's ``INSERT OR IGNORE INTO entities (id, name)`` for each (id, name), in order."""
        now = temporal.sqlite_now()
        rows = {}
        for eid, name in pairs:
            rows.setdefault(eid, as_sqlite_stores("entities", {"id": eid, "name": name, "type": "unknown",
                                                               "properties": "{}", "created_at": now}))
        store.insert_or_ignore_entities(list(rows.values()))

    @staticmethod
    def _insert_triple(store: KGStore, values: dict) -> str:
        # Fresh id (make_triple_id hashes the current time) and both entities just ensured;
        # rowid max + 1 is read by the insert itself, under the write lock.
        row = as_sqlite_stores("triples", values | {"extracted_at": temporal.sqlite_now()})
        store.insert_triple(row)
        return row["id"]

    @staticmethod
    def _refuse_inverted(start, end, label: str) -> None:
        if start is not None and temporal.end_key(end) < temporal.start_key(start):
            raise ValueError(
                f"{label}={end!r} is before valid_from={start!r}; "
                "an inverted interval would be invisible to every KG query"
            )

    # ── write operations ─────────────────────────────────────────────────────

    def add_entity(self, name: str, entity_type: str = "unknown", properties: dict = None):
        """Add or update an entity node (sqlite: INSERT OR REPLACE)."""
        _refuse_nul(name=name, entity_type=entity_type)
        eid = self._entity_id(name)
        row = as_sqlite_stores("entities", {"id": eid, "name": name, "type": entity_type,
                                            "properties": json.dumps(properties or {}),
                                            "created_at": temporal.sqlite_now()})
        with self._store(write=True) as store:
            store.put_entity(row | {"rowid": store.next_rowid("entities")})
        return eid

    def add_triple(self, subject: str, predicate: str, obj: str, valid_from: str = None,
                   valid_to: str = None, confidence: float = 1.0, source_closet: str = None,
                   source_file: str = None, source_drawer_id: str = None, adapter_name: str = None):
        """Add subject → predicate → object; returns the id of an identical open fact if one exists."""
        valid_from = sanitize_iso_temporal(valid_from, "valid_from")
        valid_to = sanitize_iso_temporal(valid_to, "valid_to")
        if temporal.inverted(valid_from, valid_to):
            raise ValueError(
                f"valid_to={valid_to!r} is before valid_from={valid_from!r}; "
                "an inverted interval would be invisible to every KG query"
            )
        _refuse_nul(subject=subject, predicate=predicate, object=obj, source_closet=source_closet,
                    source_file=source_file, source_drawer_id=source_drawer_id, adapter_name=adapter_name)
        sub_id, obj_id, pred = self._entity_id(subject), self._entity_id(obj), _predicate(predicate)
        with self._store(write=True) as store:
            # Round trip 1: BEGIN, lock, both INSERT OR IGNOREs and the open-fact lookup.
            self._insert_or_ignore_entities(store, (sub_id, subject), (obj_id, obj))
            # Round trip 2 (when the fact is new): the insert and the COMMIT.
            return self._open_fact(store, sub_id, pred, obj_id, valid_from, valid_to, confidence,
                                   source_closet, source_file, source_drawer_id, adapter_name)

    def invalidate(self, subject: str, predicate: str, obj: str, ended: str = None):
        """Mark a relationship as no longer valid (set valid_to on every open match)."""
        sub_id, obj_id, pred = self._entity_id(subject), self._entity_id(obj), _predicate(predicate)
        ended = sanitize_iso_temporal(ended or date.today().isoformat(), "ended")
        if _has_nul(sub_id, pred, obj_id):
            return  # no stored fact can match a NUL: nothing to close (sqlite: an UPDATE of 0 rows)
        with self._store(write=True) as store:
            rows = store.open_triples(sub_id, pred, obj_id)
            for row in rows:
                self._refuse_inverted(row["valid_from"], ended, "valid_to")
            store.set_valid_to([r["id"] for r in rows], ended)

    def supersede(self, subject: str, predicate: str, old_obj: str, new_obj: str, at: str = None,
                  confidence: float = 1.0, source_closet: str = None, source_file: str = None,
                  source_drawer_id: str = None, adapter_name: str = None):
        """Close (subject, predicate, old_obj) and open (subject, predicate, new_obj) at one instant."""
        boundary = sanitize_iso_temporal(temporal.boundary(at), "at")
        sub_id, old_id, new_id = self._entity_id(subject), self._entity_id(old_obj), self._entity_id(new_obj)
        pred = _predicate(predicate)
        _refuse_nul(subject=subject, predicate=predicate, old_obj=old_obj, new_obj=new_obj,
                    source_closet=source_closet, source_file=source_file,
                    source_drawer_id=source_drawer_id, adapter_name=adapter_name)
        with self._store(write=True) as store:
            # Like sqlite: only the entities a fact is opened for are created.
            self._insert_or_ignore_entities(store, (sub_id, subject), (new_id, new_obj))
            rows = store.open_triples(sub_id, pred, old_id)
            for row in rows:
                self._refuse_inverted(row["valid_from"], boundary, "at")
            store.set_valid_to([r["id"] for r in rows], boundary)
            return self._open_fact(store, sub_id, pred, new_id, boundary, None, confidence,
                                   source_closet, source_file, source_drawer_id, adapter_name)

    def _open_fact(self, store, sub_id: str, pred: str, obj_id: str, valid_from, valid_to, confidence,
                   source_closet, source_file, source_drawer_id, adapter_name) -> str:
        """The id of the open (sub, pred, obj) fact: the existing one, else a new one inserted."""
        existing = store.open_triples(sub_id, pred, obj_id)
        if existing:
            return existing[0]["id"]
        # make_triple_id only when inserting, exactly as mempalace calls it
        triple_id = make_triple_id(sub_id, pred, obj_id, valid_from, datetime.now().isoformat())
        return self._insert_triple(store, {
            "id": triple_id, "subject": sub_id, "predicate": pred, "object": obj_id,
            "valid_from": valid_from, "valid_to": valid_to, "confidence": confidence,
            "source_closet": source_closet, "source_file": source_file,
            "source_drawer_id": source_drawer_id, "adapter_name": adapter_name,
        })

    def rewrite(self, triple_id: str, predicate: str, obj: str, at: str = None, source_file: str = None):
        """Close the open fact ``triple_id`` and open its rewording at the same instant; None if not open."""
        boundary = sanitize_iso_temporal(temporal.boundary(at), "at")
        pred = _predicate(predicate)
        obj_id = self._entity_id(obj)
        if _has_nul(triple_id):
            return None  # no stored id holds a NUL: the fact is not open
        _refuse_nul(predicate=predicate, object=obj, source_file=source_file)
        with self._store(write=True) as store:
            row = store.get_triple(triple_id)
            if row is None or row["valid_to"] is not None:
                return None
            self._refuse_inverted(row["valid_from"], boundary, "at")
            sub_id = row["subject"]
            self._insert_or_ignore_entities(store, (obj_id, obj))
            store.set_valid_to([triple_id], boundary)
            inherited = {
                "confidence": row["confidence"] if row["confidence"] is not None else 1.0,
                "source_closet": row["source_closet"],
                "source_file": row["source_file"] or source_file,
                "source_drawer_id": row["source_drawer_id"],
                "adapter_name": row["adapter_name"],
            }
            # Reuse only an already-valid successor with the same evidence (sqlite: `IS` on each).
            for other in store.open_triples(sub_id, pred, obj_id):
                started = other["valid_from"] is None or temporal.le(temporal.start_key(other["valid_from"]), boundary)
                if started and all(other[k] == v for k, v in inherited.items()):
                    return other["id"]
            new_id = make_triple_id(sub_id, pred, obj_id, boundary, datetime.now().isoformat())
            return self._insert_triple(store, {
                "id": new_id, "subject": sub_id, "predicate": pred, "object": obj_id,
                "valid_from": boundary, "valid_to": None, **inherited,
            })

    # ── query operations ─────────────────────────────────────────────────────

    @staticmethod
    def _facts(store: KGStore, eid: str, name: str, direction: str, as_of_key: str | None) -> list[dict]:
        results = []
        for way in ("outgoing", "incoming"):
            if direction not in (way, "both"):
                continue
            for row in store.triples_of(eid, way):
                # sqlite joins the *other* end's entity row for its display name.
                other = row["object_name"] if way == "outgoing" else row["subject_name"]
                if other is None or (as_of_key is not None and not temporal.valid_at(row, as_of_key)):
                    continue
                results.append({
                    "direction": way,
                    "subject": name if way == "outgoing" else other,
                    "predicate": row["predicate"],
                    "object": other if way == "outgoing" else name,
                    "valid_from": row["valid_from"],
                    "valid_to": row["valid_to"],
                    "confidence": row["confidence"],
                    "source_closet": row["source_closet"],
                    "current": row["valid_to"] is None,
                })
        return results

    def query_entity(self, name: str, as_of: str = None, direction: str = "outgoing"):
        """All relationships of an entity, optionally as of an instant; falls back to one fuzzy candidate."""
        as_of = sanitize_iso_temporal(as_of, "as_of")
        eid = self._entity_id(name)
        as_of_key = temporal.start_key(as_of) if as_of else None
        if _has_nul(name):
            return []  # nothing stored holds a NUL, so neither a fact nor a candidate matches
        with self._store() as store:
            results = self._facts(store, eid, name, direction, as_of_key)
            if not results and not store.get_entities([eid]):
                found = self._lookup_entity_candidates(store, name, eid)
                if len(found) == 1:
                    results = self._facts(store, found[0]["id"], found[0]["name"], direction, as_of_key)
        return results

    def find_entity_candidates(self, name: str) -> list:
        """Token/prefix entity matches for disambiguation (never substring); [] under 3 characters."""
        if not name or len(name.strip()) < candidates.MIN_CANDIDATE_LEN:
            return []
        eid = self._entity_id(name)
        if _has_nul(name):
            return []
        with self._store() as store:
            return self._lookup_entity_candidates(store, name, eid)

    @staticmethod
    def _lookup_entity_candidates(store: KGStore, name: str, eid: str) -> list:
        if not name or len(name.strip()) < candidates.MIN_CANDIDATE_LEN:
            return []
        name_pats, id_pats = candidates.patterns(name, eid)
        return candidates.pick(store.entity_candidates(eid, name, name_pats, id_pats), name, eid)

    def query_relationship(self, predicate: str, as_of: str = None):
        """All triples with a given relationship type."""
        as_of = sanitize_iso_temporal(as_of, "as_of")
        pred = _predicate(predicate)
        as_of_key = temporal.start_key(as_of) if as_of else None
        if _has_nul(pred):
            return []
        with self._store() as store:
            rows = store.triples_with_predicate(pred)
        return [
            {"subject": r["subject_name"], "predicate": pred, "object": r["object_name"],
             "valid_from": r["valid_from"], "valid_to": r["valid_to"], "current": r["valid_to"] is None}
            for r in rows
            if r["subject_name"] is not None and r["object_name"] is not None
            and (as_of_key is None or temporal.valid_at(r, as_of_key))
        ]

    def timeline(self, entity_name: str = None, limit: int = 100, offset: int = 0):
        """Facts ordered by valid_from (NULLs last) then id, optionally for one entity; paginated."""
        limit = max(1, int(limit))
        offset = max(0, int(offset))
        eid = self._entity_id(entity_name) if entity_name else None
        if _has_nul(eid):
            return []
        with self._store() as store:
            rows = store.timeline(eid, limit, offset)
        return [
            {"subject": r["subject_name"], "predicate": r["predicate"], "object": r["object_name"],
             "valid_from": r["valid_from"], "valid_to": r["valid_to"], "current": r["valid_to"] is None}
            for r in rows
        ]

    def timeline_total(self, entity_name: str = None) -> int:
        """Total number of facts a :meth:`timeline` query matches (all pages)."""
        eid = self._entity_id(entity_name) if entity_name else None
        if _has_nul(eid):
            return 0
        with self._store() as store:
            return store.count_triples(eid)

    def stats(self):
        with self._store() as store:
            s = store.stats()
        return {
            "entities": s["entities"],
            "triples": s["triples"],
            "current_facts": s["current_facts"],
            "expired_facts": s["triples"] - s["current_facts"],
            "relationship_types": s["predicates"],
        }

    def open_named_facts(self) -> list[dict]:
        """Open facts with both ends' display names (for kg_normalize), rowid order."""
        with self._store() as store:
            return store.open_named_triples()

    def open_predicate_counts(self) -> dict[str, int]:
        """{predicate: number of open facts} (palace_audit's predicate-reuse figures)."""
        with self._store() as store:
            return store.open_predicate_counts()

    # ── replication (RFC 004) ────────────────────────────────────────────────

    def dump_rows(self, table: str, after_rowid: int = 0, limit: int = 500) -> list:
        """KG rows in rowid order with a ``_rowid`` cursor (limit clamped to 1..1000)."""
        columns = self._REPLICATION_TABLES.get(table)
        if columns is None:
            raise ValueError(f"table must be one of {sorted(self._REPLICATION_TABLES)}")
        with self._store() as store:
            rows = store.rows(table, int(after_rowid), max(1, min(int(limit), 1000)))
        return [{"rowid": r["rowid"], **{c: r[c] for c in columns}, "_rowid": r["rowid"]} for r in rows]

    def apply_row(self, table: str, row: dict) -> None:
        """Fold one replicated row in, keyed by id (sqlite: INSERT OR REPLACE)."""
        columns = self._REPLICATION_TABLES.get(table)
        if columns is None:
            raise ValueError(f"table must be one of {sorted(self._REPLICATION_TABLES)}")
        if not row.get("id"):
            raise ValueError("replicated row is missing 'id'")
        values = as_sqlite_stores(table, {c: row.get(c) for c in columns})
        for col in _NOT_NULL[table]:
            if values[col] is None:
                raise KgIntegrityError(f"NOT NULL constraint failed: {table}.{col}")
        with self._store(write=True) as store:
            values["rowid"] = store.next_rowid(table)
            if table == "entities":
                store.put_entity(values)
            else:
                store.put_triple(values)

    # ── seed from known facts ────────────────────────────────────────────────

    def seed_from_entity_facts(self, entity_facts: dict):
        """Seed the graph from fact_checker.py ENTITY_FACTS (same writes as mempalace)."""
        for key, facts in entity_facts.items():
            name = facts.get("full_name", key.capitalize())
            etype = facts.get("type", "person")
            self.add_entity(name, etype, {"gender": facts.get("gender", ""), "birthday": facts.get("birthday", "")})
            parent = facts.get("parent")
            if parent:
                self.add_triple(name, "child_of", parent.capitalize(), valid_from=facts.get("birthday"))
            partner = facts.get("partner")
            if partner:
                self.add_triple(name, "married_to", partner.capitalize())
            relationship = facts.get("relationship", "")
            if relationship == "daughter":
                self.add_triple(name, "is_child_of", facts.get("parent", "").capitalize() or name,
                                valid_from=facts.get("birthday"))
            elif relationship == "husband":
                self.add_triple(name, "is_partner_of", facts.get("partner", name).capitalize())
            elif relationship == "brother":
                self.add_triple(name, "is_sibling_of", facts.get("sibling", name).capitalize())
            elif relationship == "dog":
                self.add_triple(name, "is_pet_of", facts.get("owner", name).capitalize())
                self.add_entity(name, "animal")
            for interest in facts.get("interests", []):
                self.add_triple(name, "loves", interest.capitalize(), valid_from="2025-01-01")


# The class serves both stores; this name says so where AGE is not involved.
PostgresKnowledgeGraph = AgeKnowledgeGraph
