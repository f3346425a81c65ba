"""Values in and out of the collection tables, with their types kept.

Metadata is stored whole in jsonb.  It is written through
``palace_pg.target_db.jsonfmt`` (as the migration writes it), so 1, 1.0 and True
stay three different values and large floats do not turn into integers.
PostgreSQL cannot store NUL in text or jsonb, nor a lone UTF-16 surrogate:
like MemPalace's own pgvector backend, those characters are stripped so one
stray byte in a transcript cannot abort a whole mine.  NaN and Infinity have
no JSON spelling and are refused with a ValueError naming the key.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from psycopg.types.json import Jsonb

from ..target_db import jsonfmt

try:  # mempalace's own helper, so both backends clean text the same way
    from mempalace.config import strip_lone_surrogates
except ImportError:  # pragma: no cover - mempalace is a hard dependency
    def strip_lone_surrogates(text: str) -> str:
        return text.encode("utf-8", "ignore").decode("utf-8")


def clean_text(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    if "\x00" in value:
        value = value.replace("\x00", "")
    return strip_lone_surrogates(value)


def _clean_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"metadata value for {key!r} is {value!r}; PostgreSQL jsonb cannot hold NaN or Infinity")
    if isinstance(value, (list, tuple)):
        return [_clean_value(key, item) for item in value]
    if isinstance(value, dict):
        return {clean_text(str(k)): _clean_value(key, v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, np.generic):
        return _clean_value(key, value.item())
    raise ValueError(f"metadata value for {key!r} has type {type(value).__name__}; use str, int, float, bool or a list")


def metadata_param(meta: Optional[dict]) -> Optional[Jsonb]:
    """A jsonb parameter for one metadata dict, ``None`` kept as SQL NULL.

    ``None`` values inside the dict are kept as JSON null: on upsert and update
    they delete the key (Chroma's merge semantics); the SQL strips them.
    """
    if meta is None:
        return None
    if not isinstance(meta, dict):
        raise ValueError(f"metadata must be a dict, got {type(meta).__name__}")
    cleaned = {clean_text(str(k)): _clean_value(str(k), v) for k, v in meta.items()}
    return Jsonb(cleaned, dumps=jsonfmt.dumps)


def as_matrix(embeddings, *, what: str = "embeddings") -> np.ndarray:
    """float32 matrix of one width; ValueError for ragged, empty or non-finite input."""
    try:
        matrix = np.asarray(embeddings, dtype=np.float32)
    except ValueError as exc:
        widths = sorted({len(e) for e in embeddings})
        from mempalace.backends.base import DimensionMismatchError

        raise DimensionMismatchError(f"{what} mix dimensions {widths} in one call") from exc
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(f"{what} must be a non-empty list of non-empty vectors")
    if not np.isfinite(matrix).all():
        raise ValueError(f"{what} hold NaN or Infinity; pgvector refuses them")
    return matrix


def vector_out(value) -> list[float]:
    """A stored vector as a list of Python floats (float32 values, exactly)."""
    if value is None:
        return []
    if hasattr(value, "to_numpy"):  # pgvector.Vector
        value = value.to_numpy()
    return np.asarray(value, dtype=np.float32).tolist()
