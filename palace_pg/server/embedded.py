"""The embedded PostgreSQL server: start, stop, status, url.  Idempotent throughout.

As root, PostgreSQL refuses to run, so the server runs as the ``postgres`` OS
user (created when missing) through ``runuser``; its binaries and data live in
world-traversable folders under ``PALACE_PG_HOME`` (default
``/var/lib/palace_pg`` for root, ``$XDG_DATA_HOME/palace_pg`` otherwise).

Durable by default (fsync, full_page_writes, synchronous_commit on).  The fast
mode turns them off for tests only; ``status`` says which mode runs.

Locked (see auth.py): scram-sha-256 on TCP and the socket, the superuser's
generated password in ``PALACE_PG_HOME/pgpass`` (0600, owned by whoever ran
``db start``), the socket 0700.  ``url()`` names the passfile, never the
password.  A data folder made before the lock (trust lines) is locked by its
next ``start``: the password is set (over the still-trusted connection when
it runs, in single-user mode when it does not), pg_hba.conf is rewritten and
the server reloaded.

``EmbeddedServer.without_age(base)`` is a second server beside ``base`` shaped like
a managed PostgreSQL service: no ``age`` in ``shared_preload_libraries``, databases
with ``vector`` only.  It shares ``base``'s runtime and listens on a Unix socket
only (its own socket folder, same port number, no TCP port of its own).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from ..errors import ServerError
from . import auth, install

log = logging.getLogger(__name__)

DEFAULT_PORT = 54329
DEFAULT_DB = "palace"
_SETTINGS_FILE = "palace_pg.conf"


def default_home() -> Path:
    if env := os.environ.get("PALACE_PG_HOME"):
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/lib/palace_pg")
    base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(base) / "palace_pg"


def _as_root() -> bool:
    return os.geteuid() == 0


@dataclass
class EmbeddedServer:
    home: Path = field(default_factory=default_home)
    port: int = DEFAULT_PORT
    dbname: str = DEFAULT_DB
    data_dir: Path | None = None
    # A second server in the same home gets a name: its own data, socket and log folders.
    name: str = ""
    preload: str = "age"  # shared_preload_libraries
    extensions: tuple[str, ...] = ("vector", "age")  # created in every database
    tcp: bool = True  # False: Unix socket only

    def __post_init__(self) -> None:
        self.home = Path(self.home)
        self.data_dir = Path(self.data_dir) if self.data_dir else self.home / self._named("data")

    def _named(self, folder: str) -> str:
        return f"{folder}-{self.name}" if self.name else folder

    @classmethod
    def without_age(cls, base: "EmbeddedServer") -> "EmbeddedServer":
        """A managed-service lookalike beside ``base``: no AGE preloaded or created, ``vector`` only."""
        return cls(home=base.home, port=base.port, dbname=base.dbname, name="noage", preload="",
                   extensions=("vector",), tcp=False)

    @classmethod
    def from_env(cls) -> "EmbeddedServer":
        return cls(
            home=default_home(),
            port=int(os.environ.get("PALACE_PG_PORT", DEFAULT_PORT)),
            dbname=os.environ.get("PALACE_PG_DB", DEFAULT_DB),
            data_dir=os.environ.get("PALACE_PG_DATA") or None,
        )

    # -- paths -------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.home / self._named("run")

    @property
    def log_file(self) -> Path:
        return self.home / self._named("log") / "server.log"

    def _bin(self, name: str) -> str:
        return str(self.home / install.RUNTIME_NAME / "pgserver" / "pginstall" / "bin" / name)

    def binary(self, name: str) -> str:
        """A client program of the runtime (pg_dump, pg_restore, psql)."""
        return self._bin(name)

    @property
    def passfile(self) -> Path:
        """``HOME/pgpass``; a data folder other than ``HOME/data`` has its own, named after its path."""
        if self.data_dir == self.home / "data":
            return self.home / auth.PASSFILE_NAME
        tag = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:12]
        return self.home / f"{auth.PASSFILE_NAME}-{tag}"

    def url(self, dbname: str | None = None) -> str:
        """The DSN: the password comes from the passfile it names (libpq's ``passfile=``)."""
        passfile = urllib.parse.quote(str(self.passfile), safe="/")
        if not self.tcp:
            return f"{self._url_without_password(dbname)}&passfile={passfile}"
        return f"{self._url_without_password(dbname)}?passfile={passfile}"

    def _url_without_password(self, dbname: str | None = None) -> str:
        if not self.tcp:
            return f"postgresql://{auth.SUPERUSER}@/{dbname or self.dbname}?host={self.run_dir}&port={self.port}"
        return f"postgresql://{auth.SUPERUSER}@127.0.0.1:{self.port}/{dbname or self.dbname}"

    # -- process helpers ---------------------------------------------------------------
    def _run(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        cmd = list(args)
        if _as_root():
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/", input=stdin)
        if check and proc.returncode != 0:
            raise ServerError(
                f"`{' '.join(args[:2])}` failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}",
                f"read {self.log_file}; `palace-pg db stop` then `palace-pg db start` retries",
            )
        return proc

    def _ensure_os_user(self) -> None:
        if not _as_root():
            return
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--user-group", "--home-dir", "/var/lib/postgresql",
                 "--shell", "/bin/bash", "postgres"], check=True, capture_output=True)

    def _own(self, *paths: Path) -> None:
        if _as_root():
            entry = pwd.getpwnam("postgres")
            for path in paths:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _check_parents_traversable(self) -> None:
        if not _as_root():
            return
        for parent in [self.home, *self.home.parents]:
            if parent.exists() and not os.stat(parent).st_mode & 0o001:
                raise ServerError(
                    f"{parent} is not traversable by the postgres OS user (mode {oct(os.stat(parent).st_mode & 0o777)})",
                    "set PALACE_PG_HOME to a folder whose parents are all mode 755 (default /var/lib/palace_pg)",
                )

    # -- state -------------------------------------------------------------------------
    def installed(self) -> bool:
        return Path(self._bin("postgres")).exists()

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def running(self) -> bool:
        if not (self.installed() and self.initialised()):
            return False
        return self._run(self._bin("pg_ctl"), "-D", str(self.data_dir), "status", check=False).returncode == 0

    def durable(self) -> bool:
        conf = self.data_dir / _SETTINGS_FILE
        return not conf.is_file() or "fsync = off" not in conf.read_text()

    # -- lifecycle ---------------------------------------------------------------------
    def install(self, force: bool = False) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        self._check_parents_traversable()
        return install.ensure_runtime(self.home, force=force)

    def _write_settings(self, durable: bool) -> bool:
        """(Re)write our settings file; True when it changed."""
        flag = "on" if durable else "off"
        text = "\n".join([
            "# written by palace_pg on every start; edit postgresql.auto.conf (ALTER SYSTEM) instead",
            f"listen_addresses = '{'127.0.0.1' if self.tcp else ''}'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.run_dir}'",
            "unix_socket_permissions = 0700",  # the owner only (root passes anyway); applies at restart
            "password_encryption = 'scram-sha-256'",
            f"shared_preload_libraries = '{self.preload}'",
            f"fsync = {flag}",
            f"full_page_writes = {flag}",
            f"synchronous_commit = {flag}",
            "max_wal_size = '4GB'",
            "checkpoint_timeout = '15min'",
            "shared_buffers = '1GB'",  # the 160K-drawer HNSW index (~310 MB) stays in memory
            "max_parallel_maintenance_workers = 2",
            "max_connections = 100",
            "",
        ])
        conf = self.data_dir / _SETTINGS_FILE
        old = conf.read_text() if conf.is_file() else None
        if old == text:
            return False
        tmp = conf.with_suffix(".tmp")
        tmp.write_text(text)
        self._own(tmp)
        os.replace(tmp, conf)
        return True

    def start(self, *, durable: bool | None = None) -> dict:
        """Install, initdb, start, create the database and extensions.  A no-op when up."""
        self._ensure_os_user()
        self.install()
        if durable is None:
            durable = self.durable() if self.initialised() else True
        for folder in (self.data_dir.parent, self.run_dir, self.log_file.parent):
            folder.mkdir(parents=True, exist_ok=True)
        # the socket folder is the owner's alone, at once (unix_socket_permissions waits for a restart)
        os.chmod(self.run_dir, 0o700)
        self._own(self.run_dir, self.log_file.parent)
        if not self.initialised():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.data_dir, 0o700)
            self._own(self.data_dir)
            # no trust, not even for a moment: pg_hba.conf and the password are set before the first start;
            # a passfile left by a deleted data folder holds another cluster's password
            self.passfile.unlink(missing_ok=True)
            self._run(self._bin("initdb"), "-D", str(self.data_dir), "-U", auth.SUPERUSER, "--auth-local=peer",
                      "--auth-host=reject", "-E", "UTF8", "--locale=C.UTF-8")
            with open(self.data_dir / "postgresql.conf", "a") as conf:
                conf.write(f"\ninclude_if_exists = '{_SETTINGS_FILE}'\n")
        changed = self._write_settings(durable)
        self._ensure_password()
        changed = self._write_hba() or changed
        if self.running():
            if changed:
                self._run(self._bin("pg_ctl"), "-D", str(self.data_dir), "reload")
                time.sleep(0.2)
                if durable:
                    self._checkpoint()
        else:
            self._run(self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                      "-t", "60", "start")
        self._ensure_database()
        return self.status()

    # -- the lock (auth.py) -------------------------------------------------------------
    def _ensure_password(self) -> None:
        """Give the superuser the passfile's password, generating both when there is no passfile yet."""
        if self.passfile.is_file():
            auth.check_private(self.passfile)
            return
        pending = self.passfile.with_name(self.passfile.name + ".new")
        if pending.is_file():  # a start that stopped between writing it and setting it
            password = auth.read_password(pending)
        else:
            password = auth.generate_password()
            auth.write_private(pending, auth.passfile_text(password, self.run_dir))
        verifier = auth.scram_verifier(password)
        if self.running():
            self._set_password_live(verifier)
        else:
            self._set_password_single_user(verifier)
        os.replace(pending, self.passfile)
        log.info("the embedded server's superuser password is set; libpq reads it from %s", self.passfile)

    def _set_password_live(self, verifier: str) -> None:
        # a server running since before the lock still trusts loopback: set the password through that
        try:
            with psycopg.connect(self._url_without_password("postgres"), autocommit=True, connect_timeout=5) as conn:
                conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(auth.SUPERUSER), sql.Literal(verifier)))
        except psycopg.OperationalError as exc:
            raise ServerError(
                f"the running server asks for a password and {self.passfile} is missing ({exc.sqlstate or 'no sqlstate'})",
                "`palace-pg db stop`, then `palace-pg db start` sets a new password while the server is down",
            ) from None

    def _set_password_single_user(self, verifier: str) -> None:
        proc = self._run(self._bin("postgres"), "--single", "-D", str(self.data_dir), "postgres",
                         stdin=auth.alter_role_text(verifier) + "\n")
        if "ERROR" in proc.stderr or "FATAL" in proc.stderr:
            raise ServerError(f"setting the superuser's password failed: {proc.stderr.strip()[:500]}",
                              f"read {self.log_file}; `palace-pg db start` retries with the same password")

    def _write_hba(self) -> bool:
        """Write our pg_hba.conf (scram-sha-256 only); True when it changed."""
        hba = self.data_dir / "pg_hba.conf"
        if hba.is_file() and hba.read_text() == auth.HBA_TEXT:
            return False
        tmp = hba.with_suffix(".tmp")
        tmp.write_text(auth.HBA_TEXT)
        os.chmod(tmp, 0o600)
        self._own(tmp)
        os.replace(tmp, hba)
        return True

    def _checkpoint(self) -> None:
        # After fast mode, make every page written without fsync durable now.
        os.sync()
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute("CHECKPOINT")

    def _ensure_database(self) -> None:
        self.create_database(self.dbname)

    def create_database(self, dbname: str) -> str:
        """Create (if missing) a database with the server's extensions and the search_path set; return its URL."""
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            for ext in self.extensions:  # a fixed allow-list of two names
                conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(ext)))
            installed = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
            if installed != install.VECTOR_VERSION:
                # a database created before the overlay: move the catalog to the fixed version
                conn.execute("ALTER EXTENSION vector UPDATE")
            # ag_catalog last, so plain CREATE TABLE lands in public (research/pg-stack-verify.md §7)
            path = '"$user", public, ag_catalog' if "age" in self.extensions else '"$user", public'
            conn.execute(sql.SQL("ALTER DATABASE {} SET search_path = " + path).format(sql.Identifier(dbname)))
        return self.url(dbname)

    def drop_database(self, dbname: str) -> None:
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))

    def stop(self) -> dict:
        if self.running():
            self._run(self._bin("pg_ctl"), "-D", str(self.data_dir), "-w", "-m", "fast", "stop")
        return self.status()

    def kill_immediate(self) -> None:
        """Stop without a shutdown checkpoint, as a crash would (used by the reliability harness)."""
        if self.running():
            self._run(self._bin("pg_ctl"), "-D", str(self.data_dir), "-w", "-m", "immediate", "stop")

    def destroy(self) -> None:
        """Stop and delete the data folder (the runtime stays)."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.passfile.unlink(missing_ok=True)

    def status(self) -> dict:
        facts = {
            "running": self.running(),
            "url": self.url(),
            "port": self.port,
            "home": str(self.home),
            "data_dir": str(self.data_dir),
            "log_file": str(self.log_file),
            "mode": "durable" if self.durable() else "FAST (fsync off: for tests only, not for real data)",
            "runtime": install.RUNTIME_NAME if self.installed() else None,
        }
        if facts["running"]:
            with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
                facts["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
                facts["extensions"] = dict(conn.execute(
                    "SELECT extname, extversion FROM pg_extension WHERE extname IN ('vector', 'age') ORDER BY 1"
                ).fetchall())
        return facts
