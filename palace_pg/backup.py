"""Backup and restore of a migrated database: pg_dump -Fc / pg_restore, plus what Apache AGE needs.

A plain ``pg_dump``/``pg_restore`` brings every row back, but AGE keeps the
graph's namespace twice in ``ag_catalog.ag_graph``: as ``namespace``
(``regnamespace``, dumped by name, so it resolves to the restored schema) and
as ``graphid`` (a bare ``oid``, dumped as the source's number), which
``ag_label.graph`` copies.  ``cypher()`` looks the graph up by ``graphid``, so
after a restore every query fails with ``graph with oid N does not exist``
(apache/age#2503, open).  :func:`repair_graph_oids` sets both to the restored
namespace's OID in one statement; ``ag_label.relation`` is a ``regclass`` and
needs nothing.  ``pg_dump`` without ``--create`` does not carry the
database's ``search_path`` either, which AGE needs (research/pg-stack.md §7):
:func:`restore` sets it again.

The restore is one transaction (``--single-transaction --exit-on-error``): it
lands whole or not at all, and only into a database that holds no palace and
no graph yet, so it can never mix two palaces.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from .dsn import connect, redact, resolve_dsn, scrub
from .errors import PalacePgError
from .target_db.schema import GRAPH, SCHEMA

log = logging.getLogger(__name__)

# every graph whose graphid is not its namespace's OID (a restored one), moved in one statement: the
# NO ACTION foreign key ag_label.graph -> ag_graph.graphid is checked at the statement's end, when both agree
_REPAIR_GRAPH_OIDS = """
WITH stale AS (
    SELECT graphid AS old_oid, namespace::oid AS new_oid FROM ag_catalog.ag_graph WHERE graphid <> namespace::oid
), graphs AS (
    UPDATE ag_catalog.ag_graph g SET graphid = s.new_oid FROM stale s WHERE g.graphid = s.old_oid RETURNING g.name
), labels AS (
    UPDATE ag_catalog.ag_label l SET graph = s.new_oid FROM stale s WHERE l.graph = s.old_oid RETURNING l.name
)
SELECT (SELECT count(*) FROM graphs), (SELECT count(*) FROM labels)
"""


# "8; 2615 27525 SCHEMA - ag_catalog postgres": a CREATE SCHEMA entry of pg_restore --list
_TOC_SCHEMA = re.compile(r"^\d+; \d+ \d+ SCHEMA - (\S+) ")


class BackupError(PalacePgError):
    """pg_dump or pg_restore failed, or the restore target is not empty."""


def client_binary(name: str) -> str:
    """``pg_dump``/``pg_restore``: the embedded runtime's (PG 18.6, dumps any server >= 9.2), else $PATH's."""
    from .server import EmbeddedServer

    server = EmbeddedServer.from_env()
    if server.installed():
        return server.binary(name)
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} was not found (no embedded runtime, nothing on PATH)",
                          "run `palace-pg db install`, or install PostgreSQL's client tools (version >= the server's)")
    return found


def _run(tool: str, args: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([client_binary(tool), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # libpq's messages may echo a connection string: scrub before showing
        raise BackupError(f"{tool} failed (exit {proc.returncode}): {scrub(proc.stderr.strip())[-2000:]}",
                          f"fix the cause {tool} names above, then rerun (nothing was kept of this attempt)")
    return proc


def backup(dsn: str | None, file: str | os.PathLike) -> dict:
    """``pg_dump -Fc`` of the whole database into ``file`` (written beside it, then renamed into place)."""
    target = resolve_dsn(dsn)
    file = Path(file)
    with connect(target, vector=False) as conn:  # fails early, with the redacted DSN and the fix
        facts = _contents(conn)
    if not facts["schema"]:
        raise BackupError(f"{redact(target)} holds no migrated palace (no schema {SCHEMA})",
                          "point --dsn at the database `palace-pg migrate` wrote")
    tmp = file.with_name(f".{file.name}.partial")
    try:
        _run("pg_dump", ["--format=custom", "--file", str(tmp), "--dbname", target])
        _run("pg_restore", ["--list", str(tmp)])  # the archive reads back whole
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("backed up %s to %s (%d bytes)", redact(target), file, file.stat().st_size)
    return {"file": str(file), "bytes": file.stat().st_size, **facts}


def restore(file: str | os.PathLike, dsn: str | None) -> dict:
    """``pg_restore`` into an empty database, then the AGE repair and the database's search_path."""
    target = resolve_dsn(dsn)
    file = Path(file)
    if not file.is_file():
        raise BackupError(f"no backup at {file}", "pass the file `palace-pg backup` wrote")
    with connect(target, vector=False) as conn:
        found = _contents(conn)
        schemas = [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")]
    if found["schema"] or found["graphs"]:
        raise BackupError(
            f"{redact(target)} is not empty (schema {SCHEMA}: {found['schema']}, AGE graphs: {found['graphs']})",
            "restore into a new database, e.g. `palace-pg db create --database NAME`; never over a palace")
    with tempfile.TemporaryDirectory(prefix="palace_pg-restore-") as tmp:
        # the archive's table of contents, less what the target already has (its extensions' schema)
        listing = Path(tmp) / "toc.list"
        listing.write_text(_toc_without(_run("pg_restore", ["--list", str(file)]).stdout, schemas))
        _run("pg_restore", ["--single-transaction", "--exit-on-error", "--no-owner", "--use-list", str(listing),
                            "--dbname", target, str(file)])
    with connect(target, autocommit=True, vector=False) as conn:
        repaired = repair_graph_oids(conn)
        set_search_path(conn)
    with connect(target, vector=False) as conn:
        facts = _contents(conn)
    log.info("restored %s into %s; %s", file, redact(target), repaired)
    return {"file": str(file), **facts, **repaired}


def repair_graph_oids(conn: psycopg.Connection) -> dict:
    """Point every AGE graph at its own namespace OID again (idempotent; a no-op on an original database)."""
    with conn.transaction():
        graphs, labels = conn.execute(_REPAIR_GRAPH_OIDS).fetchone()
    return {"graphs_repaired": graphs, "labels_repaired": labels}


def set_search_path(conn: psycopg.Connection) -> None:
    # ag_catalog last, as the embedded server's databases have it (research/pg-stack-verify.md §7)
    conn.execute(sql.SQL('ALTER DATABASE {} SET search_path = "$user", public, ag_catalog')
                 .format(sql.Identifier(conn.info.dbname)))


def _toc_without(toc: str, existing_schemas: list[str]) -> str:
    """The TOC minus ``CREATE SCHEMA`` of schemas the target has: ``ag_catalog`` comes with ``CREATE
    EXTENSION age`` but is no member of it, so pg_dump dumps it and a database made with the extensions
    (``palace-pg db create``) would refuse it.  The extensions themselves restore with IF NOT EXISTS."""
    kept = []
    for line in toc.splitlines():
        match = _TOC_SCHEMA.match(line)
        if match and match.group(1) in existing_schemas:
            kept.append(";" + line)  # commented out: pg_restore skips it
        else:
            kept.append(line)
    return "\n".join(kept) + "\n"


def _contents(conn: psycopg.Connection) -> dict:
    schema = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [SCHEMA]).fetchone() is not None
    has_age = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'age'").fetchone() is not None
    graphs = [r[0] for r in conn.execute("SELECT name FROM ag_catalog.ag_graph ORDER BY 1")] if has_age else []
    tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname IN (%s, %s)", [SCHEMA, GRAPH]).fetchone()[0]
    return {"database": conn.info.dbname, "schema": schema, "graphs": graphs, "tables": tables}
