"""mempalace's temporal rules for KG facts, applied in Python.

sqlite compares the TEXT values bytewise after widening a date-only value:
``valid_from``/``as_of`` ``YYYY-MM-DD`` → ``T00:00:00Z``, ``valid_to`` ``YYYY-MM-DD``
→ ``T23:59:59Z``; a fact is valid at ``as_of`` when ``valid_from <= as_of < valid_to``
(half-open, either bound may be NULL).  Python ``str`` comparison is code-point
order, which equals UTF-8 byte order, so these functions give sqlite's answers
on any value, including ones that are not dates at all.
"""

from __future__ import annotations

from datetime import datetime, timezone


def is_date_only(value: object) -> bool:
    # Same test as mempalace's SQL: length 10 with '-' at positions 5 and 8.
    return isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-"


def start_key(value: str | None) -> str | None:
    if value is None:
        return None
    return f"{value}T00:00:00Z" if is_date_only(value) else value


def end_key(value: str | None) -> str | None:
    if value is None:
        return None
    return f"{value}T23:59:59Z" if is_date_only(value) else value


def valid_at(row: dict, as_of_key: str) -> bool:
    """sqlite's ``_temporal_filter_sql``: valid_from <= as_of AND valid_to > as_of (NULL = open)."""
    vf, vt = row.get("valid_from"), row.get("valid_to")
    if vf is not None and not le(start_key(vf), as_of_key):
        return False
    if vt is not None and not _lt(as_of_key, end_key(vt)):
        return False
    return True


def le(a, b) -> bool:
    return _cmp(a, b) <= 0


def _lt(a, b) -> bool:
    return _cmp(a, b) < 0


def _cmp(a, b) -> int:
    """sqlite's cross-type order for the values a TEXT column can hold: numbers < text."""
    ka, kb = (isinstance(a, str), a), (isinstance(b, str), b)
    if ka[0] != kb[0]:
        return -1 if not ka[0] else 1
    return (a > b) - (a < b)


def inverted(valid_from: str | None, valid_to: str | None) -> bool:
    """True when the interval would be empty for every query (mempalace refuses these)."""
    return valid_from is not None and valid_to is not None and end_key(valid_to) < start_key(valid_from)


def boundary(at: str | None) -> str:
    """supersede/rewrite's shared instant: now (UTC, seconds) or a date widened to T00:00:00Z."""
    if at is None:
        return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{at}T00:00:00Z" if is_date_only(at) else at


def sqlite_now() -> str:
    """sqlite's CURRENT_TIMESTAMP: UTC, ``YYYY-MM-DD HH:MM:SS``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
