"""The files beside the collections: embedder identity, corpus origin, and hallways/tunnels next to the palace."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from itertools import combinations
from pathlib import Path

from .spec import ASSETS, CLOSETS, DRAWERS, WING_NAMES, sub_seed
from .units import Cluster, Unit


def write_embedder_sidecar(palace: Path, asset_identity: str | None) -> Path:
    from mempalace.backends._sidecar import (
        EMBEDDER_SIDECAR_FILENAME,
        write_embedder_sidecar,
    )
    from mempalace.backends.base import EmbedderIdentity

    path = palace / EMBEDDER_SIDECAR_FILENAME
    # What _enforce_embedder_identity records for a brand-new collection: the model name, dimension 0.
    write_embedder_sidecar(str(path), DRAWERS, EmbedderIdentity(model_name="minilm", dimension=0))
    write_embedder_sidecar(str(path), CLOSETS, EmbedderIdentity(model_name="minilm", dimension=0))
    if asset_identity:
        write_embedder_sidecar(str(path), ASSETS, EmbedderIdentity(model_name=asset_identity, dimension=0))
    return path


def write_origin(palace: Path, samples: list[str]) -> Path:
    """``<palace>/.mempalace/origin.json`` as ``mempalace init`` writes it (tier-1 heuristic only)."""
    from mempalace.corpus_origin import detect_origin_heuristic

    wrapped = {
        "schema_version": 1,
        "detected_at": datetime(2026, 1, 5, 8, 59, 30, 123456, tzinfo=timezone.utc).isoformat(),
        "result": detect_origin_heuristic(samples or ["notes"]).to_dict(),
    }
    path = palace / ".mempalace" / "origin.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(wrapped, handle, indent=2, ensure_ascii=False)
    return path


def _writes_entities(unit: Unit) -> bool:
    """Whether the unit's drawers carry the ``entities`` metadata key (MCP, diary and sweeper rows do not)."""
    return unit.kind in ("project_chunk", "convo_exchange", "convo_general", "live_exchange") or (
        unit.kind == "tricky" and unit.tricky != "long_document"
    )


def _hallway_records(units: list[Unit], created_at: datetime) -> list[dict]:
    """Entity pairs co-occurring in ≥2 drawers of a wing, shaped as ``compute_hallways_for_wing`` writes them."""
    from mempalace.dynamics import initialize_dynamics_fields
    from mempalace.hallways import _hallway_id

    pair_counts: dict[str, Counter] = defaultdict(Counter)
    pair_rooms: dict[tuple[str, tuple[str, str]], set[str]] = defaultdict(set)
    for unit in units:
        if unit.wing is None or not _writes_entities(unit):
            continue
        for pair in combinations(sorted(set(unit.entities)), 2):
            pair_counts[unit.wing][pair] += unit.size
            pair_rooms[(unit.wing, pair)].add(unit.room)
    records = []
    stamp = created_at.isoformat()
    for wing in sorted(pair_counts):
        for (entity_a, entity_b), count in sorted(pair_counts[wing].items()):
            if count < 2:
                continue
            rooms = sorted(pair_rooms[(wing, (entity_a, entity_b))])
            summary = ", ".join(rooms[:3]) + (f", +{len(rooms) - 3} more" if len(rooms) > 3 else "")
            record = {
                "id": _hallway_id(wing, entity_a, entity_b),
                "wing": wing,
                "entity_a": entity_a,
                "entity_b": entity_b,
                "co_occurrence_count": count,
                "rooms": rooms,
                "label": f"{entity_a} ↔ {entity_b} (co-occur in {count} drawers across {len(rooms)} room{'s' if len(rooms) != 1 else ''}: {summary})",
                "created_at": stamp,
                "created_by": "auto",
            }
            records.append(initialize_dynamics_fields(record, now=created_at))
    return records


def _tunnel_records(units: list[Unit], clusters: list[Cluster], rng: random.Random, created_at: datetime) -> list[dict]:
    """Explicit room-to-room tunnels (some pinned to drawers) and topic tunnels, as ``create_tunnel`` stores them."""
    from mempalace.dynamics import initialize_dynamics_fields
    from mempalace.palace_graph import _canonical_tunnel_id, topic_room

    rooms_by_wing: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for unit in units:
        if unit.kind == "project_chunk" and len(rooms_by_wing[unit.wing]) < 20:
            rooms_by_wing[unit.wing].append((unit.room, unit.drawer_ids()[0]))
    wings = [w for w in WING_NAMES if rooms_by_wing[w]]
    tunnels: dict[str, dict] = {}
    moment = created_at
    for _ in range(min(40, 4 + sum(u.size for u in units) // 2000)):
        wing_a, wing_b = rng.sample(wings, 2) if len(wings) > 1 else (wings[0], wings[0])
        (room_a, drawer_a), (room_b, drawer_b) = rng.choice(rooms_by_wing[wing_a]), rng.choice(rooms_by_wing[wing_b])
        moment += timedelta(minutes=rng.randint(5, 5000), microseconds=rng.randint(1, 999_999))
        tunnel = {
            "id": _canonical_tunnel_id(wing_a, room_a, wing_b, room_b),
            "source": {"wing": wing_a, "room": room_a},
            "target": {"wing": wing_b, "room": room_b},
            "label": f"{room_a} in {wing_a} relates to {room_b} in {wing_b}",
            "kind": "explicit",
            "created_at": moment.isoformat(),
        }
        if rng.random() < 0.4:
            tunnel["source"]["drawer_id"], tunnel["target"]["drawer_id"] = drawer_a, drawer_b
        tunnels.setdefault(tunnel["id"], initialize_dynamics_fields(tunnel, now=moment))
    shared = sorted({c.keywords[0] for c in clusters})
    for topic in shared[:6]:
        wing_a, wing_b = sorted(rng.sample(WING_NAMES, 2))
        moment += timedelta(minutes=rng.randint(5, 500))
        room = topic_room(topic)
        tunnel = {
            "id": _canonical_tunnel_id(wing_a, room, wing_b, room),
            "source": {"wing": wing_a, "room": room},
            "target": {"wing": wing_b, "room": room},
            "label": f"shared topic: {topic}",
            "kind": "topic",
            "created_at": moment.isoformat(),
        }
        tunnels.setdefault(tunnel["id"], initialize_dynamics_fields(tunnel, now=moment))
    return list(tunnels.values())


def write_graph_sidecars(palace: Path, units: list[Unit], clusters: list[Cluster], seed: int) -> dict[str, int]:
    """hallways.json and tunnels.json beside the palace, through MemPalace's own savers."""
    from mempalace.config import MempalaceConfig
    from mempalace.hallways import _save_hallways
    from mempalace.palace_graph import _save_tunnels

    config = MempalaceConfig(palace_path=str(palace))  # only for the paths: dirname(palace)/{hallways,tunnels}.json
    created = datetime(2026, 11, 2, 6, 30, 0, 250000, tzinfo=timezone.utc)
    hallways = _hallway_records(units, created)
    tunnels = _tunnel_records(units, clusters, random.Random(sub_seed(seed, "tunnels")), created)
    _save_hallways(hallways, config)
    _save_tunnels(tunnels, config)
    return {"hallways": len(hallways), "tunnels": len(tunnels)}


