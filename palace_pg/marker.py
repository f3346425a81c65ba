"""palace_pg's marker: the file in a migrated palace folder that says "this palace lives in PostgreSQL".

MemPalace's backend registry detects a migrated palace by this file
(``PostgresBackend.detect``), and the AGE knowledge graph finds its database
through it.  It never holds a password: libpq supplies one from the passfile
the DSN names (the embedded server's), PGPASSWORD, ~/.pgpass or a service file.  ``PALACE_PG_DSN`` overrides the recorded target.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import PalacePgError
from .target_db.schema import GRAPH, SCHEMA, SCHEMA_VERSION

MARKER_NAME = "palace_pg.json"
# passfile: the path of libpq's password file (the embedded server's), never the password itself
_TARGET_KEYS = ("host", "port", "dbname", "user", "sslmode", "service", "passfile")


@dataclass
class Marker:
    palace_id: str
    target: dict
    schema: str = SCHEMA
    graph: str = GRAPH
    schema_version: int = SCHEMA_VERSION
    backend: str = "postgres"
    migrated_at: str | None = None
    source_fingerprint: str | None = None
    kg_store: str = "age"  # "age" | "tables"; markers written before the tables store existed are "age"
    extra: dict = field(default_factory=dict)

    @classmethod
    def for_target(cls, palace_id: str, dsn: str, **kw) -> "Marker":
        params = conninfo_to_dict(dsn)
        return cls(palace_id=palace_id, target={k: params[k] for k in _TARGET_KEYS if params.get(k)}, **kw)

    def dsn(self) -> str:
        """The DSN to connect with: PALACE_PG_DSN if set, else the recorded target (no password)."""
        return os.environ.get("PALACE_PG_DSN") or make_conninfo(**self.target)

    def write(self, palace: Path) -> Path:
        path = Path(palace) / MARKER_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
        return path


def marker_path(palace: str | os.PathLike) -> Path:
    return Path(palace) / MARKER_NAME


def has_marker(palace: str | os.PathLike) -> bool:
    return marker_path(palace).is_file()


def read_marker(palace: str | os.PathLike) -> Marker:
    path = marker_path(palace)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PalacePgError(
            f"{palace} is not a migrated palace (no {MARKER_NAME})",
            "run `palace-pg migrate` and the cutover first, or point at the migrated palace folder",
        ) from None
    if "password" in json.dumps(data.get("target", {})).lower():
        raise PalacePgError(f"{path} holds a password", "remove it; use PGPASSWORD or ~/.pgpass")
    known = {k: data[k] for k in Marker.__dataclass_fields__ if k in data}
    return Marker(**known)
