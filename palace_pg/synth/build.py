"""``make_palace``: plan, write drawers, closets, assets and the KG (on tmpfs when there is room), then the
sidecars; and the facts it returns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import PalacePgError
from .assets import plan_assets, write_assets
from .closets import plan_closets
from .kg import write_kg
from .kg_plan import plan_entities, plan_kg, wing_entity_pools
from .rows import Row, RowWriter
from .sidecars import write_embedder_sidecar, write_graph_sidecars, write_origin
from .spec import (
    ASSET_DIMENSION,
    ASSETS,
    CLOSETS,
    DEFAULT_LONG_DOC_CHARS,
    DRAWERS,
    KG_FILENAME,
    MAX_KG_ENTITIES,
    MAX_KG_TRIPLES,
    MIN_DRAWERS,
    PROBE_COMPONENTS,
    STREAM_CLOSET_NOISE,
    STREAM_NOISE,
    STREAM_PLAN,
    TEXT_DIMENSION,
    VECTOR_BLOCK,
    WING_NAMES,
    WING_SHARES,
    Progress,
    ProgressFn,
    sha,
    sub_seed,
)
from .store import Store, blocks
from .units import Unit, plan_clusters, plan_units
from .vectors import (
    LatentSpace,
    chroma_stable,
    minilm_embedder,
    minilm_function,
    resolve_vectors,
    with_probe_components,
)

logger = logging.getLogger(__name__)

def _check_destination(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PalacePgError(f"{out} exists and is not an empty folder", "generate into a new folder")
    for sidecar in ("hallways.json", "tunnels.json"):
        if (out.parent / sidecar).exists():
            raise PalacePgError(
                f"{out.parent / sidecar} already exists: hallways.json and tunnels.json sit beside the palace",
                "generate into a dedicated parent folder, e.g. <new folder>/palace",
            )


def _default_kg_sizes(drawers: int, kg_entities: int | None, kg_triples: int | None) -> tuple[int, int]:
    entities = kg_entities if kg_entities is not None else min(MAX_KG_ENTITIES, max(12, drawers // 8))
    triples = kg_triples if kg_triples is not None else min(MAX_KG_TRIPLES, max(20, round(drawers * 0.625)))
    if entities < 2 or triples < 0:
        raise PalacePgError(f"kg_entities={entities}, kg_triples={triples} cannot make a graph", "use kg_entities >= 2 and kg_triples >= 0")
    return entities, triples


def make_palace(
    out: str | Path,
    drawers: int = 200,
    seed: int = 0,
    *,
    kg_entities: int | None = None,
    kg_triples: int | None = None,
    assets: bool = True,
    doc_chars: int = 800,
    progress: ProgressFn | None = None,
    vectors: str = "auto",
    long_doc_chars: int = DEFAULT_LONG_DOC_CHARS,
    scratch: str | Path | None = "auto",
) -> dict:
    """Write a MemPalace 3.11 palace of ``drawers`` drawers into the new folder ``out``; return its facts.

    ``out``'s parent receives ``hallways.json`` and ``tunnels.json`` too, so give
    each palace its own parent folder.  ``kg_entities``/``kg_triples`` default to
    ``drawers/8`` and ``drawers*0.625`` (capped at 20,000 and 100,000).
    ``doc_chars`` is MemPalace's chunk size (800).  ``vectors``: ``"synthetic"``
    (clustered), ``"minilm"`` (real embeddings; the ONNX model must already be in
    chromadb's cache) or ``"auto"`` (MiniLM when present and drawers ≤ 1,000).
    ``long_doc_chars`` sizes the one oversized document (100 KB; 1 MB works).
    ``scratch``: where the palace is built before it is copied into ``out``:
    ``"auto"`` (tmpfs ``/dev/shm`` when it has room), a folder, or ``None`` to
    build in place.  Chroma's rollback journal rewrites pages at random, so a
    160K-drawer build takes ~3.5 minutes on tmpfs against ~7 on this disk.
    ``progress(stage, done, total)`` is called as each stage begins and as its rows are
    written (see :data:`~palace_pg.synth.spec.ProgressFn`).
    """
    if not isinstance(drawers, int) or drawers < MIN_DRAWERS:
        raise PalacePgError(f"drawers={drawers!r} is too small", f"ask for at least {MIN_DRAWERS} drawers")
    if doc_chars < 100 or long_doc_chars < doc_chars:
        raise PalacePgError("doc_chars must be >= 100 and long_doc_chars >= doc_chars", "use the defaults 800 and 100000")
    palace = Path(out).expanduser().resolve()
    _check_destination(palace)
    n_entities, n_triples = _default_kg_sizes(drawers, kg_entities, kg_triples)
    mode = resolve_vectors(vectors, drawers)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    plan_rng = random.Random(sub_seed(seed, STREAM_PLAN))
    entities = plan_entities(n_entities, plan_rng)
    clusters = plan_clusters(drawers, plan_rng)
    units = plan_units(drawers, plan_rng, clusters, wing_entity_pools(entities, plan_rng, drawers))
    closets = plan_closets(units, seed)
    asset_count = min(4000, max(3, drawers // 40)) if assets else 0
    media, asset_clusters, indexed_at = plan_assets(asset_count, seed, clusters, units) if assets else ([], [], [])
    timings["plan_s"] = time.perf_counter() - started
    logger.info("planned %d drawers in %d units, %d closets, %d assets", drawers, len(units), len(closets), len(media))

    scratch_root = _scratch_root(scratch, drawers, long_doc_chars)
    with _build_folder(palace, scratch_root, timings) as build:
        build.mkdir(parents=True, exist_ok=True)
        os.chmod(build, 0o700)  # as ChromaBackend.get_collection(create=True) leaves a new palace
        space = LatentSpace(seed, clusters, len(units), len(media))
        tracker = Progress(progress, drawers + len(closets) + len(media) + n_triples)
        store = Store(build)
        try:
            drawer_facts = _write_drawers(store, units, clusters, space, seed, doc_chars, long_doc_chars, mode, tracker, timings)
            _write_closets(store, closets, units, space, mode, tracker, timings)
            asset_identity = write_assets(store, media, asset_clusters, indexed_at, space, tracker, timings) if assets else None
        finally:
            store.close()

        step = time.perf_counter()
        tracker.begin("kg")
        provenance = [(u.drawer_ids()[0], u.source_file, f"closet_{u.wing}_{u.room}_{sha(u.source_file, 24)}_01")
                      for u in units if u.kind == "project_chunk"][:5000]
        kg_stats = write_kg(build, plan_kg(seed, entities, n_triples, provenance), seed)
        tracker.advance(n_triples)
        timings["kg_s"] = time.perf_counter() - step

        write_embedder_sidecar(build, asset_identity)
        write_origin(build, drawer_facts.pop("origin_samples"))
        graph = write_graph_sidecars(build, units, clusters, seed)
    timings["total_s"] = time.perf_counter() - started
    logger.info("palace written to %s in %.1f s", palace, timings["total_s"])
    return _facts(palace, seed, mode, drawers, drawer_facts, closets, media, kg_stats, graph, timings, assets,
                  doc_chars, long_doc_chars, scratch_root)


def _scratch_root(choice: str | Path | None, drawers: int, long_doc_chars: int) -> Path | None:
    """The folder to build in: tmpfs when asked for ("auto") and roomy enough, else in place (None)."""
    if choice is None:
        return None
    if choice != "auto":
        return Path(choice)
    tmpfs = Path("/dev/shm")
    if not tmpfs.is_dir() or not os.access(tmpfs, os.W_OK):
        return None
    needed = drawers * 12_000 + 4 * long_doc_chars + 256 * 2**20  # ~10 KB a drawer measured, plus margin
    return tmpfs if shutil.disk_usage(tmpfs).free > 2 * needed else None


@contextlib.contextmanager
def _build_folder(palace: Path, scratch_root: Path | None, timings: dict) -> Iterator[Path]:
    """Yield where to write the palace; when that is scratch space, copy the result into place afterwards.

    Nothing in a palace records its own path, so a copy is the same palace.
    ``copy2`` keeps modification times, which MemPalace's HNSW staleness check reads.
    mempalace makes the folder beside a palace private (0700) when it writes
    tunnels.json there; a folder that existed before (``/tmp``, say) gets its own mode back.
    """
    parent_mode = palace.parent.stat().st_mode & 0o7777 if palace.parent.exists() else None
    try:
        if scratch_root is None:
            yield palace
            return
        scratch_root.mkdir(parents=True, exist_ok=True)
        parent = Path(tempfile.mkdtemp(prefix="palace_pg-generate-", dir=scratch_root))
        try:
            build = parent / palace.name
            yield build
            step = time.perf_counter()
            palace.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(build, palace, dirs_exist_ok=True)
            for name in ("hallways.json", "tunnels.json"):
                shutil.copy2(parent / name, palace.parent / name)
            os.chmod(palace.parent, 0o700)  # as palace_graph._save_tunnels leaves the folder beside the palace
            timings["copy_s"] = time.perf_counter() - step
        finally:
            shutil.rmtree(parent, ignore_errors=True)
    finally:
        if parent_mode is not None and palace.parent.exists():
            os.chmod(palace.parent, parent_mode)


def _drawer_rows(units: list[Unit], writer: RowWriter) -> Iterator[Row]:
    for unit in units:
        yield from writer.rows(unit)


def _write_drawers(store: Store, units, clusters, space: LatentSpace, seed: int, doc_chars: int,
                   long_doc_chars: int, mode: str, tracker: Progress, timings: dict) -> dict:
    step = time.perf_counter()
    tracker.begin("drawers")
    collection = store.create(DRAWERS, minilm_function())
    writer = RowWriter(seed, clusters, doc_chars, long_doc_chars)
    embed = minilm_embedder() if mode == "minilm" else None
    kinds: Counter = Counter()
    wings: Counter = Counter()
    tricky: dict[str, str] = {}
    probe: dict[str, Any] = {}
    samples: list[str] = []
    kind_of = {u.index: (u.kind, u.tricky) for u in units}
    for block_index, rows in enumerate(blocks(_drawer_rows(units, writer), VECTOR_BLOCK)):
        if embed is not None:
            vectors = chroma_stable(embed([r.document for r in rows]))
        else:
            cluster_ids = np.array([r.cluster for r in rows])
            offsets = space.unit_offsets[[r.unit for r in rows]]
            vectors = space.block(STREAM_NOISE, block_index, cluster_ids, offsets, space.text_projection, space.ROW_SCALE)
        for position, row in enumerate(rows):
            kind, tricky_name = kind_of[row.unit]
            kinds[kind if kind != "tricky" else f"tricky:{tricky_name}"] += 1
            wings[row.metadata.get("wing")] += 1
            if tricky_name:
                tricky[tricky_name] = row.id
            if row.probe:
                vectors[position] = with_probe_components(vectors[position])
                probe = {"id": row.id, "components": {str(i): int(vectors[position][i].view(np.uint32)) for i in PROBE_COMPONENTS}}
            if kind in ("convo_exchange", "live_exchange") and len(samples) < 20:
                samples.append(row.document)
        store.add(collection, [(r.id, r.document, r.metadata) for r in rows], vectors)
        tracker.advance(len(rows))
        logger.debug("drawers: %d written", tracker.done)
    timings["drawers_s"] = time.perf_counter() - step
    return {"kinds": dict(sorted(kinds.items())), "wings": wings, "tricky": tricky, "probe": probe, "origin_samples": samples}


def _write_closets(store: Store, closets, units: list[Unit], space: LatentSpace, mode: str, tracker: Progress, timings: dict) -> None:
    step = time.perf_counter()
    tracker.begin("closets")
    collection = store.create(CLOSETS, minilm_function())
    cluster_of = {u.index: u.cluster for u in units}
    embed = minilm_embedder() if mode == "minilm" else None
    for block_index, rows in enumerate(blocks(closets, VECTOR_BLOCK)):
        if embed is not None:
            vectors = chroma_stable(embed([r[1] for r in rows]))
        else:
            unit_ids = [r[3] for r in rows]
            vectors = space.block(STREAM_CLOSET_NOISE, block_index, np.array([cluster_of[u] for u in unit_ids]),
                                  space.unit_offsets[unit_ids], space.text_projection, space.ROW_SCALE / 2)
        store.add(collection, [r[:3] for r in rows], vectors)
        tracker.advance(len(rows))
    timings["closets_s"] = time.perf_counter() - step


def _facts(palace: Path, seed: int, mode: str, drawers: int, drawer_facts: dict, closets, media, kg_stats: dict,
           graph: dict, timings: dict, assets: bool, doc_chars: int, long_doc_chars: int, scratch_root: Path | None) -> dict:
    import chromadb
    import mempalace
    from mempalace.backends._sidecar import EMBEDDER_SIDECAR_FILENAME

    wings = drawer_facts["wings"]
    collections = {DRAWERS: drawers, CLOSETS: len(closets)}
    if assets:
        collections[ASSETS] = len(media)
    return {
        "palace": str(palace),
        "parent": str(palace.parent),
        "kg_path": str(palace / KG_FILENAME),
        "embedder_sidecar": str(palace / EMBEDDER_SIDECAR_FILENAME),
        "origin_path": str(palace / ".mempalace" / "origin.json"),
        "hallways_path": str(palace.parent / "hallways.json"),
        "tunnels_path": str(palace.parent / "tunnels.json"),
        "seed": seed,
        "vectors": "minilm" if mode == "minilm" else "synthetic-clustered",
        "asset_vectors": "synthetic-clustered",
        "dimension": TEXT_DIMENSION,
        "asset_dimension": ASSET_DIMENSION if assets else None,
        "collections": collections,
        "kinds": drawer_facts["kinds"],
        "wings": {name: wings.get(name, 0) for name in WING_NAMES},
        "wing_shares": dict(zip(WING_NAMES, WING_SHARES)),
        "drawers_without_wing": wings.get(None, 0),
        "kg": {
            "entities": kg_stats["entities"],
            "triples": kg_stats["triples"],
            "current_facts": kg_stats["current_facts"],
            "expired_facts": kg_stats["expired_facts"],
            "relationship_types": kg_stats["relationship_types"],
            "written_by_class": kg_stats["written_by_class"],
            "journal_mode": "wal",
        },
        "hallways": graph["hallways"],
        "tunnels": graph["tunnels"],
        "tricky": drawer_facts["tricky"],
        "probe_vector": drawer_facts["probe"],
        "doc_chars": doc_chars,
        "long_doc_chars": long_doc_chars,
        "built_in": str(scratch_root) if scratch_root else "place",
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "versions": {"mempalace": mempalace.__version__, "chromadb": chromadb.__version__},
    }
