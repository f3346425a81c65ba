"""A fingerprint of everything palace_pg wrote: per-table sha256 over rows ordered by key.

Two targets with equal fingerprints hold the same rows: ids, documents, typed
metadata (jsonb's canonical text), float32 vector bytes, every KG column,
rejects and carried files.  Bookkeeping (checkpoints, runs, timestamps) is left
out on purpose: a resumed run and a clean run differ there and nowhere else.
"""

from __future__ import annotations

import hashlib

import psycopg
from psycopg import sql

from . import jsonfmt, schema

_ROW_QUERIES = {
    "rejects": "SELECT collection, id, reason, encode(payload, 'hex'), encode(vector, 'hex') FROM {} ORDER BY 1, 2",
    "files": "SELECT path, sha256 FROM {} ORDER BY path",
    "collections": "SELECT name, table_name, dimension, metadata::text, source_count, role FROM {} ORDER BY name",
}


def target_fingerprint(conn: psycopg.Connection, *, with_seq: bool = True) -> dict[str, str]:
    """{table: sha256 hex} for every data table and the KG.

    ``with_seq=False`` leaves out each row's ``seq`` (the order it was read in): a target caught up
    by ``sync`` then equals a fresh migration of the palace as it is now.
    """
    out: dict[str, str] = {}
    tables = [r[0] for r in conn.execute(sql.SQL("SELECT table_name FROM {} ORDER BY 1")
                                         .format(schema.qualified("collections"))).fetchall()]
    for table in tables:
        digest = hashlib.sha256()
        with conn.cursor() as cur:
            cur.execute(sql.SQL(
                "SELECT id, document, metadata::text, encode(vector_send(embedding), 'hex'), {} FROM {} ORDER BY id")
                .format(sql.SQL("seq") if with_seq else sql.SQL("NULL"), schema.qualified(table)))
            for row in cur:
                digest.update(repr(row).encode())
        out[table] = digest.hexdigest()
    for table, query in _ROW_QUERIES.items():
        digest = hashlib.sha256()
        for row in conn.execute(sql.SQL(query).format(schema.qualified(table))):
            digest.update(repr(row).encode())
        out[table] = digest.hexdigest()
    from ..kg.stores import read_entities, read_triples

    for name, rows in (("kg_entities", read_entities(conn)), ("kg_triples", read_triples(conn))):
        out[name] = hashlib.sha256("\n".join(jsonfmt.canonical(r) for r in rows).encode()).hexdigest()
    return out
