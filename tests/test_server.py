"""The embedded server, against the real thing: versions, idempotence, durability, search_path, the lock."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import stat
import uuid

import psycopg
import pytest

from palace_pg.errors import ServerError
from palace_pg.server import EmbeddedServer, install
from palace_pg.testing.outsiders import outsider_attempts as _outsider_attempts


def test_extensions_are_age_170_and_vector_086(fresh_db):
    with psycopg.connect(fresh_db) as conn:
        exts = dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())
        assert exts["age"] == "1.7.0"
        assert exts["vector"] == "0.8.6"
        assert conn.execute("SHOW server_version").fetchone()[0].startswith("18.6")
        assert conn.execute("SHOW shared_preload_libraries").fetchone()[0] == "age"
        assert conn.execute("SHOW search_path").fetchone()[0] == '"$user", public, ag_catalog'


def test_start_twice_is_a_noop(pg_server: EmbeddedServer):
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        pid_before = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    facts = pg_server.start()  # keeps the current mode
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        assert conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] == pid_before
    assert facts["running"]


def test_vector_so_is_checked_by_sha256(pg_server: EmbeddedServer):
    runtime = pg_server.home / install.RUNTIME_NAME
    facts = install.verify_runtime(runtime)
    assert facts["vector_version"] == "0.8.6"
    assert facts["vector_so_sha256"] == install.VECTOR_SO_SHA256


def test_a_tampered_vector_so_is_refused(tmp_path, pg_server: EmbeddedServer):
    copy = tmp_path / "rt"
    shutil.copytree(pg_server.home / install.RUNTIME_NAME, copy, symlinks=True)
    so = copy / "pgserver" / "pginstall" / "lib" / "postgresql" / "vector.so"
    so.write_bytes(so.read_bytes() + b"\0")
    with pytest.raises(ServerError, match="pgvector"):
        install.verify_runtime(copy)


def test_status_reports_the_mode(pg_server: EmbeddedServer):
    status = pg_server.status()
    assert status["running"]
    assert status["mode"] == "durable" or status["mode"].startswith("FAST")
    with psycopg.connect(pg_server.url()) as conn:
        fsync = conn.execute("SHOW fsync").fetchone()[0]
    assert (fsync == "on") == (status["mode"] == "durable")


def test_durable_by_default_for_a_new_data_folder(tmp_path):
    server = EmbeddedServer(home=tmp_path / "h", port=1)
    assert server.durable()  # no settings written yet: durable is the default


def test_a_connection_failure_names_its_own_fix(pg_server):
    from palace_pg.dsn import connect
    from palace_pg.errors import TargetUnreachable

    cases = {pg_server.url("no_such_database_here"): "CREATE DATABASE no_such_database_here",
             # scram-sha-256 answers an unknown role as a wrong password: the fix names both
             pg_server.url().replace("postgres@", "no_such_role@", 1): "and that the role exists",
             "postgresql://postgres@127.0.0.1:1/x": "palace-pg db start"}
    for dsn, fix in cases.items():
        with pytest.raises(TargetUnreachable) as err:
            connect(dsn)
        assert fix in err.value.fix, (dsn, err.value.fix)


def test_db_create_makes_a_database_ready_for_a_migration(pg_server, capsys):
    from palace_pg.cli import main

    name = "t_cli_create"
    try:
        assert main(["db", "create", "--database", name]) == 0
        assert capsys.readouterr().out.strip() == pg_server.url(name)
        with psycopg.connect(pg_server.url(name)) as conn:
            extensions = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
        assert {"vector", "age"} <= extensions
    finally:
        pg_server.drop_database(name)


# -- the lock: scram-sha-256, a 0600 passfile, the socket 0700 ---------------------------------
def _assert_locked(server: EmbeddedServer) -> None:
    for name, proc in _outsider_attempts(server).items():
        assert proc.returncode != 0 and "IN" not in proc.stdout, (name, proc.stdout, proc.stderr)
        assert ("password" in proc.stderr or "Permission denied" in proc.stderr), (name, proc.stderr)
    info = os.stat(server.passfile)
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
    assert stat.S_IMODE(os.stat(server.run_dir).st_mode) == 0o700
    hba = (server.data_dir / "pg_hba.conf").read_text()
    methods = {line.split()[-1] for line in hba.splitlines() if line.strip() and not line.startswith("#")}
    assert methods == {"scram-sha-256"}
    with psycopg.connect(server.url("postgres"), connect_timeout=5) as conn:  # the owner gets in by the url
        assert conn.execute("SELECT current_user").fetchone()[0] == "postgres"
        assert conn.execute("SELECT rolpassword LIKE 'SCRAM-SHA-256$%%' FROM pg_authid "
                            "WHERE rolname = 'postgres'").fetchone()[0]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root to act as nobody")
def test_another_os_user_cannot_connect(pg_server: EmbeddedServer):
    _assert_locked(pg_server)


def test_the_password_is_in_the_passfile_only(pg_server: EmbeddedServer, capsys):
    from palace_pg.cli import main
    from palace_pg.server import auth

    password = auth.read_password(pg_server.passfile)
    assert main(["db", "url"]) == 0 and main(["db", "status"]) == 0
    shown = capsys.readouterr().out + json.dumps(pg_server.status())
    assert f"passfile={pg_server.passfile}" in shown
    assert password not in shown and password not in pg_server.url()
    assert password.encode() not in pg_server.log_file.read_bytes()


def test_the_scram_verifier_is_postgresql_s(pg_server: EmbeddedServer):
    from palace_pg.server import auth

    with psycopg.connect(pg_server.url("postgres")) as conn:
        ours = auth.scram_verifier("pencil", salt=b"0123456789abcdef")
        salt = base64.b64decode(ours.split("$")[1].split(":")[1])
        assert salt == b"0123456789abcdef"
        theirs = conn.pgconn.encrypt_password(b"pencil", b"postgres", b"scram-sha-256").decode()
        # libpq salts randomly: recompute ours with its salt and compare the keys
        their_salt = base64.b64decode(theirs.split("$")[1].split(":")[1])
        assert auth.scram_verifier("pencil", salt=their_salt) == theirs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("running", [False, True], ids=["stopped", "running"])
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("runuser") is None, reason="needs root to act as nobody")
def test_a_trusting_data_folder_is_locked_by_the_next_start(pg_server: EmbeddedServer, running: bool):
    """A data folder as the code before the lock made it (trust everywhere) is locked by `start`."""
    # under the server's home: the postgres OS user must reach it (pytest's tmp_path is root's 0700)
    data = pg_server.home / f"t-trusting-{uuid.uuid4().hex[:8]}"
    old = EmbeddedServer(home=pg_server.home, port=_free_port(), data_dir=data)
    try:
        data.mkdir(mode=0o700)
        old._own(data)
        old._run(old._bin("initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust", "--auth-host=trust",
                 "-E", "UTF8", "--locale=C.UTF-8")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\ninclude_if_exists = 'palace_pg.conf'\n")
        old._write_settings(durable=False)
        if running:
            old._run(old._bin("pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "start")
            assert _outsider_attempts(old)["tcp"].returncode == 0  # the hole the lock closes
        assert not old.passfile.exists()
        old.start(durable=False)
        _assert_locked(old)
        assert old.passfile != pg_server.passfile
        old.start(durable=False)  # idempotent: the same password, still locked
        old.stop()
        old.start(durable=False)
        _assert_locked(old)
        old.destroy()  # a new data folder in the same place gets a new password, not the stale passfile
        old.start(durable=False)
        _assert_locked(old)
    finally:
        old.stop()
        shutil.rmtree(data, ignore_errors=True)
        old.passfile.unlink(missing_ok=True)
