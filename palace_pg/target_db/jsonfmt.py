"""JSON text for jsonb that keeps every metadata value's type through PostgreSQL.

jsonb stores numbers as numeric and prints them without an exponent, so the
float ``1e+16`` (Python's repr) comes back as the integer ``10000000000000000``:
a float would silently become an int.  Floats of magnitude >= 1e16 are
therefore written in positional notation with a ``.0``, which jsonb keeps as
written (numeric keeps its scale) and which parses back to the same float.
"""

from __future__ import annotations

import json
import math

_EXPONENT_FLOOR = 1e16  # repr() switches to exponent notation from here on


def _needs_positional(value) -> bool:
    if type(value) is float:
        return math.isfinite(value) and abs(value) >= _EXPONENT_FLOOR
    if isinstance(value, dict):
        return any(_needs_positional(v) for v in value.values())
    if isinstance(value, list):
        return any(_needs_positional(v) for v in value)
    return False


def _encode(value) -> str:
    if type(value) is float and math.isfinite(value) and abs(value) >= _EXPONENT_FLOOR:
        return format(value, ".1f")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


def dumps(value) -> str:
    """json.dumps, except large floats stay floats once stored in jsonb."""
    if _needs_positional(value):
        return _encode(value)
    return json.dumps(value)


def canonical(value) -> str:
    """A type-strict comparable form: 1, 1.0 and true all differ; key order does not matter."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=True)
