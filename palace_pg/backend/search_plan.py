"""How one kNN query runs: HNSW, exact over the filtered subset, or HNSW iterative scan.

pgvector's HNSW filters *after* the index scan, so a selective filter returns
fewer than k rows, and iterative scans return k rows at poor recall when the
filter is correlated with the vectors (a wing is a few topic clusters):
measured at 160K drawers, recall@10 0.34–0.88 for an 11% wing and 0.52–0.89
for a 30% wing (strict or relaxed order, ef_search 40–200, fetching up to
100 rows and re-sorting), every variant slower than the exact plan
(perf-anchors.md §1.5 found 0.81–0.87).  So the plan is chosen by how many
rows the filter matches, counted through the btrees (capped, cached briefly):

* no filter, a collection of at most ``exact_unfiltered_max_rows`` rows: exact
  (recall 1.0; the scan costs a few ms at that size, see settings.py);
* no filter, a larger collection: HNSW with an ``hnsw.ef_search`` that grows
  with k (``SearchSettings.ef_for``): MemPalace asks for a pool of 4n rows
  for its BM25 re-rank, and a fixed ef loses recall as k approaches it;
* at most ``exact_max_rows`` matching rows: exact — distances over the
  filtered subset only, via ``cosine_distance()`` (what ``<=>`` calls; as a
  function the ORDER BY cannot be served by HNSW, and each distance is
  computed once); only ids and distances are sorted, documents are fetched
  for the k winners; a filter an index can serve runs with ``enable_seqscan``
  off for that query (the planner would otherwise scan the whole table for
  a large wing);
* more: HNSW with ``hnsw.iterative_scan = relaxed_order`` and a larger
  ``ef_search``, re-sorted; if it comes back short, the exact plan runs;
* more, and the filter pins one wing that has a partial HNSW index (built
  after the cutover by ``palace-pg maintain``, backend/wing_indexes.py): that
  index instead of the iterative scan, whose rows are the wing's (iterative
  scan when the filter has more conditions), with the plan unprepared so the
  bound wing proves the index predicate; a short answer falls back to exact.

The HNSW settings are given to each pooled connection's session once (and
again only when they change) instead of ``SET LOCAL`` in a transaction per
query: three round trips fewer.

The exact plan costs about 0.4 µs per matching row (17.6K rows: ~7 ms on an
idle machine) when the vectors are stored inline and the rows of a wing are
adjacent on disk (``run_maintenance("compact")``); with the wings interleaved
(rows in source order) the 11% wing took 2.4x as long.  See
benchmarks/bench_search.py.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from ..target_db.schema import SCHEMA, qualified
from . import wing_indexes
from .filters import Predicate
from .settings import HNSW_EF_MAX, SearchSettings

log = logging.getLogger(__name__)

HNSW = "hnsw"
EXACT = "exact"
ITERATIVE = "iterative"
WING_HNSW = "wing_hnsw"


@dataclass(frozen=True)
class Columns:
    documents: bool = True
    metadatas: bool = True
    embeddings: bool = False

    def select(self, alias: str) -> sql.Composable:
        a = sql.Identifier(alias)
        return sql.SQL(", ").join([
            sql.SQL("{}.id").format(a),
            sql.SQL("{}.document").format(a) if self.documents else sql.SQL("NULL::text"),
            sql.SQL("{}.metadata").format(a) if self.metadatas else sql.SQL("NULL::jsonb"),
            sql.SQL("{}.embedding").format(a) if self.embeddings else sql.SQL("NULL::vector"),
        ])


@dataclass
class PlanChoice:
    kind: str
    matching: int | None = None


class Planner:
    """Chooses and runs kNN plans; keeps a short-lived cache of filter row counts."""

    def __init__(self, settings: SearchSettings) -> None:
        self.settings = settings
        self._counts: dict[tuple, tuple[int, float]] = {}
        self._wing_indexes: dict[str, tuple[frozenset, float]] = {}
        self._lock = threading.Lock()

    # -- selectivity ---------------------------------------------------------------------
    def matching_rows(self, conn: psycopg.Connection, table: str, pred: Predicate, cap: int | None = None) -> int:
        """Rows the filter matches, counted up to ``cap`` (default ``exact_max_rows + 1``)."""
        cap = self.settings.exact_max_rows + 1 if cap is None else int(cap)
        stmt = sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} LIMIT %s) s").format(qualified(table), pred.sql)
        key = (table, stmt.as_string(conn), repr(pred.params), cap)
        now = time.monotonic()
        with self._lock:
            hit = self._counts.get(key)
        if hit and now - hit[1] < self.settings.count_ttl:
            return hit[0]
        count = conn.execute(stmt, [*pred.params, cap]).fetchone()[0]
        with self._lock:
            if len(self._counts) > 1024:
                self._counts.clear()
            self._counts[key] = (count, now)
        return count

    def forget(self, table: str) -> None:
        """Writes change counts: drop this table's cached ones."""
        with self._lock:
            for key in [k for k in self._counts if k[0] == table]:
                del self._counts[key]
            self._wing_indexes.pop(table, None)

    def has_wing_index(self, conn: psycopg.Connection, table: str, wing: str) -> bool:
        """Whether ``wing`` has a valid partial HNSW index (the list is cached like the counts)."""
        now = time.monotonic()
        with self._lock:
            hit = self._wing_indexes.get(table)
        if not hit or now - hit[1] >= self.settings.count_ttl:
            hit = (wing_indexes.valid_names(conn, table), now)
            with self._lock:
                self._wing_indexes[table] = hit
        return wing_indexes.index_name(table, wing) in hit[0]

    def choose(self, conn: psycopg.Connection, table: str, pred: Predicate,
               wing: tuple[str | None, bool] = (None, False)) -> PlanChoice:
        """``wing``: the wing the filter pins and whether it is the whole filter (wing_indexes.wing_of)."""
        if pred.is_true:
            small = self.settings.exact_unfiltered_max_rows
            if small > 0:
                rows = self.matching_rows(conn, table, pred, cap=small + 1)
                if rows <= small:
                    return PlanChoice(EXACT, rows)
            return PlanChoice(HNSW)
        matching = self.matching_rows(conn, table, pred)
        if matching <= self.settings.exact_max_rows:
            return PlanChoice(EXACT, matching)
        # A wing's own index beats the iterative scan of the whole table's (recall 0.81–0.94 against
        # 0.34–0.88 at 160K on off-distribution queries), but not the exact plan's 1.0: it replaces
        # only the iterative plan (lower exact_max_rows to trade recall for latency).
        if wing[0] is not None and self.has_wing_index(conn, table, wing[0]):
            return PlanChoice(WING_HNSW, matching)
        return PlanChoice(ITERATIVE, matching)

    # -- execution -----------------------------------------------------------------------
    def knn(self, conn: psycopg.Connection, table: str, vector: np.ndarray, k: int, pred: Predicate,
            cols: Columns, wing: tuple[str | None, bool] = (None, False)) -> tuple[list[tuple], PlanChoice]:
        """Rows ``(id, document, metadata, embedding, distance)``, nearest first."""
        plan = self.choose(conn, table, pred, wing)
        if plan.kind == EXACT:
            return self._exact(conn, table, vector, k, pred, cols), plan
        if plan.kind == HNSW:
            return self._hnsw(conn, table, vector, k, pred, cols, iterative=False), plan
        if plan.kind == WING_HNSW:
            rows = self._wing_hnsw(conn, table, vector, k, pred, cols, only_wing=wing[1])
        else:
            rows = self._hnsw(conn, table, vector, k, pred, cols, iterative=True)
        if len(rows) < k:
            log.info("%s scan on %s returned %d of %d rows; falling back to exact", plan.kind, table, len(rows), k)
            plan = PlanChoice(EXACT, plan.matching)
            rows = self._exact(conn, table, vector, k, pred, cols)
        return rows, plan

    def _exact(self, conn, table, vector, k, pred, cols) -> list[tuple]:
        # The inner query sorts (id, distance) only; documents are fetched for the k winners.
        # cosine_distance() is what <=> calls, but as a function call the ORDER BY cannot be served by
        # the HNSW index, and ordering by the output column computes each distance once, not twice.
        stmt = sql.SQL(
            "SELECT {cols}, s.distance FROM ("
            "SELECT id, cosine_distance(embedding, %s) AS distance FROM {t} WHERE {f} "
            "ORDER BY 2, 1 LIMIT %s) s "
            "JOIN {t} r USING (id) ORDER BY s.distance, s.id"
        ).format(cols=cols.select("r"), t=qualified(table), f=pred.sql)
        params = [vector, *pred.params, k]
        # prepare=False: a generic plan cannot see which wing it filters on (custom plans pick the btree).
        if not pred.indexed:
            return conn.execute(stmt, params, prepare=False).fetchall()
        # With an index to find the rows, reading only their pages beats any sequential scan, but the
        # planner's costs pick a (parallel) seq scan for a 30% wing: 2.2x slower at 160K drawers than
        # the bitmap scan it takes with seq scans off (benchmarks/bench_search.py).
        with conn.transaction():
            conn.execute("SELECT set_config('enable_seqscan', 'off', true)")
            return conn.execute(stmt, params, prepare=False).fetchall()

    def _wing_hnsw(self, conn, table, vector, k, pred, cols, *, only_wing: bool) -> list[tuple]:
        """The wing's partial HNSW index, with the ef_search of filtered searches.

        The server would often rather sort the wing's rows (its HNSW costs are pessimistic) or
        walk the whole table's index and filter: ``WING_INDEX_SETTINGS`` leaves it the partial
        index as the cheapest path.  Unprepared: a generic plan cannot prove that ``wing = $1``
        implies the index's predicate.  More conditions than the wing: iterative scan.
        """
        stmt = self._hnsw_statement(table, pred, cols, iterative=not only_wing)
        s = self.settings
        ef = min(HNSW_EF_MAX, max(s.wing_ef_search, s.ef_for(k, iterative=True)))
        tuning = (ef, "off" if only_wing else "relaxed_order", s.max_scan_tuples)
        with conn.transaction():
            conn.execute(_SET_HNSW, _set_params(tuning, local=True))
            conn.execute(WING_INDEX_SETTINGS)
            return conn.execute(stmt, [vector, *pred.params, vector, k], prepare=False).fetchall()

    @staticmethod
    def _hnsw_statement(table, pred, cols, *, iterative: bool) -> sql.Composed:
        if iterative:
            # relaxed_order returns rows slightly out of order: the outer query re-sorts them.
            return sql.SQL(
                "WITH r AS MATERIALIZED (SELECT id, embedding <=> %s AS distance FROM {t} WHERE {f} "
                "ORDER BY embedding <=> %s LIMIT %s) "
                "SELECT {cols}, r.distance FROM r JOIN {t} x USING (id) ORDER BY r.distance + 0, r.id"
            ).format(cols=cols.select("x"), t=qualified(table), f=pred.sql)
        # The index scan stops after k rows, so documents are read for the winners only.
        return sql.SQL("SELECT {cols}, embedding <=> %s AS distance FROM {t} x WHERE {f} "
                       "ORDER BY embedding <=> %s LIMIT %s").format(cols=cols.select("x"), t=qualified(table),
                                                                   f=pred.sql)

    def table_rows(self, conn: psycopg.Connection, table: str) -> int:
        """The table's size as the statistics have it (``reltuples``; 0 before the first ANALYZE), cached."""
        key = (table, "reltuples")
        now = time.monotonic()
        with self._lock:
            hit = self._counts.get(key)
        if hit and now - hit[1] < self.settings.count_ttl:
            return hit[0]
        row = conn.execute("SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass(%s)",
                           [f"{SCHEMA}.{table}"]).fetchone()
        rows = int(row[0]) if row else 0
        with self._lock:
            self._counts[key] = (rows, now)
        return rows

    def _hnsw(self, conn, table, vector, k, pred, cols, *, iterative: bool) -> list[tuple]:
        s = self.settings
        ef = s.ef_for(k, iterative=iterative, rows=None if iterative else self.table_rows(conn, table))
        stmt = self._hnsw_statement(table, pred, cols, iterative=iterative)
        params = [vector, *pred.params, vector, k]
        tuning = (ef, "relaxed_order" if iterative else "off", s.max_scan_tuples)
        if self._tune_session(conn, tuning):
            return conn.execute(stmt, params).fetchall()
        with conn.transaction():
            conn.execute(_SET_HNSW, _set_params(tuning, local=True))
            return conn.execute(stmt, params).fetchall()

    def _tune_session(self, conn: psycopg.Connection, tuning: tuple) -> bool:
        """Give ``conn`` these HNSW settings for its session; False if only SET LOCAL is safe.

        Pooled connections are autocommit and keep their session: setting the GUCs
        once per connection (again only when they change) saves the
        BEGIN/set_config/COMMIT round trips on every query (~0.25 ms of ~1.5 ms).
        Inside a caller's transaction a session SET could be rolled back behind
        our back, so there the settings stay transaction-local and are not remembered.
        """
        if not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            return False
        with _SESSIONS_LOCK:
            current = _SESSIONS.get(conn)
        if current != tuning:
            conn.execute(_SET_HNSW, _set_params(tuning, local=False))
            with _SESSIONS_LOCK:
                _SESSIONS[conn] = tuning
        return True


# The HNSW settings each connection's session holds (see Planner._tune_session).  Per connection,
# not per planner: the backend shares one pool between the palaces opened on one DSN.
_SESSIONS: "weakref.WeakKeyDictionary[psycopg.Connection, tuple]" = weakref.WeakKeyDictionary()
_SESSIONS_LOCK = threading.Lock()

# is_local false: for the session (autocommit connections); true: SET LOCAL.
_SET_HNSW = ("SELECT set_config('hnsw.ef_search', %s, %s), set_config('hnsw.iterative_scan', %s, %s), "
             "set_config('hnsw.max_scan_tuples', %s, %s)")


# For the wing plan (transaction-local): no plan but an index scan on the vector order is cheap.
WING_INDEX_SETTINGS = ("SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true), "
                       "set_config('enable_sort', 'off', true)")


def _set_params(tuning: tuple, *, local: bool) -> list:
    return [x for value in tuning for x in (str(value), local)]
