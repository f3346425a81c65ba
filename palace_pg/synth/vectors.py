"""Vectors: a seeded clustered latent space (wings correlate with clusters), the float32 fixed point Chroma
stores bit for bit, and the real MiniLM embedder when its model is installed.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from ..errors import PalacePgError
from .spec import (
    ASSET_DIMENSION,
    AUTO_MINILM_MAX_DRAWERS,
    LATENT,
    PROBE_COMPONENTS,
    STREAM_ASSET_UNITS,
    STREAM_SPACE,
    STREAM_UNITS,
    TEXT_DIMENSION,
    VECTOR_MODES,
    WING_NAMES,
    WINGS,
)
from .units import Cluster


def chroma_stable(vectors: np.ndarray, max_rounds: int = 12) -> np.ndarray:
    """Unit float32 rows that are fixed points of float32 renormalisation.

    Chroma renormalises vectors of a cosine collection when it indexes them, so an
    ordinary unit vector can come back changed in its last bit (about a quarter of
    them did).  Dividing by the float32 norm (sequentially summed) until nothing
    changes gives rows that Chroma stores bit for bit (tests/test_synth.py
    checks it).  Zeros keep their sign; subnormals are scaled with the rest while
    the loop converges and stay subnormal.  Only IEEE-exact elementwise steps, so
    the result does not depend on the machine.
    """
    current = np.asarray(vectors, dtype=np.float32)
    for _ in range(max_rounds):
        norms = np.sqrt(np.cumsum(current * current, axis=1, dtype=np.float32)[:, -1]).astype(np.float32)
        following = (current / norms[:, None]).astype(np.float32)
        if np.array_equal(following.view(np.uint32), current.view(np.uint32)):
            break
        current = following
    return current


class LatentSpace:
    """Clustered vectors: wing direction + cluster + unit offset in a 48-d latent space, projected, plus noise.

    Tuned like the "moderate" set of research/perf-anchors.md §7: at 20K drawers
    the mean top-1 cosine is ~0.69, and a drawer's ten nearest neighbours share
    its wing ~98% of the time (wings correlate with clusters: the worst case for
    post-filtered search).  Sibling chunks of one file sit closest.
    """

    WING_WEIGHT, CLUSTER_WEIGHT = 0.75, 0.65
    UNIT_SCALE, ROW_SCALE, AMBIENT_SCALE = 0.55, 0.3, 0.24

    def __init__(self, seed: int, clusters: list[Cluster], n_units: int, n_asset_units: int) -> None:
        rng = np.random.default_rng([seed, STREAM_SPACE])
        wing_dirs = rng.standard_normal((len(WINGS), LATENT))
        own = rng.standard_normal((len(clusters), LATENT))
        wing_of = np.array([WING_NAMES.index(c.wing) for c in clusters])
        self.centers = self.WING_WEIGHT * wing_dirs[wing_of] + self.CLUSTER_WEIGHT * own
        self.text_projection = self._projection(rng, TEXT_DIMENSION)
        self.asset_projection = self._projection(rng, ASSET_DIMENSION)
        self.unit_offsets = self.UNIT_SCALE * np.random.default_rng([seed, STREAM_UNITS]).standard_normal((n_units, LATENT))
        self.asset_offsets = self.UNIT_SCALE * np.random.default_rng([seed, STREAM_ASSET_UNITS]).standard_normal(
            (max(1, n_asset_units), LATENT)
        )
        self.seed = seed

    @staticmethod
    def _projection(rng: np.random.Generator, dimension: int) -> np.ndarray:
        """A random 48 → ``dimension`` map; its columns are nearly orthonormal (no LAPACK: see ``block``)."""
        return rng.standard_normal((LATENT, dimension)) / math.sqrt(dimension)

    def block(self, stream: int, block_index: int, clusters: np.ndarray, offsets: np.ndarray,
              projection: np.ndarray, row_scale: float) -> np.ndarray:
        """Vectors for one block of rows; the noise comes from the block's own generator.

        The projection is summed term by term with elementwise operations, not a
        BLAS matmul, whose rounding depends on the CPU's kernels: the same seed
        then gives the same bits on every machine, not just on this one.
        """
        rng = np.random.default_rng([self.seed, stream, block_index])
        n = len(clusters)
        latent = self.centers[clusters] + offsets + row_scale * rng.standard_normal((n, LATENT))
        dense = self.AMBIENT_SCALE * rng.standard_normal((n, projection.shape[1]))
        term = np.empty_like(dense)
        for k in range(LATENT):
            np.multiply(latent[:, k : k + 1], projection[k], out=term)
            dense += term
        return chroma_stable(dense.astype(np.float32))


def with_probe_components(vector: np.ndarray) -> np.ndarray:
    probe = vector.copy()
    for index, value in PROBE_COMPONENTS.items():
        probe[index] = np.float32(value)
    return chroma_stable(probe[None, :])[0]


def resolve_vectors(mode: str, drawers: int) -> str:
    from ..source import minilm

    if mode not in VECTOR_MODES:
        raise PalacePgError(f"unknown vectors mode {mode!r}", f"use one of {', '.join(VECTOR_MODES)}")
    if mode == "minilm":
        if not minilm.model_available():
            raise PalacePgError(
                f"the MiniLM ONNX model is incomplete in {minilm.model_dir()} (missing {', '.join(minilm.missing_files())})",
                "run benchmarks/tools/export_minilm.py, or use vectors='synthetic'",
            )
        return "minilm"
    if mode == "auto" and drawers <= AUTO_MINILM_MAX_DRAWERS and minilm.model_available():
        return "minilm"
    return "synthetic"


def minilm_function() -> Any:
    """The function MemPalace passes for drawers and closets under its default config (name "default").

    Built lazily by chromadb: creating the collection never loads or downloads the model.
    """
    from mempalace.embedding import get_embedding_function

    return get_embedding_function(model="minilm", device="auto")


def minilm_embedder() -> Callable[[list[str]], np.ndarray]:
    from ..source import minilm

    function = minilm.embedding_function()
    return lambda texts: minilm.embed(texts, function)


