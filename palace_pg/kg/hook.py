"""Make mempalace's own KG users (MCP kg_* tools, `mempalace kg`, adapters, hermes) answer from AGE.

mempalace 3.11 has no KG seam: every caller does ``KnowledgeGraph(db_path=…)``
and three helpers run sqlite SQL directly.  When the AGE graph is selected this
module swaps, with no change to mempalace's files:

- ``mempalace.knowledge_graph.KnowledgeGraph`` (and the name in modules that
  imported it already) → :class:`~palace_pg.kg.graph.AgeKnowledgeGraph`;
- ``mempalace.kg_normalize.off_vocabulary_facts`` → the same answer from AGE;
- ``mempalace.palace_audit._read_kg`` → the same counts from AGE;
- ``mempalace.palace_audit.resolve_kg_path`` → the palace's marker file when the
  palace is migrated, so ``mempalace kg normalize`` (which exits when the path is
  not a file) finds it, and the KG class finds its database next to it.

Selection (read when mempalace's KG module is first imported):
``MEMPALACE_KG_BACKEND`` = ``age`` | ``postgres`` | ``sqlite``; else ``kg_backend`` in
mempalace's ``config.json``; unset means sqlite (mempalace's own class, untouched).
``age`` and ``postgres`` (or ``tables``) select the same thing, palace_pg's graph, which
opens whichever KG store the database holds (AGE or plain tables, :mod:`palace_pg.kg.stores`).
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

# The line palace_pg ships in a .pth file (site-packages/palace_pg_kg.pth).
PTH_LINE = "import palace_pg.kg.autoload\n"
ENV_SELECT = "MEMPALACE_KG_BACKEND"
CONFIG_KEY = "kg_backend"
PALACE_PG = ("age", "postgres", "tables")  # all mean palace_pg's graph, on the store the database holds
CHOICES = ("sqlite", *PALACE_PG)
_ALSO_BOUND = ("mempalace.mcp_server", "mempalace.integrations.hermes")


def selected_backend() -> str:
    """``sqlite`` or one of ``PALACE_PG``: the environment first, then mempalace's config.json."""
    value = os.environ.get(ENV_SELECT, "").strip().lower()
    if not value:
        try:
            from mempalace.config import MempalaceConfig

            value = str(getattr(MempalaceConfig(), "_file_config", {}).get(CONFIG_KEY) or "").strip().lower()
        except Exception:  # an unreadable config keeps mempalace's default, as mempalace does
            log.debug("mempalace config unreadable while choosing the KG backend", exc_info=True)
            value = ""
    if value and value not in CHOICES:
        log.warning("%s=%r is not one of %s; keeping sqlite", ENV_SELECT, value, CHOICES)
        return "sqlite"
    return value or "sqlite"


# ── replacements for mempalace's direct-SQL helpers ──────────────────────────


def off_vocabulary_facts(kg, vocabulary):
    """kg_normalize.off_vocabulary_facts: open facts outside ``vocabulary``, ordered by valid_from, predicate."""
    if not hasattr(kg, "open_named_facts"):
        return _ORIGINAL["off_vocabulary_facts"](kg, vocabulary)
    allowed = {v.lower() for v in vocabulary}
    rows = kg.open_named_facts()
    # sqlite's ORDER BY t.valid_from, t.predicate: NULLs first, ties left in scan (rowid) order.
    rows.sort(key=lambda r: (r["valid_from"] is not None, r["valid_from"] or "", r["predicate"]))
    return [
        {"id": r["id"], "subject": r["subject_name"], "predicate": r["predicate"],
         "object": r["object_name"], "valid_from": r["valid_from"]}
        for r in rows
        if str(r["predicate"]).lower() not in allowed
    ]


def resolve_kg_path(palace_path: str, explicit: bool = False) -> str:
    """palace_audit.resolve_kg_path: a migrated palace's graph is addressed through its marker file."""
    from ..marker import has_marker, marker_path

    if has_marker(palace_path):
        return str(marker_path(palace_path))
    return _ORIGINAL["resolve_kg_path"](palace_path, explicit=explicit)


def read_kg(kg_path: str):
    """palace_audit._read_kg: the same counts, from AGE when the path belongs to a migrated palace."""
    from ..marker import has_marker

    if not has_marker(os.path.dirname(os.path.abspath(kg_path))):
        return _ORIGINAL["_read_kg"](kg_path)
    from .graph import AgeKnowledgeGraph
    from .errors import KgError

    try:
        with AgeKnowledgeGraph(db_path=kg_path) as kg:
            stats = kg.stats()
            predicates = kg.open_predicate_counts()
    except (KgError, OSError) as exc:  # _read_kg answers None when the graph cannot be read
        log.warning("knowledge graph for %s unreadable: %s", kg_path, exc)
        return None
    one_off = sorted(p for p, n in predicates.items() if n == 1)
    current = stats["current_facts"]
    reuse = 0.0 if current == 0 else 1.0 - (len(predicates) / current)
    try:
        from mempalace.palace_audit import _SAMPLE_LIMIT as sample_limit
    except ImportError:
        sample_limit = 10
    return {
        "path": kg_path,
        "entities": int(stats["entities"]),
        "triples": int(stats["triples"]),
        "current_facts": int(current),
        "expired_facts": int(stats["triples"] - current),
        "distinct_predicates": len(predicates),
        "one_off_predicates": len(one_off),
        "one_off_sample": one_off[:sample_limit],
        "predicate_reuse": round(reuse, 4),
    }


_ORIGINAL: dict = {}


# ── installation ─────────────────────────────────────────────────────────────


def patch_knowledge_graph_module(module) -> None:
    from .graph import AgeKnowledgeGraph

    _ORIGINAL.setdefault("KnowledgeGraph", module.KnowledgeGraph)
    module.KnowledgeGraph = AgeKnowledgeGraph
    for name in _ALSO_BOUND:  # modules that bound the name before the swap
        bound = sys.modules.get(name)
        if bound is not None and getattr(bound, "KnowledgeGraph", None) is _ORIGINAL["KnowledgeGraph"]:
            bound.KnowledgeGraph = AgeKnowledgeGraph
    log.debug("mempalace KnowledgeGraph → palace_pg AgeKnowledgeGraph")


def patch_kg_normalize_module(module) -> None:
    _ORIGINAL.setdefault("off_vocabulary_facts", module.off_vocabulary_facts)
    module.off_vocabulary_facts = off_vocabulary_facts


def patch_palace_audit_module(module) -> None:
    _ORIGINAL.setdefault("resolve_kg_path", module.resolve_kg_path)
    _ORIGINAL.setdefault("_read_kg", module._read_kg)
    module.resolve_kg_path = resolve_kg_path
    module._read_kg = read_kg


PATCHES = {
    "mempalace.knowledge_graph": patch_knowledge_graph_module,
    "mempalace.kg_normalize": patch_kg_normalize_module,
    "mempalace.palace_audit": patch_palace_audit_module,
}


def install(force: bool = False) -> bool:
    """Swap in the AGE graph now (imports mempalace's modules).  Returns whether it did.

    ``force`` ignores the selection (tests, wrapper launchers that mean it).
    """
    if not force and selected_backend() not in PALACE_PG:
        return False
    import importlib

    for name, patch in PATCHES.items():
        patch(importlib.import_module(name))
    return True


def uninstall() -> None:
    """Put mempalace's own objects back (tests)."""
    import importlib

    targets = {
        "KnowledgeGraph": ["mempalace.knowledge_graph", *_ALSO_BOUND],
        "off_vocabulary_facts": ["mempalace.kg_normalize"],
        "resolve_kg_path": ["mempalace.palace_audit"],
        "_read_kg": ["mempalace.palace_audit"],
    }
    for attr, modules in targets.items():
        if attr not in _ORIGINAL:
            continue
        for name in modules:
            module = sys.modules.get(name) or (importlib.import_module(name) if name == modules[0] else None)
            if module is not None and hasattr(module, attr):
                setattr(module, attr, _ORIGINAL[attr])
