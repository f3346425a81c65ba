"""palace_pg: move a MemPalace palace onto one PostgreSQL (pgvector + Apache AGE).

The library API (what the CLI and the runbooks call)::

    from palace_pg import MigrationOptions, preflight, plan, migrate, verify, status
"""

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# after __version__: the engine reads it
from .engine import migrate, plan, preflight, status, verify  # noqa: E402
from .errors import (  # noqa: E402
    MigrationLocked,
    PalacePgError,
    ParameterError,
    PreflightRefused,
    RejectedRows,
    ServerError,
    SourceChanged,
    SourceError,
    TargetUnreachable,
    VerificationFailed,
)
from .phases.base import MigrationOptions  # noqa: E402

__all__ = [
    "__version__", "MigrationOptions", "preflight", "plan", "migrate", "verify", "status",
    "PalacePgError", "ServerError", "TargetUnreachable", "SourceError", "PreflightRefused", "SourceChanged",
    "MigrationLocked", "VerificationFailed", "RejectedRows", "ParameterError",
]
