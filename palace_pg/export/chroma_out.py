"""Write collections into a new Chroma palace the way MemPalace's ChromaBackend makes them.

The client is ``ChromaBackend.make_client`` (MemPalace's pre-open pass, then its
PersistentClient settings).  Each collection is created with the collection
metadata the target recorded (MemPalace's ``hnsw:*`` keys, verbatim) and the
embedding function MemPalace passes for that collection's embedder, so MemPalace
opens it without an embedding-function mismatch; the function is lazy and never
runs: every row goes in with its stored vector.  Rows go in with ``add`` in
batches of at most ``client.get_max_batch_size()``, in ``seq`` order, so
Chroma's insertion order (``embeddings.id``) is the target's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PalacePgError

log = logging.getLogger(__name__)


def embedding_function_for(model_name: str | None, dimension: int | None) -> Any:
    """The function MemPalace configures for an embedder identity; None when it has no named one.

    ``model_name`` is the identity the sidecar records: ``minilm``, or
    ``embeddinggemma2:<repo>@<revision>:<dim>:<modalities>:<task>``, or another
    model mempalace's ``get_embedding_function`` knows.
    """
    base = (model_name or "minilm").split(":")[0]
    try:
        if base == "embeddinggemma2":
            from mempalace.embeddinggemma2 import EmbeddingGemma2EmbeddingFunction

            parts = (model_name or "").split(":")
            modalities = parts[3] if len(parts) > 3 and parts[3] else "all"
            return EmbeddingGemma2EmbeddingFunction(dimension=int(dimension or 768), modalities=modalities, device="auto")
        from mempalace.embedding import get_embedding_function

        return get_embedding_function(model=base, device="auto")
    except Exception as exc:  # an embedder that cannot be built here: the vectors are stored anyway
        log.warning("no embedding function for %r (%s); collection created without one", model_name, exc)
        return None


class ChromaPalaceWriter:
    """One new Chroma palace folder, written through chromadb."""

    def __init__(self, palace: Path) -> None:
        from mempalace.backends.chroma import ChromaBackend

        self.path = str(palace)
        self.client = ChromaBackend.make_client(self.path)
        self.max_batch = int(self.client.get_max_batch_size())

    def create(self, name: str, metadata: dict | None, embedding_function: Any) -> Any:
        return self.client.create_collection(name, metadata=metadata or None, embedding_function=embedding_function)

    def add(self, collection: Any, ids: list[str], documents: list, metadatas: list, vectors: np.ndarray) -> None:
        # Chroma refuses an empty metadata dict (and would read it back as None: a lost distinction).
        if any(m == {} for m in metadatas):
            raise PalacePgError(f"collection {collection.name} holds an empty metadata dict, which Chroma cannot store",
                                "set the row's metadata to NULL in the target, or give it a key")
        for start in range(0, len(ids), self.max_batch):
            stop = start + self.max_batch
            collection.add(ids=ids[start:stop], documents=documents[start:stop], metadatas=metadatas[start:stop],
                           embeddings=vectors[start:stop])

    def close(self) -> None:
        from mempalace.backends.chroma import ChromaBackend, _close_client

        _close_client(self.client)
        # The pass every MemPalace open runs first (leaves its marker files, as on a palace in use).
        ChromaBackend._prepare_palace_for_open(self.path)
