"""The ``mempalace.backend_meta`` keys the backend reads and writes.

Shared with the migration (palace_pg/phases/schema_phase.py, engine.py):

* ``palace_id`` (a JSON string): which palace this database holds.  The
  marker in the palace folder carries the same id; the backend refuses to
  open a palace whose marker names another one, which is how two palaces can
  never share one database.
* ``embedder`` (a JSON object keyed by collection name): ``{"model_name",
  "dimension", ...}``, the same shape as MemPalace's ``mempalace_embedder.json``
  sidecar.  Other keys in an entry (the migration's ``recorded_dimension``)
  are kept when the backend updates one.
* ``search`` (optional JSON object): tuning read at open, e.g.
  ``{"ef_search": 100, "exact_max_rows": 40000}`` (see settings.py).
* ``drawers_collection`` (written by the migration): the drawers name.
"""

from __future__ import annotations

from typing import Any, Optional

import psycopg
from mempalace.backends.base import EmbedderIdentity
from psycopg.types.json import Jsonb

from ..target_db import schema

PALACE_ID = "palace_id"
EMBEDDER = "embedder"
SEARCH = "search"
DRAWERS_COLLECTION = "drawers_collection"

_TABLE = "mempalace.backend_meta"


def get(conn: psycopg.Connection, key: str, default: Any = None) -> Any:
    if not conn.execute("SELECT to_regclass(%s) IS NOT NULL", [_TABLE]).fetchone()[0]:
        return default
    row = conn.execute(f"SELECT value FROM {_TABLE} WHERE key = %s", [key]).fetchone()
    return row[0] if row else default


def put(conn: psycopg.Connection, key: str, value: Any) -> None:
    conn.execute(f"INSERT INTO {_TABLE} (key, value) VALUES (%s, %s) "
                 "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
                 [key, Jsonb(value)])


def embedder_identity(conn: psycopg.Connection, collection: str) -> Optional[EmbedderIdentity]:
    entries = get(conn, EMBEDDER) or {}
    entry = entries.get(collection) if isinstance(entries, dict) else None
    if not isinstance(entry, dict) or not entry.get("model_name"):
        return None
    return EmbedderIdentity(model_name=str(entry["model_name"]), dimension=int(entry.get("dimension") or 0))


def set_embedder_identity(conn: psycopg.Connection, collection: str, identity: EmbedderIdentity) -> None:
    """Merge one collection's entry atomically (concurrent writers never lose the others)."""
    entry = {"model_name": str(identity.model_name), "dimension": int(identity.dimension or 0)}
    conn.execute(
        f"INSERT INTO {_TABLE} (key, value) VALUES (%s, jsonb_build_object(%s::text, %s::jsonb)) "
        "ON CONFLICT (key) DO UPDATE SET value = "
        f"{_TABLE}.value || jsonb_build_object(%s::text, coalesce({_TABLE}.value -> %s, '{{}}') || %s::jsonb), "
        "updated_at = now()",
        [EMBEDDER, collection, Jsonb(entry), collection, collection, Jsonb(entry)])


def record_dimension(conn: psycopg.Connection, collection: str, dimension: int) -> None:
    """Fill in the dimension of an identity recorded before the first vector arrived (dimension 0)."""
    conn.execute(
        f"UPDATE {_TABLE} SET value = jsonb_set(value, ARRAY[%s::text, 'dimension'], to_jsonb(%s::int)), "
        "updated_at = now() WHERE key = %s AND value ? %s "
        "AND coalesce((value -> %s ->> 'dimension')::int, 0) = 0",
        [collection, dimension, EMBEDDER, collection, collection])


def ensure_base(conn: psycopg.Connection) -> None:
    schema.create_base(conn)
