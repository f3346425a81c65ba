"""mempalace's entity-candidate fallback: token/prefix LIKE matches, never plain substrings.

The patterns are the ones ``KnowledgeGraph._lookup_entity_candidates`` builds;
``sqlite_like`` decides a match exactly as sqlite's ``LIKE … ESCAPE '\\'`` does
(case-insensitive for ASCII letters only), so a store may pre-filter with any
superset (PostgreSQL ILIKE) and this module settles the answer.
"""

from __future__ import annotations

import functools
import re

MIN_CANDIDATE_LEN = 3  # mempalace.knowledge_graph._MIN_ENTITY_CANDIDATE_LEN
LIMIT = 5


def escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def patterns(name: str, entity_id: str) -> tuple[list[str], list[str]]:
    """(name patterns, id patterns), in the order mempalace's SQL lists them."""
    n, i = escape_like(name.strip()), escape_like(entity_id)
    return [f"{n} %", f"% {n}", f"% {n} %"], [f"{i}\\_%", f"%\\_{i}", f"%\\_{i}\\_%"]


@functools.lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    # re.ASCII + IGNORECASE folds only ASCII letters, like sqlite's built-in LIKE.
    return re.compile("".join(out), re.ASCII | re.IGNORECASE | re.DOTALL)


def sqlite_like(value: object, pattern: str) -> bool:
    return isinstance(value, str) and _compile(pattern).fullmatch(value) is not None


def pick(rows: list[dict], name: str, entity_id: str) -> list[dict]:
    """From rowid-ordered rows (a superset), sqlite's answer: first 5 matches, minus the exact id."""
    name_pats, id_pats = patterns(name, entity_id)
    matched = [
        r for r in rows
        if r["id"] == entity_id or r["name"] == name
        or any(sqlite_like(r["name"], p) for p in name_pats)
        or any(sqlite_like(r["id"], p) for p in id_pats)
    ][:LIMIT]
    return [{"id": r["id"], "name": r["name"]} for r in matched if r["id"] != entity_id]
