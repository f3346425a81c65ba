"""Palaces built by hand for tests and benchmarks: synthetic drawers straight into the postgres tables.

Nothing here is used by the backend itself.  The generator makes clustered
vectors on a low-rank latent structure (like sentence embeddings: most of the
variance in a few dozen directions) and assigns each cluster to one wing, so a
wing filter is strongly correlated with the vectors: the worst case for an
HNSW index that filters after the scan.  The wings and their shares are the
generator's (:data:`palace_pg.synth.WINGS`, 30% down to 1%), so benchmarks can
name a 1% and an 11% wing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..marker import Marker
from ..synth import WINGS
from ..target_db import ddl, jsonfmt, schema, state

_VOCAB = [f"{a}{b}" for a in ("al", "be", "ca", "do", "ep", "fi", "go", "hu", "io", "ju", "ka", "lo")
          for b in ("ra", "ne", "to", "mi", "su", "vek", "dor", "pal", "qin", "ces", "tor", "wyn")]


@dataclass
class SyntheticSet:
    ids: list[str]
    documents: list[str]
    metadatas: list[dict]
    embeddings: np.ndarray  # float32, L2-normalised
    queries: np.ndarray  # held-out query vectors from the same distribution

    def wing_of(self, i: int) -> str:
        return self.metadatas[i]["wing"]


def synthetic_drawers(n: int, *, dim: int = 384, n_queries: int = 200, seed: int = 7, latent: int = 48,
                      clusters: int = 200, spread: float = 0.6, noise: float = 1.0, doc_words: int = 120,
                      with_documents: bool = True) -> SyntheticSet:
    """``n`` drawers with miner-like metadata and clustered, normalised vectors."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((latent, dim)).astype(np.float32)
    centers = rng.standard_normal((clusters, latent)).astype(np.float32)
    wing_of_cluster = np.repeat(np.arange(len(WINGS)), [share * clusters // 100 for _, share in WINGS])
    wing_of_cluster = np.resize(wing_of_cluster, clusters)

    def sample(count: int) -> tuple[np.ndarray, np.ndarray]:
        cluster = rng.integers(0, clusters, count)
        lat = centers[cluster] + rng.standard_normal((count, latent)).astype(np.float32) * spread
        x = lat @ basis + rng.standard_normal((count, dim)).astype(np.float32) * noise
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32), cluster

    vectors, cluster = sample(n)
    queries, _ = sample(n_queries)
    words = np.array(_VOCAB)
    ids, docs, metas = [], [], []
    word_idx = rng.integers(0, len(words), (n, doc_words)) if with_documents else None
    for i in range(n):
        wing = WINGS[wing_of_cluster[cluster[i]]][0]
        room = f"room{cluster[i] % 5}"
        source = f"/palace/src/{wing}/file{i // 8:06d}.md"
        ids.append(f"drawer_{wing}_{room}_{i:08d}")
        docs.append(" ".join(words[word_idx[i]]) if with_documents else f"drawer {i}")
        metas.append({"wing": wing, "room": room, "source_file": source, "chunk_index": i % 8,
                      "added_by": "mempalace", "filed_at": f"2026-01-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00",
                      "normalize_version": 2, "id_recipe": "v3", "source_mtime": 1767225600.0 + i})
    return SyntheticSet(ids, docs, metas, vectors, queries)


def create_collection_table(conn: psycopg.Connection, collection: str, dimension: int | None, *,
                            drawers_name: str = "mempalace_drawers") -> str:
    """Base schema, one collection table and its registry row (no indexes yet)."""
    schema.create_base(conn)
    table = schema.table_for_collection(collection, drawers_name)
    conn.execute(schema.collection_ddl(table, dimension))
    ddl.register_collection(conn, collection, table, dimension, metadata={"hnsw:space": "cosine"},
                            drawers_name=drawers_name)
    return table


def copy_rows(conn: psycopg.Connection, table: str, ids, documents, metadatas, embeddings, *, first_seq: int = 0) -> None:
    """Binary COPY, as the migration loads rows (types kept through jsonfmt)."""
    ddl.copy_rows(conn, table, ((rid, documents[i],
                                 Jsonb(metadatas[i], dumps=jsonfmt.dumps) if metadatas[i] is not None else None,
                                 np.asarray(embeddings[i], dtype=np.float32), first_seq + i)
                                for i, rid in enumerate(ids)))


def build_indexes(conn: psycopg.Connection, table: str) -> None:
    conn.execute("SET maintenance_work_mem = '1GB'")
    for _name, stmt in schema.index_definitions(table):
        conn.execute(stmt)
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(schema.qualified(table)))


def claim_palace(path: str | Path, dsn: str, collections: dict[str, int], *, model_name: str = "minilm",
                 palace_id: str | None = None) -> Path:
    """Marker in ``path``, ``palace_id`` and embedder identities in the database (tables already there)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    palace_id = palace_id or str(uuid.uuid4())
    with psycopg.connect(dsn, autocommit=True) as conn:
        state.set_meta(conn, "palace_id", palace_id)
        state.set_meta(conn, "embedder", {name: {"model_name": model_name, "dimension": dim}
                                          for name, dim in collections.items()})
    Marker.for_target(palace_id, dsn).write(path)
    return path


def build_palace(path: str | Path, dsn: str, *, collections: dict[str, int] | None = None,
                 model_name: str = "minilm", palace_id: str | None = None) -> Path:
    """A migrated-looking palace: marker in ``path``, schema and empty indexed tables in ``dsn``.

    ``collections`` maps collection names to dimensions (default: drawers and
    closets at 384).  Rows can then be written with :func:`copy_rows` or
    through the backend.  ``dsn`` must name an empty database.
    """
    collections = collections or {"mempalace_drawers": 384, "mempalace_closets": 384}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name, dim in collections.items():
            table = create_collection_table(conn, name, dim)
            for _idx, stmt in schema.index_definitions(table):
                conn.execute(stmt)
    return claim_palace(path, dsn, collections, model_name=model_name, palace_id=palace_id)
