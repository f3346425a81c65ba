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

from typing import Optional

import psycopg
from mempalace.backends.base import EmbedderIdentity
from psycopg import sql
from psycopg.types.json import Jsonb

from ..target_db import schema, state

PALACE_ID = "palace_id"
EMBEDDER = "embedder"
SEARCH = "search"
DRAWERS_COLLECTION = "drawers_collection"

_TABLE = schema.qualified("backend_meta")

# one reader and writer of backend_meta for the migration and the backend
get = state.get_meta
put = state.set_meta


def embedder_identity(conn: psycopg.Connection, collection: str) -> Optional[EmbedderIdentity]:
    entries = get(conn, EMBEDDER) or {}
    entry = entries.get(collection) if isinstance(entries, dict) else None
    if not isinstance(entry, dict) or not entry.get("model_name"):
        return None
    return EmbedderIdentity(model_name=str(entry["model_name"]), dimension=int(entry.get("dimension") or 0))


def set_embedder_identity(conn: psycopg.Connection, collection: str, identity: EmbedderIdentity) -> None:
    """Merge one collection's entry atomically (concurrent writers never lose the others)."""
    entry = {"model_name": str(identity.model_name), "dimension": int(identity.dimension or 0)}
    conn.execute(sql.SQL(
        "INSERT INTO {t} AS m (key, value) VALUES (%s, jsonb_build_object(%s::text, %s::jsonb)) "
        "ON CONFLICT (key) DO UPDATE SET value = "
        "m.value || jsonb_build_object(%s::text, coalesce(m.value -> %s, '{{}}') || %s::jsonb), "
        "updated_at = now()").format(t=_TABLE),
        [EMBEDDER, collection, Jsonb(entry), collection, collection, Jsonb(entry)])


def record_dimension(conn: psycopg.Connection, collection: str, dimension: int) -> None:
    """Fill in the dimension of an identity recorded before the first vector arrived (dimension 0)."""
    conn.execute(sql.SQL(
        "UPDATE {} SET value = jsonb_set(value, ARRAY[%s::text, 'dimension'], to_jsonb(%s::int)), "
        "updated_at = now() WHERE key = %s AND value ? %s "
        "AND coalesce((value -> %s ->> 'dimension')::int, 0) = 0").format(_TABLE),
        [collection, dimension, EMBEDDER, collection, collection])


def ensure_base(conn: psycopg.Connection) -> None:
    schema.create_base(conn)
