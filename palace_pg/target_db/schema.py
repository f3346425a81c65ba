"""The target's layout: one schema, one table per Chroma collection, one AGE graph.

Identifiers are fixed here (an allow-list) or derived from collection names by
:func:`table_for_collection`, and always reach SQL through ``sql.Identifier``.

One database holds one palace.  ``backend_meta`` records which one (its source
fingerprint and palace id), and preflight refuses to load another palace on top.

Per collection table::

    id          text PRIMARY KEY        Chroma id, verbatim
    document    text                    NULL when Chroma holds none
    metadata    jsonb                   the whole metadata dict, types kept (NULL when none)
    embedding   vector(<dim>)           float32, bit-exact
    seq         bigint NOT NULL         order the rows were read from the source
    wing, room, source_file             generated from metadata, for btrees and filters

The metadata stays authoritative in jsonb (wing and room are not required: sweeper
rows have neither); the generated columns only serve indexes.
"""

from __future__ import annotations

import hashlib
import re

import psycopg
from psycopg import sql

SCHEMA = "mempalace"
GRAPH = "mempalace_kg"
SCHEMA_VERSION = 1

# Known MemPalace collections and their tables.  The drawers collection may be
# renamed in mempalace's config; `table_for_collection` maps any other name.
KNOWN_TABLES = {
    "mempalace_drawers": "drawers",
    "mempalace_closets": "closets",
    "mempalace_assets": "assets",
    "mempalace_compressed": "compressed",
}
# The knowledge graph's plain tables (the ``tables`` KG store, for servers without Apache AGE).
KG_TABLES = {"entities": "kg_entities", "triples": "kg_triples"}
RESERVED = {"backend_meta", "collections", "checkpoints", "runs", "rejects", "files", "source_digests",
            *KG_TABLES.values()}

# Index definitions built by phase 4, per table. HNSW parameters are recorded in backend_meta.
# m 24 / ef_construction 200: at 160K drawers the one pair measured that reaches recall 0.995 at k 10
# and 20 on off-distribution queries (ef_search 500; m 16 / 100 stops at 0.988 / 0.991 at pgvector's
# cap of 1000), for 2.3x the build time of m 16 / 100 (190 s against 84 s on 2 loaded cores):
# benchmarks/results/hnsw_params*.json.  Chroma builds with 16 / 100.
HNSW_M = 24
HNSW_EF_CONSTRUCTION = 200


def table_for_collection(name: str, drawers_name: str = "mempalace_drawers") -> str:
    if name == drawers_name:
        return "drawers"
    if name in KNOWN_TABLES:
        return KNOWN_TABLES[name]
    slug = re.sub(r"[^a-z0-9_]", "_", name.lower())[:40]
    return f"c_{slug}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def qualified(table: str) -> sql.Composed:
    return sql.Identifier(SCHEMA, table)


BASE_DDL = [
    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)),
    sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
        key text PRIMARY KEY,
        value jsonb NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now())""").format(qualified("backend_meta")),
    sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
        name text PRIMARY KEY,
        table_name text NOT NULL UNIQUE,
        dimension integer,
        metadata jsonb,
        source_count bigint NOT NULL,
        role text NOT NULL)""").format(qualified("collections")),
    sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
        phase text NOT NULL,
        unit text NOT NULL DEFAULT '',
        run_id uuid NOT NULL,
        state text NOT NULL CHECK (state IN ('running', 'done')),
        batches integer NOT NULL DEFAULT 0,
        rows_done bigint NOT NULL DEFAULT 0,
        cursor jsonb,
        details jsonb,
        started_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (phase, unit))""").format(qualified("checkpoints")),
    sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
        run_id uuid PRIMARY KEY,
        started_at timestamptz NOT NULL DEFAULT now(),
        finished_at timestamptz,
        status text NOT NULL,
        tool_version text NOT NULL,
        source_fingerprint text NOT NULL,
        summary jsonb)""").format(qualified("runs")),
    sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
        collection text NOT NULL,
        id text NOT NULL,
        reason text NOT NULL,
        payload bytea NOT NULL,  -- JSON (ensure_ascii, NaN allowed) of id, document, metadata
        vector bytea,             -- float32 little-endian, as read
        PRIMARY KEY (collection, id))""").format(qualified("rejects")),
    # What was read from the source, per row, written in the same transaction as the row:
    # verification compares the stored rows against these without reading the source again.
    sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
        collection text NOT NULL,
        id text NOT NULL,
        document bytea,           -- sha256 of the UTF-8 document (NULL when none)
        metadata bytea,           -- sha256 of the type-strict canonical JSON (NULL when none)
        vector bytea NOT NULL,    -- sha256 of pgvector's binary form of the float32 vector
        proven bytea,             -- set once verification proved the stored row equal (row_proofs.py)
        PRIMARY KEY (collection, id))""").format(qualified("source_digests")),
    sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
        path text PRIMARY KEY,
        content bytea NOT NULL,
        sha256 text NOT NULL)""").format(qualified("files")),
]


def collection_ddl(table: str, dimension: int | None) -> sql.Composed:
    vec = sql.SQL("vector({})").format(sql.Literal(int(dimension))) if dimension else sql.SQL("vector")
    return sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
        id text PRIMARY KEY,
        document text,
        metadata jsonb,
        embedding {} STORAGE MAIN,  -- inline, not TOASTed: exact filtered scans read it per row
        seq bigint NOT NULL,
        wing text GENERATED ALWAYS AS (metadata ->> 'wing') STORED,
        room text GENERATED ALWAYS AS (metadata ->> 'room') STORED,
        source_file text GENERATED ALWAYS AS (metadata ->> 'source_file') STORED)""").format(qualified(table), vec)


def index_definitions(table: str, *, m: int = HNSW_M, ef_construction: int = HNSW_EF_CONSTRUCTION) -> list[tuple[str, sql.Composed]]:
    """(index name, CREATE INDEX statement) for one collection table, HNSW first."""
    t = qualified(table)

    def name(suffix: str) -> str:
        return f"{table}_{suffix}"

    return [
        (name("embedding_hnsw"), sql.SQL(
            "CREATE INDEX {} ON {} USING hnsw (embedding vector_cosine_ops) WITH (m = {}, ef_construction = {})"
        ).format(sql.Identifier(name("embedding_hnsw")), t, sql.Literal(m), sql.Literal(ef_construction))),
        (name("metadata_gin"), sql.SQL("CREATE INDEX {} ON {} USING gin (metadata jsonb_path_ops)")
         .format(sql.Identifier(name("metadata_gin")), t)),
        (name("wing_room"), sql.SQL("CREATE INDEX {} ON {} (wing, room)").format(sql.Identifier(name("wing_room")), t)),
        (name("room"), sql.SQL("CREATE INDEX {} ON {} (room)").format(sql.Identifier(name("room")), t)),
        (name("source_file"), sql.SQL("CREATE INDEX {} ON {} (source_file)")
         .format(sql.Identifier(name("source_file")), t)),
        # not "<table>_seq": that is the backend's sequence for new rows
        (name("seq_idx"), sql.SQL("CREATE INDEX {} ON {} (seq)").format(sql.Identifier(name("seq_idx")), t)),
        (name("document_fts"), sql.SQL("CREATE INDEX {} ON {} USING gin (to_tsvector('simple', coalesce(document, '')))")
         .format(sql.Identifier(name("document_fts")), t)),
    ]


def create_base(conn: psycopg.Connection) -> None:
    for stmt in BASE_DDL:
        conn.execute(stmt)


def create_graph(conn: psycopg.Connection) -> None:
    """Create the AGE graph once; ag_catalog must be on the search_path for create_graph."""
    exists = conn.execute("SELECT 1 FROM ag_catalog.ag_graph WHERE name = %s", [GRAPH]).fetchone()
    if not exists:
        conn.execute("SET LOCAL search_path = \"$user\", public, ag_catalog")
        conn.execute("SELECT ag_catalog.create_graph(%s)", [GRAPH])
