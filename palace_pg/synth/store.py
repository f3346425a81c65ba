"""The palace's Chroma client, opened, written and closed the way MemPalace's backend does it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np


class Store:
    """The palace's chroma client, opened and closed the way MemPalace's backend does it."""

    def __init__(self, palace: Path) -> None:
        from mempalace.backends.chroma import ChromaBackend

        # make_client runs MemPalace's pre-open safety pass, then PersistentClient(settings=_CLIENT_SETTINGS).
        self.path = str(palace)
        self.client = ChromaBackend.make_client(self.path)
        self.max_batch = int(self.client.get_max_batch_size())

    def create(self, name: str, embedding_function: Any) -> Any:
        from mempalace.backends.chroma import _hnsw_creation_metadata

        # The same call ChromaBackend.get_collection(create=True) makes, with the function MemPalace passes.
        return self.client.create_collection(name, metadata=_hnsw_creation_metadata(None), embedding_function=embedding_function)

    def add(self, collection: Any, rows: Sequence[tuple[str, str, dict]], vectors: np.ndarray) -> None:
        """Through MemPalace's write chokepoint sanitisers, then chromadb ``add`` in allowed batches."""
        from mempalace.backends.chroma import ChromaCollection

        documents = ChromaCollection._sanitize_documents_for_chromadb([r[1] for r in rows])
        metadatas = ChromaCollection._sanitize_metadatas_for_chromadb([r[2] for r in rows])
        ids = [r[0] for r in rows]
        for start in range(0, len(rows), self.max_batch):
            stop = start + self.max_batch
            collection.add(ids=ids[start:stop], embeddings=vectors[start:stop], documents=documents[start:stop], metadatas=metadatas[start:stop])

    def close(self) -> None:
        from mempalace.backends.chroma import ChromaBackend, _close_client

        _close_client(self.client)
        # The pass every later MemPalace open runs first; on a populated palace it
        # leaves the marker files (.blob_seq_ids_migrated, .collection_type_fixed)
        # that a palace in use has.
        ChromaBackend._prepare_palace_for_open(self.path)


def blocks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    block: list[Any] = []
    for item in items:
        block.append(item)
        if len(block) == size:
            yield block
            block = []
    if block:
        yield block


