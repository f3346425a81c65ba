"""The palace generator: a synthetic palace in MemPalace 3.11's exact on-disk format, deterministically.

``make_palace(out, drawers=200, seed=0)`` writes a palace that MemPalace itself
opens (``mempalace --palace out status``, ``KnowledgeGraph(...).stats()``):

* in ``out``: ``chroma.sqlite3`` and the HNSW segment folders, holding
  ``mempalace_drawers`` and ``mempalace_closets`` (384-d, embedding function
  "default" as MemPalace records it) and ``mempalace_assets`` (768-d,
  EmbeddingGemma 2), all created through :mod:`mempalace.backends.chroma` with
  MemPalace's collection metadata; ``knowledge_graph.sqlite3`` with its
  ``-wal``/``-shm``, created by :class:`mempalace.knowledge_graph.KnowledgeGraph`;
  ``mempalace_embedder.json`` and ``.mempalace/origin.json``;
* **beside** ``out``, in ``dirname(out)``: ``hallways.json`` and ``tunnels.json``
  (MemPalace keeps them next to the palace so that they survive a rebuild).
  Generate into a dedicated folder, e.g. ``make_palace(workdir / "palace")``:
  two palaces in one parent would share those two files, so the generator
  refuses a parent that already holds either.

Every writer kind of research/mempalace.md §1.5-1.6 is present with its exact
id recipe (:mod:`mempalace.ids` where a helper exists) and metadata keys:
project-miner and convo-miner chunks, live exchanges, ``_registry`` and
format-miner sentinels, MCP drawers (single and chunked with
``parent_drawer_id``), diary entries (single and chunked, no ``source_file``),
sweeper rows (no wing/room/chunk_index), closets of pointer lines packed by
MemPalace's own ``upsert_closet_lines``, and media assets built with
:class:`mempalace.media.MediaAsset`.  A handful of deliberately tricky but
valid rows (see :data:`TRICKY_ROWS`) exercise fidelity corners.

Determinism: one seed gives the same ids, documents, metadata, vectors, KG rows
and JSON sidecars (timestamps come from a seeded clock, never from the wall
clock).  Only the chroma sqlite bytes and HNSW files may differ between runs.

Vectors: 384-d float32, L2-normalised, clustered in a 48-d latent space so
that wings (shares 30% … 1%, :data:`WINGS`) correlate with clusters; or, with
``vectors="minilm"`` and the ONNX model already in chromadb's cache, real
MiniLM embeddings of the generated text.  Every vector is nudged to a fixed
point of float32 renormalisation, so Chroma stores it bit for bit (Chroma
renormalises cosine vectors; an ordinary unit vector comes back changed in its
last bit about a quarter of the time).

Speed: rows go in through chromadb ``add`` with precomputed embeddings in
batches of at most ``client.get_max_batch_size()``.  Chroma's own indexing
(FTS5 trigram on documents, one inverted index per metadata key, HNSW) is the
floor, and it holds the GIL, so nothing overlaps it.  On disk its rollback
journal adds as much again in I/O waits, so the palace is built on tmpfs
(``/dev/shm``) when there is room and then copied into place: 160K drawers take
~3.5 minutes that way (~900 rows/s for drawers with MemPalace's ~17 metadata
keys and 800-character documents) against ~7 minutes built on this disk.  The
bulk of the KG goes in with ``executemany`` into the schema ``KnowledgeGraph``
created; a representative part (a few hundred calls) goes through the class.

Modules, in the order a build runs them: :mod:`.spec` (what a palace contains,
the wing-share table), :mod:`.vocab`, :mod:`.units` (planning), :mod:`.text`,
:mod:`.rows` (the row writer), :mod:`.closets`, :mod:`.assets`, :mod:`.vectors`,
:mod:`.store` (Chroma), :mod:`.kg_plan` and :mod:`.kg`, :mod:`.sidecars`, and
:mod:`.build` (``make_palace``).
"""

from .build import make_palace
from .spec import (
    ASSET_DIMENSION,
    ASSETS,
    AUTO_MINILM_MAX_DRAWERS,
    CLOSETS,
    DEFAULT_LONG_DOC_CHARS,
    DRAWERS,
    KG_FILENAME,
    MIN_DRAWERS,
    PROBE_COMPONENTS,
    TEXT_DIMENSION,
    TRICKY_ROWS,
    VECTOR_MODES,
    WING_NAMES,
    WING_SHARES,
    WINGS,
    ProgressFn,
)
from .vectors import chroma_stable

__all__ = [
    "ASSETS", "ASSET_DIMENSION", "AUTO_MINILM_MAX_DRAWERS", "CLOSETS", "DEFAULT_LONG_DOC_CHARS", "DRAWERS",
    "KG_FILENAME", "MIN_DRAWERS", "PROBE_COMPONENTS", "TEXT_DIMENSION", "TRICKY_ROWS", "VECTOR_MODES",
    "WINGS", "WING_NAMES", "WING_SHARES", "ProgressFn", "chroma_stable", "make_palace",
]
