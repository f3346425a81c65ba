"""Where the target is, and how to connect to it without ever showing a password.

Resolution order: an explicit DSN, then ``PALACE_PG_DSN``, then the embedded
server.  Passwords belong in libpq's own sources (``PGPASSWORD``, ``.pgpass``,
``PGSERVICE``); if one is written into a DSN anyway, it is used but never
displayed: every DSN shown to a human comes from :func:`redact` or
``conn.info.dsn`` (which libpq builds without the password).
"""

from __future__ import annotations

import os
import re

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import TargetUnreachable

ENV_DSN = "PALACE_PG_DSN"

# key=value and URI spellings of a password; used only to scrub text we did not build.
_PASSWORD_PATTERNS = [
    re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE),
    re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)"),
    re.compile(r"([?&]password=)([^&\s]*)", re.IGNORECASE),
]


def scrub(text: str) -> str:
    """Remove anything that looks like a password from free text (error messages, logs)."""
    text = _PASSWORD_PATTERNS[0].sub(r"\1***", text)
    text = _PASSWORD_PATTERNS[1].sub(r"\1***\3", text)
    return _PASSWORD_PATTERNS[2].sub(r"\1***", text)


def redact(dsn: str) -> str:
    """The DSN as key=value text with the password removed."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        # libpq's parse error echoes the input; show nothing of it.
        return "<unparseable DSN>"
    params.pop("password", None)
    return make_conninfo(**params)


def resolve_dsn(dsn: str | None = None) -> str:
    """The DSN to use: explicit, else $PALACE_PG_DSN, else the embedded server's."""
    if dsn:
        return dsn
    if os.environ.get(ENV_DSN):
        return os.environ[ENV_DSN]
    from .server import EmbeddedServer

    return EmbeddedServer.from_env().url()


def label(dsn: str) -> str:
    """A DSN as an operator reads it: user@host:port/dbname (never the password, no libpq options).

    A host list or a socket folder is kept as written; missing parts are libpq's defaults.
    """
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<unparseable DSN>"
    user = params.get("user") or os.environ.get("PGUSER") or ""
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user
    return f"{user + '@' if user else ''}{host}:{port}/{dbname}"


def shown(conn: psycopg.Connection) -> str:
    """The target as an operator reads it: user@host:port/dbname (conn.info.dsn never has the password)."""
    return label(conn.info.dsn)


def _connect_fix(message: str, params: dict) -> str:
    """The fix for the way the connection failed (libpq's message names it)."""
    text = message.lower()
    if "password authentication failed" in text or "no password supplied" in text:
        # scram-sha-256 does not say whether the role exists, so both are named
        return (f"check the password for user {params.get('user', '?')!r} and that the role exists: the embedded "
                "server's DSN (`palace-pg db url`) names its passfile; otherwise put the password in PGPASSWORD "
                "or ~/.pgpass (never in the DSN)")
    if "role" in text and "does not exist" in text:
        return f"create the role {params.get('user', '?')!r} on the server, or connect as an existing user"
    if "database" in text and "does not exist" in text:
        return (f"create it first: `CREATE DATABASE {params.get('dbname', '…')}` (then `CREATE EXTENSION vector; "
                "CREATE EXTENSION age;`), or point --dsn at an existing database")
    if "refused" in text or "no such file or directory" in text or "timeout" in text:
        return ("the server is not running there: start the embedded server with `palace-pg db start`, or "
                "check host and port")
    return ("start the embedded server with `palace-pg db start`, or check host, port, user and the password "
            "source (PGPASSWORD / ~/.pgpass)")


def connect(dsn: str | None = None, *, autocommit: bool = False, vector: bool = True,
            application_name: str = "palace_pg") -> psycopg.Connection:
    """Open a connection; errors carry a redacted DSN, never libpq's echo of it."""
    target = resolve_dsn(dsn)
    try:
        params = conninfo_to_dict(target)
    except psycopg.ProgrammingError:
        raise TargetUnreachable(
            "the target DSN could not be parsed",
            "pass a libpq DSN such as 'postgresql://user@host:5432/db' or 'host=… dbname=…'; "
            "keep the password in PGPASSWORD or ~/.pgpass",
        ) from None
    params.setdefault("application_name", application_name)
    try:
        conn = psycopg.connect(make_conninfo(**params), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        message = scrub(str(exc)).strip()
        raise TargetUnreachable(f"cannot connect to {redact(target)}: {message}", _connect_fix(message, params)) from None
    if vector:
        from pgvector.psycopg import register_vector

        try:
            register_vector(conn)
        except psycopg.ProgrammingError:
            # `vector` type not installed yet: preflight reports it with the fix.
            pass
    return conn
