"""Writing the knowledge graph: the bulk through ``executemany``, a representative part through
:class:`mempalace.knowledge_graph.KnowledgeGraph`, under a seeded clock; copied so it lands as MemPalace leaves it.
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterator

from .kg_plan import KgClock, KgPlan, entity_id, sql_stamp
from .spec import KG_FILENAME, sub_seed


@contextlib.contextmanager
def _kg_wall_clock(clock: KgClock) -> Iterator[None]:
    """Give ``mempalace.knowledge_graph`` the seeded clock instead of ``datetime.now()``.

    ``add_triple``/``supersede`` hash ``datetime.now().isoformat()`` into the triple
    id; without this the ids would change on every run.  Restored on exit.
    """
    import mempalace.knowledge_graph as kg_module

    real = kg_module.datetime

    class _SeededDatetime(real):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001 - datetime's own signature
            moment = clock.moment
            return real(*moment.timetuple()[:6], moment.microsecond, tzinfo=tz)

    kg_module.datetime = _SeededDatetime
    try:
        yield
    finally:
        kg_module.datetime = real


_ENTITY_INSERT = "INSERT INTO entities (id, name, type, properties, created_at) VALUES (?, ?, ?, ?, ?)"
_TRIPLE_INSERT = (
    "INSERT INTO triples (id, subject, predicate, object, valid_from, valid_to, confidence, source_closet, "
    "source_file, source_drawer_id, adapter_name, extracted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def write_kg(palace: Path, plan: KgPlan, seed: int) -> dict:
    """Build the KG in a staging folder, then copy it while still open so it lands as MemPalace leaves it.

    KnowledgeGraph opens the file in WAL mode and a closing connection checkpoints
    and deletes the ``-wal``.  A palace in use keeps its latest facts only in the
    ``-wal`` (research/mempalace.md §9), so the files are copied after the last
    commit and before any close: bulk history in the main file, the recent writes
    made through the class in the WAL.
    """
    from mempalace.knowledge_graph import KnowledgeGraph

    staging = palace / ".kg-staging"
    staging.mkdir()
    staged = staging / KG_FILENAME
    rng = random.Random(sub_seed(seed, "kg-clock"))
    clock = KgClock(rng, datetime(2026, 11, 1, 9, 0, 0))
    kg = KnowledgeGraph(str(staged))
    bulk = sqlite3.connect(str(staged))
    try:
        first_seen = datetime(2026, 1, 6, 7, 0, 0)
        with bulk:
            bulk.executemany(_ENTITY_INSERT, [
                (e.id, e.name, e.type, json.dumps(e.properties), sql_stamp(first_seen + timedelta(seconds=41 * i)))
                for i, e in enumerate(plan.bulk_entities)
            ])
            bulk.executemany(_TRIPLE_INSERT, plan.triples)
        bulk.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # history is in the main file, as after MemPalace's autocheckpoints
        stamps = _write_kg_through_class(kg, plan, clock)
        with bulk:
            bulk.executemany("UPDATE entities SET created_at = ? WHERE id = ?", stamps["entities"])
            bulk.executemany("UPDATE triples SET extracted_at = ? WHERE id = ?", stamps["triples"])
        stats = kg.stats()
        for suffix in ("", "-wal", "-shm"):
            source = Path(f"{staged}{suffix}")
            if source.exists():
                shutil.copyfile(source, palace / f"{KG_FILENAME}{suffix}")
    finally:
        bulk.close()
        kg.close()
        shutil.rmtree(staging, ignore_errors=True)
    return stats | {"written_by_class": stamps["counts"]}


def _write_kg_through_class(kg: Any, plan: KgPlan, clock: KgClock) -> dict:
    """Entities, triples, invalidations and supersessions through KnowledgeGraph's own methods."""
    entity_stamps: list[tuple[str, str]] = []
    triple_stamps: list[tuple[str, str]] = []
    seen_entities = {e.id for e in plan.bulk_entities}
    with _kg_wall_clock(clock):
        for entity in plan.class_entities:
            moment = clock.tick()
            kg.add_entity(entity.name, entity.type, entity.properties)
            entity_stamps.append((sql_stamp(moment), entity.id))
            seen_entities.add(entity.id)
        for kwargs in plan.class_triples:
            moment = clock.tick()
            triple_id = kg.add_triple(**kwargs)
            triple_stamps.append((sql_stamp(moment), triple_id))
            for name in (kwargs["subject"], kwargs["obj"]):
                if entity_id(name) not in seen_entities:
                    entity_stamps.append((sql_stamp(moment), entity_id(name)))
                    seen_entities.add(entity_id(name))
        for (subject, predicate, obj), ended in plan.invalidations:
            clock.tick()
            kg.invalidate(subject, predicate, obj, ended=ended)
        for kwargs in plan.supersessions:
            moment = clock.tick()
            triple_id = kg.supersede(**kwargs)
            triple_stamps.append((sql_stamp(moment), triple_id))
            if entity_id(kwargs["new_obj"]) not in seen_entities:
                entity_stamps.append((sql_stamp(moment), entity_id(kwargs["new_obj"])))
                seen_entities.add(entity_id(kwargs["new_obj"]))
    counts = {
        "entities": len(entity_stamps),
        "add_triple": len(plan.class_triples),
        "invalidate": len(plan.invalidations),
        "supersede": len(plan.supersessions),
    }
    return {"entities": entity_stamps, "triples": triple_stamps, "counts": counts}


