"""The target database as one consistent, read-only snapshot.

Everything the export reads comes through one connection in one REPEATABLE READ
READ ONLY transaction, so a MemPalace writer still running cannot tear the
export (drawers from one moment, the KG from another), and nothing is written.
The KG is read through the ``KGStore`` interface (``rows``), so the AGE store and
a plain-tables store both work.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import psycopg
from psycopg import sql

from ..dsn import connect
from ..errors import PalacePgError
from ..kg.store import KGStore
from ..target_db import schema, state

ROW_PAGE = 2000  # rows per server-side cursor fetch
KG_PAGE = 10_000  # KG rows per keyset page


@dataclass
class TargetCollection:
    name: str
    table: str
    dimension: int | None
    metadata: dict | None
    role: str
    count: int


@dataclass
class RowPage:
    ids: list[str]
    documents: list[str | None]
    metadatas: list[dict | None]
    embeddings: np.ndarray  # float32, one row per id


def default_store_factory(conn: psycopg.Connection) -> KGStore:
    from ..kg.age_store import AgeStore

    return AgeStore(conn)


class TargetSnapshot:
    """Reads of one palace_pg target inside a single read-only snapshot transaction."""

    def __init__(self, conn: psycopg.Connection, store_factory: Callable[[psycopg.Connection], KGStore]) -> None:
        self.conn = conn
        self._store_factory = store_factory

    @classmethod
    @contextlib.contextmanager
    def open(cls, dsn: str | None, *, store_factory: Callable[[psycopg.Connection], KGStore] | None = None
             ) -> Iterator["TargetSnapshot"]:
        with connect(dsn, autocommit=True, application_name="palace_pg export") as conn:
            if not state.schema_exists(conn):
                raise PalacePgError(f"{conn.info.dsn} holds no palace_pg schema",
                                    "pass the --dsn of a database a palace was migrated into")
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                snap = cls(conn, store_factory or default_store_factory)
                store = snap._store_factory(conn)
                store.prepare_session()  # SET in a read-only transaction is allowed; it ends with it
                snap.store = store
                yield snap
            finally:
                conn.execute("ROLLBACK")  # read only: nothing to keep

    # -- facts ---------------------------------------------------------------------------
    def meta(self, key: str):
        return state.get_meta(self.conn, key)

    def collections(self) -> list[TargetCollection]:
        rows = self.conn.execute(sql.SQL(
            "SELECT name, table_name, dimension, metadata, role FROM {} ORDER BY name")
            .format(schema.qualified("collections"))).fetchall()
        out = []
        for name, table, dim, meta, role in rows:
            count = self.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(schema.qualified(table))).fetchone()[0]
            out.append(TargetCollection(name, table, dim, meta, role, count))
        return out

    def files(self) -> list[tuple[str, bytes, str]]:
        """(path, content, sha256) of the carried small files ("palace/…", "beside/…")."""
        return [(p, bytes(c), s) for p, c, s in self.conn.execute(sql.SQL(
            "SELECT path, content, sha256 FROM {} ORDER BY path").format(schema.qualified("files")))]

    def rejected(self) -> dict[str, int]:
        return dict(self.conn.execute(sql.SQL("SELECT collection, count(*) FROM {} GROUP BY 1")
                                      .format(schema.qualified("rejects"))).fetchall())

    def null_embeddings(self, coll: TargetCollection, listed: int = 10) -> tuple[int, list[str]]:
        """(how many rows have no embedding, the first ``listed`` of their ids)."""
        count, ids = self.conn.execute(sql.SQL(
            "SELECT count(*), (array_agg(id ORDER BY seq, id))[1:%s] FROM {} WHERE embedding IS NULL")
            .format(schema.qualified(coll.table)), (listed,)).fetchone()
        return count, ids or []

    # -- rows ----------------------------------------------------------------------------
    def pages(self, coll: TargetCollection, page: int = ROW_PAGE) -> Iterator[RowPage]:
        """Rows in ``seq`` order (the order they were read from Chroma, then written since), paged.

        Metadata comes back through psycopg's json loader, so jsonfmt's positional floats
        (1e16 written as 10000000000000000.0) and 1 / 1.0 / true keep their types.
        """
        with self.conn.cursor(name=f"export_{coll.table}", binary=True) as cur:
            cur.itersize = page
            cur.execute(sql.SQL("SELECT id, document, metadata, embedding FROM {} ORDER BY seq, id")
                        .format(schema.qualified(coll.table)))
            while True:
                rows = cur.fetchmany(page)
                if not rows:
                    return
                dim = coll.dimension or (len(rows[0][3].to_numpy()) if rows[0][3] is not None else 0)
                vectors = np.empty((len(rows), dim), dtype=np.float32)
                for i, r in enumerate(rows):
                    vectors[i] = r[3].to_numpy()
                yield RowPage([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], vectors)

    # -- knowledge graph -----------------------------------------------------------------
    def kg_pages(self, table: str, page: int = KG_PAGE) -> Iterator[list[dict]]:
        """The rows of ``entities`` or ``triples`` in rowid order, with ``rowid``, ``page`` at a time.

        Paged (keyset on the rowid index) because one fetch of 100K triples as JSON
        took ~500 MB of RSS while parsed; a page at a time stays small.
        """
        after = 0
        while True:
            rows = self.store.rows(table, after, page)
            if not rows:
                return
            yield rows
            after = rows[-1]["rowid"]

    def kg_rows(self, table: str) -> list[dict]:
        """Every row of ``entities`` or ``triples`` in rowid order, with ``rowid``."""
        return [row for page in self.kg_pages(table) for row in page]
