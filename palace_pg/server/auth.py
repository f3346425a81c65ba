"""The embedded server's lock: a generated password, kept in a 0600 passfile, and scram-sha-256 everywhere.

The password never leaves two places: the passfile under ``PALACE_PG_HOME``
(owned by the user who started the server, mode 0600, which libpq reads
through ``passfile=`` in the DSN) and the server's catalog, which only ever
receives the SCRAM verifier computed here, so the plain text reaches no SQL
text, server log or process list.

Setting it is crash-safe: the new password is written to ``pgpass.new``
first, set on the server, then renamed to ``pgpass``; a start that finds
``pgpass.new`` alone sets that same password again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import stat
from pathlib import Path

from ..errors import ServerError

PASSFILE_NAME = "pgpass"
SUPERUSER = "postgres"
_SCRAM_ITERATIONS = 4096  # PostgreSQL's default (scram_iterations)
_VERIFIER = re.compile(r"SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+")

# No trust line anywhere: every connection, socket or TCP, proves the password.
HBA_TEXT = """\
# written by palace_pg on every `db start`: a password (scram-sha-256) for every connection
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 scram-sha-256
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
"""


def generate_password() -> str:
    # url-safe base64: no ':' or '\\', which the passfile format would need escaped
    return secrets.token_urlsafe(32)


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = _SCRAM_ITERATIONS) -> str:
    """The ``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`` secret PostgreSQL stores (RFC 5802, RFC 7677)."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    salt_b64, stored_b64, server_b64 = (base64.b64encode(raw).decode() for raw in (salt, stored_key, server_key))
    return f"SCRAM-SHA-256${iterations}:{salt_b64}${stored_b64}:{server_b64}"


def alter_role_text(verifier: str) -> str:
    """The statement that sets the verifier, for single-user mode (which takes no parameters).

    The verifier is checked against its grammar (base64, '$', ':' and digits) first, so the
    quoted literal can hold nothing else."""
    if not _VERIFIER.fullmatch(verifier):
        raise ValueError("not a SCRAM-SHA-256 verifier")
    return f"ALTER ROLE {SUPERUSER} PASSWORD '{verifier}'"


def _escape(field: str) -> str:
    return field.replace("\\", "\\\\").replace(":", "\\:")


def passfile_text(password: str, run_dir: Path) -> str:
    # host fields: TCP on loopback, and the socket folder (libpq matches a socket's host literally)
    hosts = ["127.0.0.1", "localhost", "::1", str(run_dir)]
    return "".join(f"{_escape(h)}:*:*:{SUPERUSER}:{_escape(password)}\n" for h in hosts)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically to ``path``, mode 0600, owned by the calling user."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask; say it again
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_password(path: Path) -> str:
    """The password in our passfile, after checking it is private to the calling user."""
    check_private(path)
    first = path.read_text().splitlines()[0]
    fields = re.split(r"(?<!\\):", first)
    return fields[4].replace("\\:", ":").replace("\\\\", "\\")


def check_private(path: Path) -> None:
    info = os.stat(path)
    if stat.S_IMODE(info.st_mode) != 0o600 or info.st_uid != os.geteuid():
        raise ServerError(
            f"the passfile {path} is mode {oct(stat.S_IMODE(info.st_mode))}, uid {info.st_uid}: it must be "
            f"0600 and owned by uid {os.geteuid()}, the user who starts the server",
            f"chmod 600 {path} (and chown it to that user); libpq ignores a passfile others can read",
        )
