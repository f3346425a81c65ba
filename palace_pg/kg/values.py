"""Values as sqlite would store them, and the ones PostgreSQL cannot hold.

mempalace's sqlite tables declare column types, and sqlite coerces what it is
given by *type affinity*: an int written to a TEXT column is stored as ``'5'``,
an int written to the REAL ``confidence`` column as ``5.0``, a NaN as NULL.
To give back exactly what sqlite would, the AGE graph stores the value sqlite
would have stored.  Rather than re-implement the affinity rules, ordinary
values take a fast path and anything unusual goes through an in-memory sqlite
table with the same declarations, which is sqlite's own rule by definition.
"""

from __future__ import annotations

import math
import sqlite3
import threading

from .errors import KgValueRejected
from .store import ENTITY_COLUMNS, TRIPLE_COLUMNS

_DECLARED = {
    "entities": {c: "TEXT" for c in ENTITY_COLUMNS},
    "triples": {c: ("REAL" if c == "confidence" else "TEXT") for c in TRIPLE_COLUMNS},
}
_local = threading.local()


def _scratch() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(":memory:")
        for table, cols in _DECLARED.items():
            conn.execute(f"CREATE TABLE {table} ({', '.join(f'{c} {t}' for c, t in cols.items())})")
        _local.conn = conn
    return conn


def _is_plain(table: str, column: str, value: object) -> bool:
    if table == "triples" and column == "confidence":
        # REAL affinity turns numeric text and ints into floats: only a finite float is as-is.
        return value is None or (type(value) is float and math.isfinite(value))
    return value is None or type(value) is str


def as_sqlite_stores(table: str, row: dict) -> dict:
    """``row`` (sqlite column names only) with each value as sqlite would store and return it."""
    cols = _DECLARED[table]
    if all(_is_plain(table, c, row.get(c)) for c in cols):
        out = {c: row.get(c) for c in cols}
    else:
        conn = _scratch()
        names = list(cols)
        try:
            conn.execute(f"INSERT INTO {table} VALUES ({', '.join('?' for _ in names)})", [row.get(c) for c in names])
        except sqlite3.Error as exc:  # e.g. an unsupported Python type
            raise KgValueRejected(f"{table} row {row.get('id')!r}: {exc}", "pass str, int, float or None values") from None
        values = conn.execute(f"SELECT * FROM {table}").fetchone()
        conn.execute(f"DELETE FROM {table}")
        out = dict(zip(names, values))
    check_storable(table, out)
    return out


def check_storable(table: str, row: dict) -> None:
    """Refuse values that PostgreSQL/agtype cannot hold verbatim, naming the row and column."""
    for column, value in row.items():
        if value is None or (type(value) is str and "\x00" not in value):
            continue  # the common case, checked first (this runs for every row written)
        if isinstance(value, str) and "\x00" in value:
            raise KgValueRejected(
                f"{table} row {row.get('id')!r}: column {column!r} contains a NUL character, "
                "which PostgreSQL text cannot hold",
                "remove the NUL (\\x00) from the value; nothing was written",
                table=table, id=row.get("id"), column=column,
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise KgValueRejected(
                f"{table} row {row.get('id')!r}: column {column!r} is {value!r}, which agtype/JSON cannot carry",
                "use a finite number or NULL; nothing was written",
                table=table, id=row.get("id"), column=column,
            )
        if isinstance(value, (bytes, bytearray, memoryview)):
            raise KgValueRejected(
                f"{table} row {row.get('id')!r}: column {column!r} holds a BLOB, which the graph does not store",
                "store text instead; nothing was written",
                table=table, id=row.get("id"), column=column,
            )
