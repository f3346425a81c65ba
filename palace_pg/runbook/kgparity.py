"""KG query parity: the same questions to mempalace's sqlite ``KnowledgeGraph`` and to palace_pg's graph.

The sqlite side runs on the snapshot copy of the KG (mempalace's class creates
tables and indexes when it opens a file, so the source is never opened).  The
PostgreSQL side is :class:`palace_pg.kg.AgeKnowledgeGraph`, on whichever store the
target holds (AGE or plain tables; the ``age_*`` figures name that side); when it is
not available the measurement is skipped and says so.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

log = logging.getLogger(__name__)


def age_graph_class():
    """``AgeKnowledgeGraph`` or None (with the reason) when palace_pg.kg does not provide it yet."""
    try:
        from ..kg import AgeKnowledgeGraph
    except ImportError as exc:
        return None, f"palace_pg.kg.AgeKnowledgeGraph is not available ({exc.__class__.__name__})"
    return AgeKnowledgeGraph, ""


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def questions(kg_copy: Path, n: int) -> list[tuple[str, dict]]:
    """(method, kwargs) pairs: query_entity both ways and as of a date, timeline per entity and overall."""
    db = sqlite3.connect(f"file:{kg_copy}?mode=ro", uri=True)
    try:
        names = [r[0] for r in db.execute("SELECT name FROM entities ORDER BY rowid LIMIT ?", [n])]
        dates = [r[0] for r in db.execute("SELECT valid_from FROM triples WHERE valid_from IS NOT NULL "
                                          "ORDER BY rowid LIMIT 3")]
    finally:
        db.close()
    asked: list[tuple[str, dict]] = [("timeline", {})]
    for i, name in enumerate(names):
        asked.append(("query_entity", {"name": name, "direction": "both"}))
        asked.append(("timeline", {"entity_name": name}))
        if dates:
            asked.append(("query_entity", {"name": name, "as_of": dates[i % len(dates)]}))
    return asked


def compare(kg_copy: Path | None, dsn: str | None, n: int) -> dict:
    """Ask both graphs; return per-question rows and a verdict (``skipped`` with a reason when impossible)."""
    if kg_copy is None or not Path(kg_copy).is_file():
        return {"status": "skipped", "reason": "the palace has no knowledge graph", "rows": []}
    age_cls, why = age_graph_class()
    if age_cls is None:
        return {"status": "skipped", "reason": why, "rows": []}
    from mempalace.knowledge_graph import KnowledgeGraph

    lite = KnowledgeGraph(str(kg_copy))
    age = age_cls(dsn=dsn)
    rows = []
    try:
        for method, kwargs in questions(Path(kg_copy), n):
            t0 = time.perf_counter()
            want = getattr(lite, method)(**kwargs)
            t1 = time.perf_counter()
            got = getattr(age, method)(**kwargs)
            t2 = time.perf_counter()
            rows.append({"method": method, "args": _canonical(kwargs), "sqlite_rows": len(want),
                         "age_rows": len(got), "equal": _canonical(want) == _canonical(got),
                         "sqlite_ms": round((t1 - t0) * 1000, 2), "age_ms": round((t2 - t1) * 1000, 2)})
    finally:
        lite.close()
        age.close()
    differing = [r for r in rows if not r["equal"]]
    return {"status": "fail" if differing else "ok", "reason": f"{len(differing)} of {len(rows)} answers differ",
            "rows": rows}
