"""Errors raised by the AGE knowledge graph (subclasses of palace_pg's one hierarchy)."""

from __future__ import annotations

from ..errors import PalacePgError


class KgError(PalacePgError):
    """Base class for knowledge-graph errors."""


class KgValueRejected(KgError, ValueError):
    """A value PostgreSQL cannot hold as it is (a NUL character, a non-finite float).

    Also a ``ValueError`` so callers written against mempalace's sqlite class
    (which catch ``ValueError`` around KG writes) keep working.
    """


class KgIntegrityError(KgError, ValueError):
    """A row breaks a rule sqlite enforces too (NOT NULL column, duplicate id)."""


class KgNotConfigured(KgError):
    """The AGE knowledge graph was selected but no target database could be found."""
