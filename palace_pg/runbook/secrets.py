"""Fail-closed secret scanning of everything archived as evidence.

Papermill stores parameters verbatim (the injected cell, ``metadata.papermill``
and any log), and libpq echoes a DSN in some errors, so nothing is archived
before it is scanned for (a) the known secret values of the run (the test
canary, ``PGPASSWORD``) and (b) the shapes of a password: ``password=…``, a URI
``scheme://user:secret@``, a ``PGPASSWORD=…`` assignment.  A finding names the
file and the pattern, never the value.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import PalacePgError

PATTERNS = {
    "password=value": re.compile(r"password\s*=\s*(?!\*\*\*)[^\s'\"&;,*]", re.IGNORECASE),
    "uri with a password": re.compile(r"[a-z][a-z0-9+.-]*://[^:/@\s\"']+:[^@\s/\"']+@", re.IGNORECASE),
    "PGPASSWORD assignment": re.compile(r"PGPASSWORD\s*[=:]\s*[\"']?(?!\*\*\*)[^\s\"'*]"),
}
MIN_SECRET_LEN = 6  # shorter values (e.g. "postgres" is 8) would match ordinary text; see known_secrets


class SecretLeak(PalacePgError):
    """Something that looks like a password was found in the evidence; it was not archived."""

    exit_code = 5


@dataclass
class Finding:
    path: str
    what: str


def known_secrets(extra: Iterable[str] = ()) -> list[str]:
    """The values this run must never write: explicit ones plus PGPASSWORD, when long enough to search for."""
    values = [v for v in extra if v]
    env = os.environ.get("PGPASSWORD")
    if env:
        values.append(env)
    return sorted({v for v in values if len(v) >= MIN_SECRET_LEN})


def scan_text(text: str, secrets: Iterable[str]) -> list[str]:
    """What was found in ``text``: pattern names and 'a known secret value' (never the value itself)."""
    found = [name for name, pattern in PATTERNS.items() if pattern.search(text)]
    if any(s in text for s in secrets):
        found.append("a known secret value")
    return found


def scan_file(path: Path, secrets: Iterable[str], *, root: Path | None = None) -> list[Finding]:
    data = Path(path).read_bytes()
    text = data.decode("utf-8", errors="replace")
    shown = str(Path(path).relative_to(root)) if root else str(path)
    return [Finding(shown, what) for what in scan_text(text, secrets)]


def scan_tree(root: Path, secrets: Iterable[str]) -> list[Finding]:
    secrets = list(secrets)
    findings: list[Finding] = []
    for path in sorted(Path(root).rglob("*")):
        if path.is_file():
            findings += scan_file(path, secrets, root=root)
    return findings


def refuse(findings: list[Finding]) -> None:
    if findings:
        listed = "; ".join(f"{f.path}: {f.what}" for f in findings[:10])
        raise SecretLeak(f"the evidence would contain a secret ({listed}); those files were not archived",
                         "pass the password through PGPASSWORD or ~/.pgpass, never in the DSN or a parameter",
                         findings=[f.__dict__ for f in findings])
