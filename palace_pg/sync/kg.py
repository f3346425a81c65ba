"""Bring the knowledge graph up to date: entities and triples added or changed since the last read.

MemPalace's ``KnowledgeGraph`` adds entities and triples and closes facts
(``invalidate``/``supersede`` set ``valid_to``); it deletes nothing.  So the
source rows are compared with the target's, by id and every column, and each
new or changed row is written through the store (``put_entity`` keeps an
entity's edges; ``put_triple`` replaces the edge), entities first so every
edge finds its ends.  A row the target holds and the source no longer does
means the sqlite file was edited behind MemPalace's back: refused, not guessed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg

from ..errors import PalacePgError
from ..faults import crash_point
from ..target_db.compare import diff_rows


@dataclass(frozen=True)
class KgProof:
    """What a sync established about the target's KG: every row but the written ones compared equal.

    The comparison covered every row and column of both sides, type-strict, before the writes; so
    a verification in the same run (the same lock: nothing else writes the target) proves the whole
    KG by reading back only the rows written and checking the counts.
    """
    entities: int                   # the source's rows, all of which the target now holds
    triples: int
    written_entities: tuple[str, ...]
    written_triples: tuple[str, ...]


def _store(conn: psycopg.Connection):
    """The store this database holds (AGE or plain tables), ready for writes."""
    from ..kg import stores

    store = stores.store_class(stores.held(conn) or stores.resolve(conn))(conn)
    store.prepare_session()
    return store


def _target_rows(conn: psycopg.Connection) -> tuple[list[dict], list[dict]]:
    from ..kg import stores

    return stores.read_entities(conn), stores.read_triples(conn)


def sync_kg(conn: psycopg.Connection, entities: list[dict], triples: list[dict]) -> tuple[dict, KgProof]:
    started = time.monotonic()
    target_entities, target_triples = _target_rows(conn)
    read_seconds = round(time.monotonic() - started, 2)
    e_diff, t_diff = diff_rows(entities, target_entities), diff_rows(triples, target_triples)
    if e_diff.extra or t_diff.extra:
        raise PalacePgError(
            f"the source knowledge graph lost {len(e_diff.extra)} entit(ies) and {len(t_diff.extra)} triple(s) "
            f"the target holds (e.g. {(e_diff.extra + t_diff.extra)[0]!r}); MemPalace never deletes KG rows",
            "check knowledge_graph.sqlite3; to take it as it is now, rerun `palace-pg migrate --restart`")
    by_id = {"entities": {r["id"]: r for r in entities}, "triples": {r["id"]: r for r in triples}}
    out = {"entities_added": len(e_diff.missing), "entities_changed": len(e_diff.changed_ids),
           "triples_added": len(t_diff.missing), "triples_changed": len(t_diff.changed_ids)}
    out["seconds"] = {"read_target": read_seconds, "compare": round(time.monotonic() - started - read_seconds, 2)}
    proof = KgProof(len(entities), len(triples), tuple(e_diff.missing + e_diff.changed_ids),
                    tuple(t_diff.missing + t_diff.changed_ids))
    if not any(v for k, v in out.items() if k != "seconds"):
        return out, proof
    t0 = time.monotonic()
    with conn.transaction():
        store = _store(conn)
        for rid in e_diff.missing + e_diff.changed_ids:
            store.put_entity(by_id["entities"][rid])
        for rid in t_diff.missing + t_diff.changed_ids:
            store.put_triple(by_id["triples"][rid])
        crash_point("sync")
    out["seconds"]["write"] = round(time.monotonic() - t0, 2)
    return out, proof
