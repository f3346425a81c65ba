"""``PostgresCollection``: MemPalace's BaseCollection over one migrated table.

Semantics follow Chroma, the backend every palace comes from (checked against
chromadb 1.5 on the same rows; tests/test_backend_semantics.py):

* ``add`` of an id that exists is ignored (Chroma logs and skips it);
  duplicate ids inside one call are a ValueError;
* ``upsert`` replaces document and vector and *merges* metadata: keys not
  given are kept, a key given as None is removed (``upsert_merges_metadata``);
* ``update`` changes only what is given, atomically in SQL; unknown ids are
  ignored;
* ``get`` returns rows in storage order (``seq``), as Chroma does;
* metadata types come back exactly as written (1, 1.0 and True differ);
  a record without metadata returns None, as in Chroma.

Vectors are required (``requires_explicit_embeddings``): MemPalace's
EmbeddingCollection wrapper embeds documents and query texts before they
reach this class.  A vector of another width than the collection's raises
``DimensionMismatchError`` naming both widths and the recorded embedder.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

import psycopg
from mempalace.backends._sidecar import EMBEDDER_SIDECAR_FILENAME, read_embedder_sidecar
from mempalace.backends.base import (
    BackendClosedError,
    BaseCollection,
    CollectionNotInitializedError,
    DimensionMismatchError,
    EmbedderIdentity,
    GetResult,
    HealthStatus,
    LexicalHit,
    LexicalResult,
    MaintenanceResult,
    QueryResult,
    UnsupportedMaintenanceKindError,
    _IncludeSpec,
)
from psycopg import sql

from ..target_db.schema import SCHEMA, qualified
from . import codec, lexical, maintenance, meta, wing_indexes
from .filters import INDEXED_COLUMNS, Predicate, compile_filters, compile_where
from .handle import PalaceHandle, TableState
from .search_plan import Columns, Planner

if TYPE_CHECKING:
    from .postgres_backend import PostgresBackend

log = logging.getLogger(__name__)

_WRITE_BATCH = 500




class PostgresCollection(BaseCollection):
    upsert_merges_metadata = True

    def __init__(self, *, backend: "PostgresBackend", handle: "PalaceHandle", state: TableState,
                 read_only: bool = False) -> None:
        # Core finds capabilities through ``collection._backend`` (lexical boosts, facets).
        self._backend = backend
        self._handle = handle
        self._state = state
        self._read_only = read_only
        self._closed = False

    # -- plumbing -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._state.name

    @property
    def table(self) -> str:
        return self._state.table

    @property
    def _planner(self) -> Planner:
        return self._handle.planner

    def _ensure_open(self) -> None:
        if self._closed or self._handle.closed:
            raise BackendClosedError(f"collection {self.name!r} of {self._handle.palace_id} is closed")

    def _run(self, fn):
        self._ensure_open()
        try:
            return self._handle.pool.run(fn)
        except psycopg.errors.UndefinedTable:
            raise CollectionNotInitializedError(
                f"collection {self.name!r}: table {SCHEMA}.{self.table} no longer exists") from None

    def _t(self) -> sql.Composable:
        return qualified(self.table)

    # -- identity -------------------------------------------------------------------------
    def get_stored_embedder_identity(self) -> Optional[EmbedderIdentity]:
        identity = self._run(lambda conn: meta.embedder_identity(conn, self.name))
        if identity is None and self._handle.local_path:
            # A palace cut over from Chroma also carries MemPalace's sidecar.
            import os

            identity = read_embedder_sidecar(os.path.join(self._handle.local_path, EMBEDDER_SIDECAR_FILENAME),
                                             self.name)
        return identity

    def set_embedder_identity(self, identity: EmbedderIdentity) -> None:
        if identity.dimension == 0 and self._state.dimension:
            identity = EmbedderIdentity(identity.model_name, self._state.dimension)
        self._run(lambda conn: meta.set_embedder_identity(conn, self.name, identity))

    def _dimension_error(self, got: int, what: str) -> DimensionMismatchError:
        stored = None
        try:
            stored = self.get_stored_embedder_identity()
        except Exception:  # noqa: BLE001 - the message is best effort, the error is not
            pass
        model = f" ({stored.model_name!r})" if stored else ""
        return DimensionMismatchError(
            f"collection {self.name!r} holds {self._state.dimension}-dim vectors{model} but {what} "
            f"{got}-dim vectors; set embedding_model back to the model the palace was built with "
            "or re-embed the palace")

    def _check_dimension(self, conn: psycopg.Connection, width: int, what: str) -> None:
        if self._state.dimension is None:
            maintenance.fix_dimension(conn, self._state, width)
            meta.record_dimension(conn, self.name, width)
        if width != self._state.dimension:
            raise self._dimension_error(width, what)

    # -- writes ---------------------------------------------------------------------------
    def _validate_write(self, documents, ids, metadatas, embeddings, *, need_embeddings: bool = True):
        ids = [str(i) for i in ids]
        if documents is not None and len(documents) != len(ids):
            raise ValueError(f"documents length {len(documents)} does not match ids length {len(ids)}")
        if metadatas is not None and len(metadatas) != len(ids):
            raise ValueError(f"metadatas length {len(metadatas)} does not match ids length {len(ids)}")
        if embeddings is None:
            if need_embeddings:
                raise ValueError("the postgres backend requires explicit embeddings; open the palace through "
                                 "mempalace.palace.get_collection, which embeds documents")
            return ids, None
        if len(embeddings) != len(ids):
            raise ValueError(f"embeddings length {len(embeddings)} does not match ids length {len(ids)}")
        if len(set(ids)) != len(ids):
            raise ValueError("ids must be unique within one call")
        return ids, codec.as_matrix(embeddings) if len(ids) else None

    def _write(self, statement: sql.Composable, rows: list, width: int) -> None:
        def work(conn: psycopg.Connection) -> None:
            with conn.transaction():
                self._check_dimension(conn, width, "this write has")
                maintenance.ensure_sequence(conn, self._state)
                with conn.cursor() as cur:
                    for start in range(0, len(rows), _WRITE_BATCH):
                        cur.executemany(statement, rows[start:start + _WRITE_BATCH])

        self._ensure_writable()
        self._run(work)
        self._planner.forget(self.table)

    def _ensure_writable(self) -> None:
        if self._read_only:
            raise PermissionError(f"collection {self.name!r} was opened read-only")

    def _insert(self, *, documents, ids, metadatas, embeddings, merge: bool) -> None:
        ids, matrix = self._validate_write(documents, ids, metadatas, embeddings)
        if not ids:
            return
        stmt = sql.SQL(
            "INSERT INTO {t} AS t (id, document, metadata, embedding, seq) "
            "VALUES (%s, %s, NULLIF(jsonb_strip_nulls(%s::jsonb), '{{}}'::jsonb), %s, nextval({seq})) {conflict}"
        ).format(t=self._t(), seq=sql.Literal(f"{SCHEMA}.{self._state.sequence}"),
                 conflict=_UPSERT_CONFLICT if merge else sql.SQL("ON CONFLICT (id) DO NOTHING"))
        rows = []
        for i, rid in enumerate(ids):
            meta_param = codec.metadata_param(metadatas[i]) if metadatas is not None else None
            row = (rid, codec.clean_text(documents[i]) if documents is not None else None, meta_param, matrix[i])
            # The merge needs the metadata as given (with its None values) a second time.
            rows.append(row + (meta_param,) if merge else row)
        self._write(stmt, rows, matrix.shape[1])

    def add(self, *, documents, ids, metadatas=None, embeddings=None) -> None:
        # Chroma ignores an add of an existing id; so does this.
        self._insert(documents=documents, ids=ids, metadatas=metadatas, embeddings=embeddings, merge=False)

    def upsert(self, *, documents, ids, metadatas=None, embeddings=None) -> None:
        self._insert(documents=documents, ids=ids, metadatas=metadatas, embeddings=embeddings, merge=True)

    def update(self, *, ids, documents=None, metadatas=None, embeddings=None) -> None:
        if documents is None and metadatas is None and embeddings is None:
            raise ValueError("update requires at least one of documents, metadatas, embeddings")
        ids, matrix = self._validate_write(documents, ids, metadatas, embeddings, need_embeddings=False)
        if not ids:
            return
        sets, cols = [], []
        if documents is not None:
            sets.append(sql.SQL("document = %s"))
            cols.append([codec.clean_text(d) for d in documents])
        if metadatas is not None:
            sets.append(sql.SQL("metadata = NULLIF(jsonb_strip_nulls(coalesce(metadata, '{}'::jsonb) "
                                "|| coalesce(%s::jsonb, '{}'::jsonb)), '{}'::jsonb)"))
            cols.append([codec.metadata_param(m) for m in metadatas])
        if matrix is not None:
            sets.append(sql.SQL("embedding = %s"))
            cols.append(list(matrix))
        stmt = sql.SQL("UPDATE {} SET {} WHERE id = %s").format(self._t(), sql.SQL(", ").join(sets))
        rows = [tuple(col[i] for col in cols) + (rid,) for i, rid in enumerate(ids)]
        if matrix is not None:
            self._write(stmt, rows, matrix.shape[1])
        else:
            self._ensure_writable()

            def work(conn):
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(stmt, rows)

            self._run(work)
            self._planner.forget(self.table)

    def delete(self, *, ids=None, where=None) -> None:
        if ids is None and not where:
            raise ValueError("delete needs ids or where (Chroma refuses to delete everything implicitly)")
        self._ensure_writable()
        pred = compile_where(where)
        if ids is not None:
            ids = [str(i) for i in ids]
            if not ids:
                return
            pred = Predicate(sql.SQL("id = ANY(%s)"), [ids]).and_(pred)
        stmt = sql.SQL("DELETE FROM {} WHERE {}").format(self._t(), pred.sql)
        self._run(lambda conn: conn.execute(stmt, pred.params))
        self._planner.forget(self.table)

    # -- reads ----------------------------------------------------------------------------
    def count(self) -> int:
        return self._run(lambda conn: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self._t())).fetchone()[0])

    def estimated_count(self) -> int:
        def work(conn):
            row = conn.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                               [f"{SCHEMA}.{self.table}"]).fetchone()
            return int(row[0]) if row and row[0] >= 0 else None

        estimate = self._run(work)
        return self.count() if estimate is None else estimate

    def _rows(self, pred: Predicate, spec: _IncludeSpec, *, order: sql.Composable = sql.SQL("seq"),
              limit: Optional[int] = None, offset: Optional[int] = None, named_cursor: bool = False) -> list[tuple]:
        cols = Columns(documents=spec.documents, metadatas=spec.metadatas, embeddings=spec.embeddings)
        stmt = sql.SQL("SELECT {} FROM {} r WHERE {} ORDER BY {}").format(cols.select("r"), self._t(), pred.sql, order)
        params = list(pred.params)
        if limit is not None:
            stmt += sql.SQL(" LIMIT %s")
            params.append(limit)
        if offset:
            stmt += sql.SQL(" OFFSET %s")
            params.append(offset)

        def work(conn):
            if not named_cursor:
                return conn.execute(stmt, params).fetchall()
            # One server-side walk (get_all_rows): no OFFSET re-scans, bounded client memory per batch.
            with conn.transaction(), conn.cursor(name="palace_pg_walk") as cur:
                cur.itersize = 2000
                cur.execute(stmt, params)
                return cur.fetchall()

        return self._run(work)

    @staticmethod
    def _get_result(rows: list[tuple], spec: _IncludeSpec) -> GetResult:
        return GetResult(
            ids=[r[0] for r in rows],
            documents=[r[1] for r in rows] if spec.documents else [],
            metadatas=[r[2] for r in rows] if spec.metadatas else [],
            embeddings=[codec.vector_out(r[3]) for r in rows] if spec.embeddings else None,
        )

    def get(self, *, ids=None, where=None, where_document=None, limit=None, offset=None, include=None) -> GetResult:
        spec = _IncludeSpec.resolve(include, default_distances=False)
        if (limit is not None and limit < 0) or (offset is not None and offset < 0):
            raise ValueError("limit and offset must not be negative")
        pred = compile_filters(where, where_document)
        if ids is not None:
            ids = [str(i) for i in ([ids] if isinstance(ids, str) else ids)]
            if not ids:
                return GetResult(ids=[], documents=[], metadatas=[], embeddings=[] if spec.embeddings else None)
            pred = Predicate(sql.SQL("id = ANY(%s)"), [ids]).and_(pred)
        if limit == 0:
            return GetResult(ids=[], documents=[], metadatas=[], embeddings=[] if spec.embeddings else None)
        return self._get_result(self._rows(pred, spec, limit=limit, offset=offset), spec)

    def get_all_rows(self, where=None, include=None) -> GetResult:
        include = list(include) if include else ["metadatas"]
        spec = _IncludeSpec.resolve(include, default_distances=False)
        return self._get_result(self._rows(compile_where(where), spec, named_cursor=True), spec)

    def get_all_metadata(self, where=None) -> list[dict]:
        spec = _IncludeSpec(documents=False, metadatas=True, distances=False, embeddings=False)
        return [r[2] for r in self._rows(compile_where(where), spec, named_cursor=True)]

    def get_recent(self, *, limit, where=None, order_field="filed_at", include=None) -> GetResult:
        """Newest first by ``order_field`` as text (code point order, like ``recency_sort_key``).

        Exact at any size for every filter this backend compiles (all of them):
        ``supports_recency_order``.  Missing, empty and non-string values sort
        last; ties keep storage order, as the base class's stable sort does.
        """
        if limit is not None and limit <= 0:
            return GetResult.empty()
        spec = _IncludeSpec.resolve(include, default_distances=False)
        order = sql.SQL("CASE WHEN jsonb_typeof(metadata -> {f}) = 'string' AND metadata ->> {f} <> '' "
                        "THEN metadata ->> {f} END COLLATE \"C\" DESC NULLS LAST, seq").format(
            f=sql.Literal(str(order_field)))
        return self._get_result(self._rows(compile_where(where), spec, order=order, limit=limit), spec)

    def facet_counts(self, field: str, where=None, limit: int = 1000) -> dict[str, int]:
        """Distinct values of one metadata key and their counts; records without it are left out."""
        pred = compile_where(where)
        value = (sql.Identifier(field) if field in INDEXED_COLUMNS
                 else sql.SQL("metadata ->> {}").format(sql.Literal(str(field))))
        stmt = sql.SQL("SELECT {v} AS k, count(*) FROM {t} WHERE {v} IS NOT NULL AND ({f}) "
                       "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s").format(v=value, t=self._t(), f=pred.sql)
        rows = self._run(lambda conn: conn.execute(stmt, [*pred.params, int(limit)]).fetchall())
        return {str(k): int(c) for k, c in rows}

    def query(self, *, query_texts=None, query_embeddings=None, n_results=10, where=None, where_document=None,
              include=None) -> QueryResult:
        if query_texts is not None and query_embeddings is not None:
            raise ValueError("pass query_texts or query_embeddings, not both")
        if query_texts is not None:
            raise ValueError("the postgres backend requires query_embeddings; open the palace through "
                             "mempalace.palace.get_collection, which embeds query texts")
        if query_embeddings is None:
            raise ValueError("query requires query_embeddings")
        if len(query_embeddings) == 0:
            raise ValueError("query_embeddings must be a non-empty list")
        spec = _IncludeSpec.resolve(include, default_distances=True)
        matrix = codec.as_matrix(query_embeddings, what="query embeddings")
        if self._state.dimension is not None and matrix.shape[1] != self._state.dimension:
            raise self._dimension_error(matrix.shape[1], "the query has")
        n_results = int(n_results)
        if n_results <= 0 or self._state.dimension is None:
            return QueryResult.empty(len(matrix), embeddings_requested=spec.embeddings)
        pred = compile_filters(where, where_document)
        cols = Columns(documents=spec.documents, metadatas=spec.metadatas, embeddings=spec.embeddings)

        wing = wing_indexes.wing_of(where) if where_document is None else (wing_indexes.wing_of(where)[0], False)

        def work(conn):
            return [self._planner.knn(conn, self.table, vector, n_results, pred, cols, wing)[0] for vector in matrix]

        per_query = self._run(work)
        return QueryResult(
            ids=[[r[0] for r in rows] for rows in per_query],
            documents=[[r[1] for r in rows] if spec.documents else [] for rows in per_query],
            metadatas=[[r[2] for r in rows] if spec.metadatas else [] for rows in per_query],
            distances=[[float(r[4]) for r in rows] if spec.distances else [] for rows in per_query],
            embeddings=[[codec.vector_out(r[3]) for r in rows] for rows in per_query] if spec.embeddings else None,
        )

    def lexical_search(self, *, query: str, n_results: int = 10, where=None) -> LexicalResult:
        pred = compile_where(where)
        window = self._handle.settings.lexical_window
        rows = self._run(lambda conn: lexical.search(conn, self.table, query, int(n_results), pred, window))
        return LexicalResult(hits=[LexicalHit(id=r[0], document=r[1] or "", metadata=r[2] or {}, score=float(r[3]))
                                   for r in rows])

    # -- health and maintenance -----------------------------------------------------------
    def close(self) -> None:
        self._closed = True

    def health(self) -> HealthStatus:
        if self._closed or self._handle.closed:
            return HealthStatus.unhealthy("collection closed")
        try:
            return self._handle.pool.run(lambda conn: maintenance.health(conn, self._state))
        except Exception as exc:  # noqa: BLE001 - health summarises, never raises
            return HealthStatus.unhealthy(str(exc))

    def maintenance_state(self) -> dict:
        try:
            return self._run(lambda conn: maintenance.state(conn, self._state))
        except Exception:  # noqa: BLE001 - a state report must not raise
            log.debug("maintenance_state failed for %s", self.table, exc_info=True)
            return {"row_count": 0, "vector_index": None, "index_build_complete": False}

    def run_maintenance(self, kind: str) -> MaintenanceResult:
        if kind not in maintenance.KINDS:
            raise UnsupportedMaintenanceKindError(f"the postgres backend does not support maintenance kind {kind!r}")
        self._ensure_writable()
        result = self._run(lambda conn: maintenance.run(conn, self._state, kind,
                                                        min_rows=self._handle.settings.wing_index_min_rows))
        self._planner.forget(self.table)
        return result


# Upsert: replace document and vector, merge metadata (given None keeps it; a None value drops the key).
_UPSERT_CONFLICT = sql.SQL(
    "ON CONFLICT (id) DO UPDATE SET document = EXCLUDED.document, embedding = EXCLUDED.embedding, "
    "metadata = NULLIF(jsonb_strip_nulls(coalesce(t.metadata, '{}'::jsonb) || "
    "coalesce(%s::jsonb, '{}'::jsonb)), '{}'::jsonb)")
