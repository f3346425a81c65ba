"""Chroma palaces for tests and benchmarks, written with chromadb itself from explicit rows.

Unlike :func:`palace_pg.synth.make_palace` (every MemPalace writer kind, seeded),
these hold exactly the rows a test names: odd ids, damaged vectors, sizes at a
batch edge.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_of(palace: Path, dest_parent: Path) -> Path:
    """A private copy (with hallways/tunnels beside it) that a test may change."""
    dest_parent.mkdir(parents=True, exist_ok=True)
    for sibling in palace.parent.iterdir():
        target = dest_parent / sibling.name
        if sibling.is_dir():
            shutil.copytree(sibling, target)
        else:
            shutil.copy2(sibling, target)
    return dest_parent / palace.name


HNSW_METADATA = {"hnsw:space": "cosine", "hnsw:num_threads": 1, "hnsw:batch_size": 100, "hnsw:sync_threshold": 1000}


def unit_vectors(n: int, dim: int = 384, seed: int = 0):
    import numpy as np

    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def build_palace(path: Path, drawers: list[tuple], *, closets: int = 5, kg: bool = True) -> Path:
    """A palace written with chromadb itself, from explicit (id, document, metadata, vector) rows."""
    import chromadb
    from chromadb.config import Settings

    path.mkdir(parents=True, exist_ok=True)
    client = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
    col = client.create_collection("mempalace_drawers", metadata=HNSW_METADATA, embedding_function=None)
    for start in range(0, len(drawers), 5000):
        chunk = drawers[start:start + 5000]
        col.add(ids=[r[0] for r in chunk], documents=[r[1] for r in chunk], metadatas=[r[2] for r in chunk],
                embeddings=[r[3] for r in chunk])
    if closets:
        cl = client.create_collection("mempalace_closets", metadata=HNSW_METADATA, embedding_function=None)
        vecs = unit_vectors(closets, seed=99)
        cl.add(ids=[f"closet_w_r_{i:024d}_01" for i in range(closets)],
               documents=[f"topic{i}|alice;bob|→{drawers[0][0]}" for i in range(closets)],
               metadatas=[{"wing": "w", "room": "r", "drawer_count": 1} for _ in range(closets)], embeddings=vecs)
    del client
    if kg:
        from mempalace.knowledge_graph import KnowledgeGraph

        graph = KnowledgeGraph(str(path / "knowledge_graph.sqlite3"))
        graph.add_entity("Alice Smith", "person", {"role": "lead"})
        graph.add_triple("Alice Smith", "works on", "MemPalace", valid_from="2026-01-01", source_closet="c1")
        graph.close()
    return path
