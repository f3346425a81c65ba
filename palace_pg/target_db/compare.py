"""Type-strict comparison of rows: what verification and sync both mean by "the same"."""

from __future__ import annotations

from dataclasses import dataclass, field

from . import jsonfmt

_SCALARS = (str, int, float, bool, bytes, type(None))


def same(a, b) -> bool:
    """Type-strict equality: 1, 1.0 and True differ (the canonical form only where types differ or NaN)."""
    if type(a) is type(b) and type(a) in _SCALARS and a == b:  # not containers: {"x": 1} == {"x": True}
        return True
    return jsonfmt.canonical(a) == jsonfmt.canonical(b)


@dataclass
class RowSetDiff:
    missing: list[str] = field(default_factory=list)   # ids in the source only
    extra: list[str] = field(default_factory=list)     # ids in the target only
    columns: list[tuple[str, str, object, object]] = field(default_factory=list)  # (id, column, source, target)

    @property
    def changed_ids(self) -> list[str]:
        return list(dict.fromkeys(rid for rid, *_ in self.columns))


def diff_rows(source_rows: list[dict], target_rows: list[dict]) -> RowSetDiff:
    """Rows keyed by ``id``: every column of each source row against the target's, type-strict."""
    want = {r["id"]: r for r in source_rows}
    got = {r["id"]: r for r in target_rows}
    out = RowSetDiff(missing=sorted(want.keys() - got.keys()), extra=sorted(got.keys() - want.keys()))
    for rid in sorted(want.keys() & got.keys()):
        for col, value in want[rid].items():
            if not same(value, got[rid].get(col)):
                out.columns.append((rid, col, value, got[rid].get(col)))
    return out
