"""The one error hierarchy of palace_pg.

Every error names the problem and the fix, and carries the data a notebook or
the CLI shows.  psycopg errors are never wrapped: they propagate intact so the
operator sees PostgreSQL's own SQLSTATE and message.  The only exception is a
connection failure, whose libpq message may echo the DSN (password included):
that one is replaced by :class:`TargetUnreachable` with a redacted text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class PalacePgError(Exception):
    """Base class.  ``fix`` tells the operator what to do next."""

    exit_code = 1

    def __init__(self, problem: str, fix: str = "", **data: Any) -> None:
        self.problem = problem
        self.fix = fix
        self.data = data
        super().__init__(f"{problem}" + (f"\n  fix: {fix}" if fix else ""))


class ServerError(PalacePgError):
    """The embedded PostgreSQL could not be installed, started or checked."""


class TargetUnreachable(PalacePgError):
    """Connecting to the target failed.  The message never contains the password."""


class SourceError(PalacePgError):
    """The source palace is missing, unreadable or not a MemPalace palace."""


@dataclass
class Check:
    """One preflight check: ``status`` is ``ok``, ``warn`` or ``fail``."""

    name: str
    status: str
    detail: str
    fix: str = ""
    data: dict = field(default_factory=dict)


class PreflightRefused(PalacePgError):
    """At least one preflight check failed; ``checks`` holds the whole report."""

    exit_code = 3

    def __init__(self, checks: list[Check]) -> None:
        failed = [c for c in checks if c.status == "fail"]
        lines = "\n".join(f"  - {c.name}: {c.detail}" + (f" (fix: {c.fix})" if c.fix else "") for c in failed)
        super().__init__(
            f"preflight refused the migration ({len(failed)} failed check(s)):\n{lines}",
            "resolve the failed checks above, then rerun",
            checks=checks,
        )
        self.checks = checks


class SourceChanged(PalacePgError):
    """The source palace differs from the one a resumable run started on."""

    exit_code = 3


class MigrationLocked(PalacePgError):
    """Another migrator holds the target's advisory lock."""

    exit_code = 3


class VerificationFailed(PalacePgError):
    """Phase 6 found differences between source and target; ``differences`` lists them."""

    exit_code = 4

    def __init__(self, differences: list[dict]) -> None:
        shown = "\n".join(f"  - {d}" for d in differences[:20])
        more = f"\n  … and {len(differences) - 20} more" if len(differences) > 20 else ""
        super().__init__(
            f"verification found {len(differences)} difference(s):\n{shown}{more}",
            "do not cut over; inspect the differences, then rerun with --restart",
            differences=differences,
        )
        self.differences = differences


class RejectedRows(PalacePgError):
    """Rows PostgreSQL cannot hold as they are were kept in the reject table (exit 5 unless allowed)."""

    exit_code = 5

    def __init__(self, rejected: list[dict]) -> None:
        super().__init__(
            f"{len(rejected)} row(s) could not be stored as they are and were kept whole in mempalace.rejects "
            f"(e.g. {rejected[0]['collection']}/{rejected[0]['id']}: {rejected[0]['reason']})",
            "review them with `SELECT collection, id, reason FROM mempalace.rejects`; fix them in the palace and "
            "rerun with --restart, or accept them with --allow-rejects (they stay in the reject table, never lost)",
            rejected=rejected,
        )
        self.rejected = rejected


class ParameterError(PalacePgError):
    """A runbook was given a parameter it does not know (a misspelling keeps a default silently)."""
