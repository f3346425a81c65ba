"""Media assets, built with :class:`mempalace.media.MediaAsset` and written as ``media.store_media_asset`` does."""

from __future__ import annotations

import hashlib
import random
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .spec import (
    ASSET_DIMENSION,
    ASSETS,
    EPOCH,
    STREAM_ASSET_NOISE,
    VECTOR_BLOCK,
    WING_NAMES,
    WING_SHARES,
    Progress,
    apportion,
    sub_seed,
)
from .store import Store
from .units import Cluster, Unit
from .vectors import LatentSpace


def _gemma_function() -> Any:
    """The EmbeddingGemma 2 function a media palace is configured with (lazy: never loads torch here)."""
    from mempalace.embeddinggemma2 import EmbeddingGemma2EmbeddingFunction

    return EmbeddingGemma2EmbeddingFunction(dimension=ASSET_DIMENSION, modalities="all", device="auto")


def plan_assets(count: int, seed: int, clusters: list[Cluster], units: list[Unit]):
    from mempalace.media import MediaAsset, stable_asset_id

    rng = random.Random(sub_seed(seed, "assets"))
    by_wing: dict[str, list[int]] = defaultdict(list)
    for index, cluster in enumerate(clusters):
        by_wing[cluster.wing].append(index)
    drawer_ids_by_wing: dict[str, list[str]] = defaultdict(list)
    for unit in units:
        if unit.kind == "project_chunk" and len(drawer_ids_by_wing[unit.wing]) < 50:
            drawer_ids_by_wing[unit.wing].append(unit.drawer_ids()[0])
    kinds = {"image": ("png", "image/png"), "audio": ("wav", "audio/x-wav"), "video": ("mp4", "video/mp4")}
    assets, asset_clusters, indexed = [], [], []
    moment = EPOCH + timedelta(days=20)
    for wing, n in zip(WING_NAMES, apportion(count, WING_SHARES)):
        for k in range(n):
            media_type = rng.choice(("image", "image", "audio", "video"))
            ext, mime = kinds[media_type]
            path = f"/home/dev/media/{wing}/{media_type}_{k:05d}.{ext}"
            duration = round(rng.uniform(3, 900), 3) if media_type != "image" else None
            segment = (0.0, round(duration / 2, 3)) if media_type == "video" and rng.random() < 0.5 else (None, None)
            mtime_ns = 1_767_225_600_000_000_000 + rng.randrange(10**16)
            related = rng.choice(drawer_ids_by_wing[wing]) if drawer_ids_by_wing[wing] and rng.random() < 0.4 else None
            assets.append(
                MediaAsset(
                    asset_id=stable_asset_id(path),
                    source_id=f"source_{hashlib.sha256(f'/home/dev/media/{wing}'.encode()).hexdigest()}",
                    source_file=path,
                    media_type=media_type,
                    mime_type=mime,
                    title=Path(path).name,
                    project=wing,
                    inferred_wing="audio" if media_type == "audio" else "visual",
                    file_size_bytes=rng.randint(10_000, 50_000_000),
                    file_mtime_ns=mtime_ns,
                    file_modified_at=datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).isoformat(),
                    related_drawer_id=related,
                    segment_start=segment[0],
                    segment_end=segment[1],
                    duration=duration,
                    file_exists=rng.random() > 0.1,
                )
            )
            asset_clusters.append(rng.choice(by_wing[wing]))
            moment += timedelta(minutes=rng.randint(1, 600), microseconds=rng.randint(1, 999_999))
            indexed.append(moment.replace(tzinfo=timezone.utc))
    return assets, asset_clusters, indexed


def _asset_row(asset: Any, indexed_at: datetime, identity: str) -> tuple[str, str, dict]:
    """Document and metadata exactly as ``media.store_media_asset`` writes them."""
    stamp = indexed_at.isoformat()
    metadata = asset.metadata() | {
        "embedding_model": identity,
        "embedding_identity": identity,
        "embedding_dimension": ASSET_DIMENSION,
        "embedding_modalities": "all",
        "indexed_at": stamp,
        "last_modified": stamp,
        "filed_at": stamp,
    }
    return asset.asset_id, asset.descriptor(), metadata


def write_assets(store: Store, media, asset_clusters, indexed_at, space: LatentSpace, tracker: Progress, timings: dict) -> str:
    step = time.perf_counter()
    tracker.begin("assets")
    function = _gemma_function()
    collection = store.create(ASSETS, function)
    rows = [_asset_row(asset, moment, function.identity) for asset, moment in zip(media, indexed_at)]
    for block_index, start in enumerate(range(0, len(rows), VECTOR_BLOCK)):
        block = rows[start : start + VECTOR_BLOCK]
        index = np.arange(start, start + len(block))
        vectors = space.block(STREAM_ASSET_NOISE, block_index, np.array(asset_clusters)[index], space.asset_offsets[index],
                              space.asset_projection, space.ROW_SCALE)
        store.add(collection, block, vectors)
        tracker.advance(len(block))
    timings["assets_s"] = time.perf_counter() - step
    return function.identity


