"""Which PostgreSQL database holds the knowledge graph for a mempalace ``db_path``.

mempalace hands the KG class the path of its sqlite file
(``<palace>/knowledge_graph.sqlite3``, or ``~/.mempalace/knowledge_graph.sqlite3``
when the MCP server runs without ``--palace``).  The migrated palace folder holds
palace_pg's marker, which names the target (never a password: libpq finds that in
PGPASSWORD, ~/.pgpass or a service file).  Order:

1. the marker in ``dirname(db_path)``;
2. the marker in mempalace's configured palace (the MCP default-path case);
3. ``PALACE_PG_DSN`` alone.

``PALACE_PG_DSN`` also overrides the target a marker records (``Marker.dsn``).
"""

from __future__ import annotations

import logging
import os

from ..dsn import ENV_DSN
from ..marker import has_marker, read_marker
from ..target_db.schema import GRAPH
from .errors import KgNotConfigured

log = logging.getLogger(__name__)


def _configured_palace() -> str | None:
    try:
        from mempalace.config import MempalaceConfig

        return os.path.expanduser(MempalaceConfig().palace_path)
    except Exception:  # a broken config must not hide the real error below
        log.debug("mempalace config unreadable", exc_info=True)
        return None


def dsn_for_db_path(db_path: str | os.PathLike | None) -> str:
    folders = []
    if db_path:
        folders.append(os.path.dirname(os.path.abspath(os.fspath(db_path))))
    configured = _configured_palace()
    if configured:
        folders.append(configured)
    for folder in folders:
        if has_marker(folder):
            marker = read_marker(folder)
            if marker.graph != GRAPH:
                raise KgNotConfigured(
                    f"{folder}: the marker names graph {marker.graph!r}; this palace_pg serves {GRAPH!r}",
                    "upgrade palace_pg to the version that migrated this palace",
                )
            return marker.dsn()
    if os.environ.get(ENV_DSN):
        return os.environ[ENV_DSN]
    raise KgNotConfigured(
        f"no palace_pg marker next to {db_path} (nor in mempalace's configured palace), and {ENV_DSN} is unset",
        f"migrate the palace with `palace-pg migrate`, pass --palace to mempalace, set {ENV_DSN}, "
        "or set MEMPALACE_KG_BACKEND=sqlite to use the sqlite graph",
    )
