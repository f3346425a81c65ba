"""Shared fixtures: the real embedded PostgreSQL (no mocks) and fresh databases per test."""

from __future__ import annotations

import os
import uuid

import pytest

from palace_pg.server import EmbeddedServer


def pytest_sessionfinish(session, exitstatus):
    """Tests leave nothing in /tmp: the session's palace cache, and the tail folders of migrators the
    kill tests SIGKILLed (a killed process runs no cleanup of its own)."""
    from palaces import remove_cache

    from palace_pg.source.chroma_reader import sweep_orphaned_tails

    remove_cache()
    sweep_orphaned_tails()


@pytest.fixture(scope="session")
def pg_server() -> EmbeddedServer:
    """The embedded server, started if needed (CI starts it before pytest)."""
    server = EmbeddedServer.from_env()
    if not server.running():
        server.start()
    return server


def _scratch_database(server: EmbeddedServer):
    """A brand-new database on ``server``, dropped after the test; yields its DSN."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = server.create_database(name)
    yield dsn
    if not os.environ.get("PALACE_PG_KEEP_TEST_DB"):
        server.drop_database(name)


@pytest.fixture
def fresh_db(pg_server: EmbeddedServer):
    """A brand-new database with vector and age; dropped after the test.  Yields its DSN."""
    yield from _scratch_database(pg_server)


@pytest.fixture(params=["age", "tables"])
def kg_store(request) -> str:
    """The KG store a test runs on: every KG behaviour test runs on both."""
    return request.param


@pytest.fixture
def kg_db(fresh_db, kg_store):
    """A fresh database whose KG lives in ``kg_store``: for ``tables`` the KG tables exist (so
    palace_pg's graph, which opens the store a database holds, picks them although AGE is installed)."""
    if kg_store == "tables":
        import psycopg

        from palace_pg.kg import stores

        with psycopg.connect(fresh_db) as conn:
            stores.ensure(conn, "tables")
    return fresh_db


@pytest.fixture(scope="session")
def noage_server(pg_server: EmbeddedServer):
    """A second embedded server shaped like a managed service (RDS, Cloud SQL, Supabase, Neon):
    no ``age`` in shared_preload_libraries, databases with ``vector`` only; Unix socket only."""
    server = EmbeddedServer.without_age(pg_server)
    started = not server.running()
    if started:
        server.start(durable=False)
    yield server
    if started:
        server.stop()


@pytest.fixture
def noage_db(noage_server: EmbeddedServer):
    """A fresh database on the server without AGE; dropped after the test.  Yields its DSN."""
    yield from _scratch_database(noage_server)
