"""The embedded server, against the real thing: versions, idempotence, durability, search_path."""

from __future__ import annotations

import psycopg
import pytest

from palace_pg.errors import ServerError
from palace_pg.server import EmbeddedServer, install


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
    import shutil

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
             pg_server.url().replace("postgres@", "no_such_role@", 1): "create the role 'no_such_role'",
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
