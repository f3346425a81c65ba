"""Knowledge-graph planning: entities and every triple, invalidation and supersession, decided up front
from the seed so the counts come out exact.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .spec import PALACE_SPAN_DAYS, STREAM_KG, WING_NAMES, iso, sub_seed
from .vocab import (
    ADAPTERS,
    ADJ,
    CONCEPTS,
    ENTITY_TYPE_WEIGHTS,
    ENTITY_TYPES,
    FIRST,
    LAST,
    NOUN,
    ORG_SUFFIX,
    PLACE_NOUN,
    PREDICATES,
    TOOL_PARTS,
)


@dataclass
class _Entity:
    name: str
    id: str
    type: str
    properties: dict


def entity_id(name: str) -> str:
    """``KnowledgeGraph._entity_id``: lower-case, spaces to ``_``, apostrophes dropped."""
    return name.lower().replace(" ", "_").replace("'", "")


def _entity_name(kind: str, rng: random.Random) -> str:
    if kind == "person":
        first, last = rng.choice(FIRST), rng.choice(LAST)
        return f"{first} {chr(65 + rng.randrange(26))}. {last}" if rng.random() < 0.5 else f"{first} {last}"
    if kind == "project":
        return f"Project {rng.choice(ADJ)} {rng.choice(NOUN)}" if rng.random() < 0.5 else f"{rng.choice(NOUN)} {rng.choice(NOUN)} {rng.randint(2, 99)}"
    if kind == "tool":
        if rng.random() < 0.5:  # lower-case and hyphenated: the id equals the name, like all-minilm-l6-v2
            return f"{rng.choice(TOOL_PARTS)}-{rng.choice(TOOL_PARTS)}-v{rng.randint(1, 40)}"
        return f"{rng.choice(TOOL_PARTS).capitalize()}{rng.choice(NOUN)} {rng.randint(1, 9)}.{rng.randint(0, 20)}"
    if kind == "organization":
        if rng.random() < 0.5:
            return f"{rng.choice(LAST)}'s {rng.choice(NOUN)} {rng.choice(ORG_SUFFIX)}"
        return f"{rng.choice(LAST)} & {rng.choice(LAST)} {rng.choice(ORG_SUFFIX)}"
    if kind == "concept":
        base = rng.choice(CONCEPTS)
        return base if rng.random() < 0.3 else f"{base} {rng.choice(NOUN).lower()}"
    return f"{rng.choice(ADJ)} {rng.choice(PLACE_NOUN)} {rng.randint(1, 400)}"


def _entity_properties(kind: str, rng: random.Random) -> dict:
    roll = rng.random()
    if roll < 0.25:
        return {}
    if kind == "person":
        props: dict[str, Any] = {"role": rng.choice(("engineer", "researcher", "manager", "designer")), "since": f"20{rng.randint(15, 26)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"}
        if roll > 0.85:
            props["nickname"] = rng.choice(("Zoë ✨", "the 🦉", "O'Neil \"Bear\""))
        return props
    if kind == "tool":
        return {"version": f"{rng.randint(0, 5)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}", "license": rng.choice(("MIT", "Apache-2.0", "BSD-3-Clause"))}
    if kind == "project":
        return {"status": rng.choice(("active", "paused", "done")), "tags": rng.sample(CONCEPTS, 2), "budget": rng.randint(1, 50) * 1000}
    return {"note": rng.choice(("imported", "mentioned in chat", "from docs")), "weight": round(rng.random(), 3)}


def plan_entities(count: int, rng: random.Random) -> list[_Entity]:
    entities: list[_Entity] = []
    seen: set[str] = set()
    attempts = 0
    while len(entities) < count:
        kind = rng.choices(ENTITY_TYPES, weights=ENTITY_TYPE_WEIGHTS)[0]
        name = _entity_name(kind, rng)
        attempts += 1
        if attempts > count * 20:  # the name space is exhausted: number the names
            name = f"{name} {attempts}"
        eid = entity_id(name)
        if eid in seen:
            continue
        seen.add(eid)
        # A tenth were first seen only as a triple's end, so they stay 'unknown' with no properties.
        implicit = rng.random() < 0.1
        entities.append(_Entity(name, eid, "unknown" if implicit else kind, {} if implicit else _entity_properties(kind, rng)))
    return entities


def wing_entity_pools(entities: list[_Entity], rng: random.Random, drawers: int) -> dict[str, list[str]]:
    """Entity names each wing's text mentions (metadata ``entities``, closets, hallways)."""
    mentionable = [e.name for e in entities if e.type in ("person", "project", "tool", "unknown")] or [e.name for e in entities]
    size = max(6, min(len(mentionable), 8 + drawers // 400))
    return {wing: rng.sample(mentionable, min(size, len(mentionable))) for wing in WING_NAMES}


class KgClock:
    """The moments KG rows are recorded at: increasing, seeded, never the wall clock."""

    def __init__(self, rng: random.Random, start: datetime, mean_gap: float = 300.0) -> None:
        self.rng = rng
        self.moment = start
        self.max_gap = max(2, int(2 * mean_gap))

    def tick(self) -> datetime:
        self.moment += timedelta(seconds=self.rng.randint(1, self.max_gap), microseconds=self.rng.randint(1, 999_999))
        return self.moment


def sql_stamp(moment: datetime) -> str:
    """The text sqlite's CURRENT_TIMESTAMP default writes."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _date(rng: random.Random, low: datetime, high: datetime) -> datetime:
    return low + timedelta(seconds=rng.randint(0, int((high - low).total_seconds())))


def _bound(moment: datetime, date_only: bool) -> str:
    return moment.strftime("%Y-%m-%d") if date_only else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class KgPlan:
    entities: list[_Entity]
    bulk_entities: list[_Entity]
    class_entities: list[_Entity]
    implicit_entities: list[_Entity]
    triples: list[tuple]  # full rows of the triples table
    class_triples: list[dict]  # kwargs for KnowledgeGraph.add_triple
    invalidations: list[tuple[tuple[str, str, str], str]]
    supersessions: list[dict]


class _TripleFactory:
    """Random but valid triples: typed ends, ordered bounds, provenance pointing into the palace."""

    def __init__(self, rng: random.Random, entities: list[_Entity], provenance: list[tuple[str, str, str]]) -> None:
        self.rng = rng
        self.provenance = provenance
        self.by_type: dict[str, list[_Entity]] = defaultdict(list)
        for entity in entities:
            self.by_type[entity.type].append(entity)
        self.everyone = entities
        self.pools: dict[tuple[str, ...], list[_Entity]] = {}

    def ends(self) -> tuple[str, _Entity, _Entity]:
        predicate, subject_types, object_types = self.rng.choice(PREDICATES)
        return predicate, self._pick(subject_types), self._pick(object_types)

    def _pick(self, types: tuple[str, ...]) -> _Entity:
        pool = self.pools.get(types)
        if pool is None:
            pool = [e for t in types for e in self.by_type.get(t, ())] or self.by_type.get("unknown") or self.everyone
            self.pools[types] = pool
        return self.rng.choice(pool)

    def bounds(self) -> tuple[str | None, str | None]:
        rng = self.rng
        roll = rng.random()
        start_moment = _date(rng, datetime(2019, 1, 1), datetime(2026, 6, 30))
        valid_from = None if roll < 0.15 else _bound(start_moment, date_only=roll < 0.7)
        valid_to = None
        if rng.random() < 0.18:
            end_moment = start_moment + timedelta(days=rng.randint(1, 900), seconds=rng.randint(0, 86_399))
            valid_to = _bound(end_moment, date_only=rng.random() < 0.5)
        return valid_from, valid_to

    def confidence(self) -> float:
        return 1.0 if self.rng.random() < 0.6 else round(self.rng.uniform(0.5, 0.99), 2)

    def sources(self) -> dict[str, str | None]:
        rng = self.rng
        drawer_id, source_file, closet_id = rng.choice(self.provenance) if self.provenance else (None, None, None)
        return {
            "source_closet": closet_id if rng.random() < 0.25 else None,
            "source_file": source_file if rng.random() < 0.4 else None,
            "source_drawer_id": drawer_id if rng.random() < 0.3 else None,
            "adapter_name": rng.choice(ADAPTERS) if rng.random() < 0.3 else None,
        }


def plan_kg(seed: int, entities: list[_Entity], triples: int, provenance: list[tuple[str, str, str]]) -> KgPlan:
    """Every KG row, decided up front: the bulk rows in full, the class part as method arguments.

    Counts come out exact: no triple repeats an open (subject, predicate, object),
    which ``add_triple``/``supersede`` would answer with the existing id instead
    of a new row, and every entity is written once, by exactly one path.
    """
    rng = random.Random(sub_seed(seed, STREAM_KG))
    n_class = min(300, triples // 3)
    n_supersede = min(20, triples // 10)
    n_invalidate = min(20, triples // 10)
    n_bulk = triples - n_class - n_supersede
    n_class_entities = min(40, len(entities) // 4)
    n_implicit = min(5, n_class_entities, n_class)
    cut = len(entities) - n_class_entities
    bulk_entities = entities[:cut]
    class_entities = entities[cut : len(entities) - n_implicit]
    implicit_entities = entities[len(entities) - n_implicit :]

    open_facts: set[tuple[str, str, str]] = set()
    rows = _bulk_triples(rng, bulk_entities or entities, n_bulk, provenance, open_facts)
    class_triples = _class_triples(rng, entities, implicit_entities, n_class, provenance, open_facts)

    names = {e.id: e.name for e in entities}
    open_rows = [r for r in rows if r[5] is None and (r[1], r[2], r[3]) in open_facts and (r[4] or "") < "2026-07-01"]
    targets = rng.sample(open_rows, min(len(open_rows), n_supersede + n_invalidate))
    supersessions = []
    for row in targets[:n_supersede]:
        new = _fresh_object(rng, entities[: len(entities) - n_implicit] or entities, row, open_facts)
        if new is None:
            continue
        open_facts.discard((row[1], row[2], row[3]))
        supersessions.append({
            "subject": names[row[1]], "predicate": row[2], "old_obj": names[row[3]], "new_obj": new.name,
            "at": _bound(_date(rng, datetime(2026, 7, 1), datetime(2026, 10, 30)), date_only=rng.random() < 0.3),
            "confidence": 0.9, "adapter_name": rng.choice(ADAPTERS),
        })
    invalidations = []
    for row in targets[n_supersede:]:
        open_facts.discard((row[1], row[2], row[3]))
        ended = _bound(_date(rng, datetime(2026, 7, 1), datetime(2026, 10, 30)), date_only=rng.random() < 0.5)
        invalidations.append(((names[row[1]], row[2], names[row[3]]), ended))
    if len(supersessions) < n_supersede:  # keep the triple count exact
        rows.extend(_bulk_triples(rng, bulk_entities or entities, n_supersede - len(supersessions), provenance, open_facts))
    return KgPlan(entities, bulk_entities, class_entities, implicit_entities, rows, class_triples, invalidations, supersessions)


def _bulk_triples(rng: random.Random, entities: list[_Entity], count: int, provenance, open_facts: set) -> list[tuple]:
    """Full ``triples`` rows, ids by ``make_triple_id``; about 4% are supersede pairs sharing one boundary."""
    from mempalace.ids import make_triple_id

    factory = _TripleFactory(rng, entities, provenance)
    clock = KgClock(rng, datetime(2026, 1, 6, 8, 0, 0), mean_gap=PALACE_SPAN_DAYS * 86_400 / max(1, count))
    rows: list[tuple] = []
    attempts = 0
    while len(rows) < count:
        attempts += 1
        predicate, subject, obj = factory.ends()
        valid_from, valid_to = factory.bounds()
        if (subject.id, predicate, obj.id) in open_facts and attempts < count * 50:
            continue
        successor = None
        if valid_to is None and len(rows) + 1 < count and rng.random() < 0.04:
            _, _, new_obj = factory.ends()
            if new_obj.id != obj.id and (subject.id, predicate, new_obj.id) not in open_facts:
                valid_to = _bound(_date(rng, datetime(2026, 7, 1), datetime(2026, 10, 30)), date_only=False)
                successor = new_obj
        moment = clock.tick()
        rows.append((make_triple_id(subject.id, predicate, obj.id, valid_from, iso(moment)), subject.id, predicate, obj.id,
                     valid_from, valid_to, factory.confidence(), *factory.sources().values(), sql_stamp(moment)))
        if valid_to is None:
            open_facts.add((subject.id, predicate, obj.id))
        if successor is not None:
            moment = clock.tick()
            rows.append((make_triple_id(subject.id, predicate, successor.id, valid_to, iso(moment)), subject.id, predicate,
                         successor.id, valid_to, None, factory.confidence(), *factory.sources().values(), sql_stamp(moment)))
            open_facts.add((subject.id, predicate, successor.id))
    return rows


def _class_triples(rng: random.Random, entities: list[_Entity], implicit: list[_Entity], count: int, provenance,
                   open_facts: set) -> list[dict]:
    """``add_triple`` arguments: display names (the class derives ids), some predicates with spaces."""
    factory = _TripleFactory(rng, entities[: len(entities) - len(implicit)] or entities, provenance)
    calls = []
    while len(calls) < count:
        predicate, subject, obj = factory.ends()
        if len(calls) < len(implicit):
            obj = implicit[len(calls)]  # first seen here: add_triple creates it as 'unknown'
        key = (subject.id, predicate, obj.id)
        if key in open_facts:
            continue
        valid_from, valid_to = factory.bounds()
        if valid_to is None:
            open_facts.add(key)
        calls.append({
            "subject": subject.name, "predicate": predicate.replace("_", " ") if len(calls) % 7 == 0 else predicate,
            "obj": obj.name, "valid_from": valid_from, "valid_to": valid_to, "confidence": factory.confidence(),
            **factory.sources(),
        })
    return calls


def _fresh_object(rng: random.Random, entities: list[_Entity], row: tuple, open_facts: set) -> _Entity | None:
    for _ in range(50):
        candidate = rng.choice(entities)
        if candidate.id != row[3] and (row[1], row[2], candidate.id) not in open_facts:
            open_facts.add((row[1], row[2], candidate.id))
            return candidate
    return None


