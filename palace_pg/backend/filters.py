"""Chroma's ``where`` and ``where_document`` dialect compiled to SQL over jsonb.

Every value reaches PostgreSQL as a bound parameter; metadata keys too (as
``metadata -> %s`` or inside a containment document), so nothing the caller
passes is ever spliced into SQL text.

Typing follows Chroma (checked against chromadb 1.5 on the same rows):

* equality is jsonb equality: ``1`` matches ``1`` and ``1.0`` but neither
  ``True`` nor ``"1"``; ``True`` matches only ``true``;
* ``$ne`` and ``$nin`` also match records that lack the key;
* ``$gt``/``$gte``/``$lt``/``$lte`` compare numbers with numbers (never
  booleans) and, as a palace_pg extension, strings with strings in code point
  order (ISO timestamps); a boolean or list operand is a ValueError;
* ``$contains``/``$not_contains`` on a metadata key test list membership
  (Chroma) and, for string values, substring (MemPalace's own backends);
* ``where_document`` ``$contains``/``$not_contains`` are case-sensitive
  substring tests, combinable with ``$and``/``$or``.

Looser than Chroma where Chroma only refuses: several keys in one dict mean
AND, ``$and``/``$or`` accept a single clause, ``$in: []`` matches nothing.
Unknown operators raise ``UnsupportedFilterError`` (never silently dropped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from mempalace.backends.base import UnsupportedFilterError
from psycopg import sql
from psycopg.types.json import Jsonb

from . import codec

WHERE_OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin",
                             "$contains", "$not_contains"})
LOGICAL = frozenset({"$and", "$or"})
DOCUMENT_OPERATORS = frozenset({"$contains", "$not_contains"})
# Metadata keys with a generated column and a btree (target_db/schema.py).
INDEXED_COLUMNS = frozenset({"wing", "room", "source_file"})
# Above this many values an $in is one ``= ANY`` instead of OR-ed GIN probes.
_MAX_CONTAINMENT_ORS = 32

_TRUE = sql.SQL("TRUE")
_FALSE = sql.SQL("FALSE")


@dataclass
class Predicate:
    """A boolean SQL fragment and its parameters, in order."""

    sql: sql.Composable = field(default_factory=lambda: _TRUE)
    params: list = field(default_factory=list)
    #: The rows it matches can be found through an index (a btree on a generated column or the
    #: metadata GIN) instead of a scan of the whole table.
    indexed: bool = False

    @property
    def is_true(self) -> bool:
        return self.sql is _TRUE

    def and_(self, other: "Predicate") -> "Predicate":
        if other.is_true:
            return self
        if self.is_true:
            return other
        return Predicate(sql.SQL("({}) AND ({})").format(self.sql, other.sql), self.params + other.params,
                         self.indexed or other.indexed)


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and not (isinstance(value, float) and value != value)


def _doc(key: str, value: Any) -> Jsonb:
    return codec.metadata_param({key: value})


def _join(parts: list[Predicate], joiner: str, empty: sql.Composable) -> Predicate:
    parts = [p for p in parts]
    if not parts:
        return Predicate(empty, [])
    if len(parts) == 1:
        return parts[0]
    indexed = any(p.indexed for p in parts) if joiner == "AND" else all(p.indexed for p in parts)
    return Predicate(sql.SQL(f" {joiner} ").join(sql.SQL("({})").format(p.sql) for p in parts),
                     [x for p in parts for x in p.params], indexed)


def _negate(p: Predicate) -> Predicate:
    # IS NOT TRUE: a NULL (key or metadata missing) counts as "not equal", as in Chroma.
    return Predicate(sql.SQL("({}) IS NOT TRUE").format(p.sql), p.params)


def _eq(key: str, value: Any) -> Predicate:
    if not _scalar(value):
        raise ValueError(f"where value for {key!r} must be a str, int, float or bool, got {value!r}")
    if key in INDEXED_COLUMNS and isinstance(value, str):
        # The generated column (metadata ->> key) serves the btree.  A type test keeps {"wing": "5"}
        # from matching 5; it costs more per row than the comparison, so it is only added for values
        # that a number, boolean, list or object could print as (see _could_be_other_type).
        if not _could_be_other_type(value):
            return Predicate(sql.SQL("{} = %s").format(sql.Identifier(key)), [value], True)
        return Predicate(sql.SQL("{} = %s AND jsonb_typeof(metadata -> %s) = 'string'").format(sql.Identifier(key)),
                         [value, key], True)
    return Predicate(sql.SQL("metadata @> %s"), [_doc(key, value)], True)


def _could_be_other_type(text: str) -> bool:
    """Whether ``metadata ->> key`` of a non-string jsonb value can equal ``text``.

    ``->>`` prints a number as a numeric literal, a boolean as ``true``/``false``,
    a list or object as JSON starting with ``[``/``{``, and null as SQL NULL.  A
    string that could never be such a rendering needs no type test: equality on
    the generated column alone is already Chroma's typed equality.  Conservative:
    anything Python can read as a float (``nan``, ``1e5``, `` 5``…) counts.
    """
    if text in ("true", "false") or text[:1] in ("[", "{"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def _in(key: str, values: Any) -> Predicate:
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"$in/$nin for {key!r} needs a list, got {values!r}")
    values = list(values)
    for v in values:
        if not _scalar(v):
            raise ValueError(f"$in/$nin values for {key!r} must be str, int, float or bool, got {v!r}")
    if not values:
        return Predicate(_FALSE, [])
    if key in INDEXED_COLUMNS and all(isinstance(v, str) for v in values):
        if not any(_could_be_other_type(v) for v in values):
            return Predicate(sql.SQL("{} = ANY(%s)").format(sql.Identifier(key)), [values], True)
        return Predicate(sql.SQL("{} = ANY(%s) AND jsonb_typeof(metadata -> %s) = 'string'").format(
            sql.Identifier(key)), [values, key], True)
    if len(values) <= _MAX_CONTAINMENT_ORS:
        return _join([_eq(key, v) for v in values], "OR", _FALSE)
    cleaned = [codec.clean_text(v) if isinstance(v, str) else v for v in values]
    return Predicate(sql.SQL("(metadata -> %s) = ANY(%s::jsonb[])"), [key, [Jsonb(v) for v in cleaned]])


def _range(key: str, op: str, value: Any) -> Predicate:
    sym = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}[op]
    if isinstance(value, bool) or not _scalar(value):
        raise ValueError(f"{op} for {key!r} needs a number or a string, got {value!r}")
    if isinstance(value, str):
        # Code point order, like Python's str comparison (and ISO-8601 timestamps).
        return Predicate(sql.SQL("CASE WHEN jsonb_typeof(metadata -> %s) = 'string' "
                                 "THEN (metadata ->> %s) COLLATE \"C\" " + sym + " %s END"),
                         [key, key, codec.clean_text(value)])
    # jsonb compares numbers as numeric: exact for int64 extremes and for 1 vs 1.0.
    return Predicate(sql.SQL("CASE WHEN jsonb_typeof(metadata -> %s) = 'number' THEN (metadata -> %s) "
                             + sym + " %s END"), [key, key, Jsonb(value)])


def _contains(key: str, value: Any) -> Predicate:
    if not _scalar(value):
        raise ValueError(f"$contains for {key!r} needs a str, int, float or bool, got {value!r}")
    member = Predicate(sql.SQL("metadata @> %s"), [_doc(key, [value])])
    if isinstance(value, str):
        substring = Predicate(sql.SQL("jsonb_typeof(metadata -> %s) = 'string' AND strpos(metadata ->> %s, %s) > 0"),
                              [key, key, codec.clean_text(value)])
        return _join([member, substring], "OR", _FALSE)
    return member


def _field(key: str, expr: Any) -> Predicate:
    if not isinstance(expr, dict):
        if isinstance(expr, (list, tuple)):
            raise ValueError(f"where value for {key!r} is a list; use {{'$in': [...]}}")
        return _eq(key, expr)
    if not expr:
        raise ValueError(f"where operator expression for {key!r} is empty")
    parts = []
    for op, operand in expr.items():
        if op not in WHERE_OPERATORS:
            raise UnsupportedFilterError(f"where operator {op!r} is not supported by the postgres backend")
        if op == "$eq":
            parts.append(_eq(key, operand))
        elif op == "$ne":
            parts.append(_negate(_eq(key, operand)))
        elif op == "$in":
            parts.append(_in(key, operand))
        elif op == "$nin":
            parts.append(_negate(_in(key, operand)))
        elif op == "$contains":
            parts.append(_contains(key, operand))
        elif op == "$not_contains":
            parts.append(_negate(_contains(key, operand)))
        else:
            parts.append(_range(key, op, operand))
    return _join(parts, "AND", _TRUE)


def _logical(op: str, value, compile_one, refusal: str) -> Predicate:
    """``$and``/``$or`` over a list of sub-filters, each compiled by ``compile_one`` (an empty one is TRUE)."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(c, dict) for c in value):
        raise ValueError(f"{refusal}, got {value!r}")
    clauses = [compile_one(c) for c in value]
    return _join(clauses, "AND", _TRUE) if op == "$and" else _join(clauses, "OR", _FALSE)


def compile_where(where: Optional[dict]) -> Predicate:
    """SQL for a metadata filter; TRUE for None or {}."""
    if not where:
        return Predicate()
    if not isinstance(where, dict):
        raise ValueError(f"where must be a dict, got {type(where).__name__}")
    parts = []
    for key, value in where.items():
        if not isinstance(key, str):
            raise ValueError(f"where keys must be strings, got {key!r}")
        if key in LOGICAL:
            parts.append(_logical(key, value, compile_where, f"{key} needs a list of where clauses"))
        elif key.startswith("$"):
            raise UnsupportedFilterError(f"where operator {key!r} is not supported by the postgres backend")
        else:
            parts.append(_field(codec.clean_text(key), value))
    return _join(parts, "AND", _TRUE)


def compile_where_document(where_document: Optional[dict]) -> Predicate:
    """SQL for a document filter; TRUE for None or {}."""
    if not where_document:
        return Predicate()
    if not isinstance(where_document, dict):
        raise ValueError(f"where_document must be a dict, got {type(where_document).__name__}")
    parts = []
    for op, value in where_document.items():
        if op in LOGICAL:
            parts.append(_logical(op, value, compile_where_document, f"where_document {op} needs a list of clauses"))
        elif op in DOCUMENT_OPERATORS:
            if not isinstance(value, str) or not value:
                raise ValueError(f"where_document {op} needs a non-empty string, got {value!r}")
            hit = Predicate(sql.SQL("strpos(document, %s) > 0"), [codec.clean_text(value)])
            parts.append(hit if op == "$contains" else _negate(hit))
        else:
            raise UnsupportedFilterError(f"where_document operator {op!r} is not supported by the postgres backend")
    return _join(parts, "AND", _TRUE)


def compile_filters(where: Optional[dict], where_document: Optional[dict] = None) -> Predicate:
    return compile_where(where).and_(compile_where_document(where_document))
