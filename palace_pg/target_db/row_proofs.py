"""Proofs of rows already verified, so that a later verification need not read them out again.

Phase 6 proves a stored row equal to what was read of it from the source (its
``source_digests`` row: document, typed metadata and vector digests).  When it
has, it can record a *proof* beside those digests: sha256 over the source
digests and over the stored row's own bytes (document, jsonb text, pgvector's
binary vector), all computed by PostgreSQL.  A later verification (the
cutover's, inside the downtime window) recomputes that expression in one SQL
pass: where it still equals the recorded proof, neither the source digests nor
the row changed since the row was proven, so the row is proven again without
leaving the database.  Only the rows whose proof is missing or differs (those
a sync rewrote, or anything altered behind palace_pg's back) are fetched and
compared in full, type-strict, as the first verification did.

A sync that rewrites a row replaces its ``source_digests`` row, so its proof is
gone with it: a proof can never outlive the digests it was taken against.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from . import schema

_NONE = sql.SQL("'\\x00'::bytea")


def _row_bytes(alias: str) -> sql.Composable:
    """sha256 of a stored row's document, jsonb text and vector, each hashed (NULL kept distinct from '')."""
    t = sql.Identifier(alias)
    return sql.SQL(
        "sha256(coalesce(sha256(convert_to({t}.document, 'UTF8')), {n}) "
        "|| coalesce(sha256(convert_to({t}.metadata::text, 'UTF8')), {n}) "
        "|| coalesce(sha256(vector_send({t}.embedding)), {n}))").format(t=t, n=_NONE)


def proof_expression(table_alias: str = "t", digests_alias: str = "d") -> sql.Composable:
    d = sql.Identifier(digests_alias)
    return sql.SQL("sha256(coalesce({d}.document, {n}) || coalesce({d}.metadata, {n}) || {d}.vector || {row})").format(
        d=d, n=_NONE, row=_row_bytes(table_alias))


def ensure_column(conn: psycopg.Connection) -> None:
    """Targets migrated before proofs existed get the column (idempotent, instant: no rewrite)."""
    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS proven bytea").format(
        schema.qualified("source_digests")))


def unproven_ids(conn: psycopg.Connection, table: str, collection: str) -> list[str]:
    """Ids of stored rows without a digest row, without a proof, or whose proof no longer holds."""
    return [r[0] for r in conn.execute(sql.SQL(
        "SELECT t.id FROM {table} t LEFT JOIN {digests} d ON d.collection = %s AND d.id = t.id "
        "WHERE d.id IS NULL OR d.proven IS NULL OR d.proven <> {proof}").format(
            table=schema.qualified(table), digests=schema.qualified("source_digests"),
            proof=proof_expression()), [collection])]


def stored_count(conn: psycopg.Connection, table: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(schema.qualified(table))).fetchone()[0]


def digests_without_row(conn: psycopg.Connection, table: str, collection: str) -> list[str]:
    """Ids read from the source that the table does not hold (rejected rows, or missing ones)."""
    return [r[0] for r in conn.execute(sql.SQL(
        "SELECT d.id FROM {digests} d WHERE d.collection = %s "
        "AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.id = d.id)").format(
            table=schema.qualified(table), digests=schema.qualified("source_digests")), [collection])]


def record(conn: psycopg.Connection, table: str, collection: str, *, ids: list[str] | None = None,
           except_ids: list[str] = ()) -> int:
    """Record the proof of rows just compared equal in full: ``ids`` (or every row but ``except_ids``)."""
    where = sql.SQL("d.id = ANY(%s)") if ids is not None else sql.SQL("NOT (d.id = ANY(%s))")
    cur = conn.execute(sql.SQL(
        "UPDATE {digests} d SET proven = {proof} FROM {table} t "
        "WHERE d.collection = %s AND d.id = t.id AND {where}").format(
            digests=schema.qualified("source_digests"), table=schema.qualified(table),
            proof=proof_expression(), where=where), [collection, list(ids if ids is not None else except_ids)])
    return cur.rowcount
