"""Every kind of write MemPalace makes, through its own API, one round at a time (issue 16's tests and the
sync kill points of benchmarks/kill_resume.py): drawers added, upserted, updated and deleted, a closet,
KG triples added, invalidated and superseded.  Writes the palace it is given: pass a copy."""

from __future__ import annotations

import numpy as np

from ..source.kg_reader import resolve_kg_path


def _vector(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(384).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


def write_through_mempalace(palace, round_: int) -> dict:
    """One round of every kind of write MemPalace makes: drawers add/upsert/update/delete, closets, KG."""
    from mempalace.backends.chroma import ChromaBackend
    from mempalace.knowledge_graph import KnowledgeGraph

    drawers = ChromaBackend().get_collection(str(palace), "mempalace_drawers")
    existing = drawers.get(limit=6, include=["metadatas"])
    ids = existing.ids if hasattr(existing, "ids") else existing["ids"]
    new_ids = [f"drawer_sync_{round_}_{i}" for i in range(3)]
    drawers.add(ids=new_ids, documents=[f"new drawer {round_}/{i} about sync" for i in range(3)],
                metadatas=[{"wing": "sync", "room": f"r{round_}", "chunk_index": i, "weight": 1.5, "flag": True}
                           for i in range(3)],
                embeddings=[_vector(1000 * round_ + i) for i in range(3)])
    drawers.upsert(ids=[ids[0]], documents=[f"upserted in round {round_}"], metadatas=[{"wing": "sync", "n": round_}],
                   embeddings=[_vector(5000 + round_)])
    drawers.update(ids=[ids[1]], metadatas=[{"wing": "moved", "room": "updated", "round": round_}])
    drawers.delete(ids=[ids[2 + round_]])
    closets = ChromaBackend().get_collection(str(palace), "mempalace_closets")
    closets.add(ids=[f"closet_sync_{round_}"], documents=[f"pointer line {round_}"], metadatas=[{"wing": "sync"}],
                embeddings=[_vector(9000 + round_)])
    kg = KnowledgeGraph(str(resolve_kg_path(palace)))
    kg.add_triple(f"Sync{round_}", "knows", "Alice", valid_from="2026-12-01")
    kg.add_triple(f"Sync{round_}", "works_on", "Palace", valid_from="2026-12-01")
    kg.invalidate(f"Sync{round_}", "knows", "Alice", ended="2026-12-02")
    kg.supersede(f"Sync{round_}", "works_on", "Palace", "PostgreSQL", at="2026-12-03")
    if round_:
        kg.invalidate(f"Sync{round_ - 1}", "works_on", "PostgreSQL", ended="2026-12-04")  # a fact of an earlier round
    kg.close()
    return {"added": new_ids, "upserted": ids[0], "updated": ids[1], "deleted": ids[2 + round_]}
