"""pytest plugin: run mempalace's own knowledge-graph tests against ``AgeKnowledgeGraph``.

Load it with ``-p palace_pg.kg.pytest_upstream`` (a ``-p`` plugin is imported
before mempalace's ``tests/conftest.py`` binds ``KnowledgeGraph``, so every
fixture and test module builds the substitute).  Set
``PALACE_PG_KG_UPSTREAM_DSN`` to a database on the target server whose role may
CREATE DATABASE: each distinct ``db_path`` a test opens gets its own fresh
database, cloned from a template that already holds the graph, and the same
path reopened finds the same data (as a reopened sqlite file would).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import uuid

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import mempalace.kg_normalize
import mempalace.knowledge_graph
import mempalace.palace_audit

from . import hook
from . import stores
from .graph import AgeKnowledgeGraph

log = logging.getLogger(__name__)
ENV_DSN = "PALACE_PG_KG_UPSTREAM_DSN"
# Optional: a JSON file this plugin keeps up to date with {db_path: dsn}, so that
# subprocesses some tests start (with the .pth hook active) find the same database.
ENV_MAP = "PALACE_PG_KG_UPSTREAM_MAP"
# Which KG store the databases hold: age (default) or tables.
ENV_STORE = "PALACE_PG_KG_UPSTREAM_STORE"
STORE = os.environ.get(ENV_STORE, "age")


class _Databases:
    """db_path → DSN of a database created for it from a prepared template."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.prefix = f"kgup_{uuid.uuid4().hex[:8]}"
        self.template = f"{self.prefix}_tmpl"
        self.by_path: dict[str, str] = {}
        self.created: list[str] = []
        self.lock = threading.Lock()
        self._ready = False

    def _dsn(self, dbname: str) -> str:
        return make_conninfo(**(conninfo_to_dict(self.admin_dsn) | {"dbname": dbname}))

    def _prepare_template(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.template)))
        self.created.append(self.template)
        with psycopg.connect(self._dsn(self.template)) as conn:
            if STORE == "age":
                conn.execute("CREATE EXTENSION IF NOT EXISTS age")
            stores.ensure(conn, STORE)
        self._ready = True

    def dsn_for(self, db_path: str) -> str:
        key = os.path.realpath(db_path)
        with self.lock:
            if key not in self.by_path:
                if not self._ready:
                    self._prepare_template()
                name = f"{self.prefix}_{len(self.created)}"
                with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                    conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(self.template)))
                self.created.append(name)
                self.by_path[key] = self._dsn(name)
                self._publish()
            return self.by_path[key]

    def _publish(self) -> None:
        target = os.environ.get(ENV_MAP)
        if target:
            tmp = f"{target}.tmp"
            with open(tmp, "w") as fh:
                json.dump(self.by_path, fh)
            os.replace(tmp, target)

    def drop_all(self) -> None:
        if not self.created:
            return
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            for name in reversed(self.created):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        self.created.clear()
        self.by_path.clear()


_admin = os.environ.get(ENV_DSN)
if not _admin:
    raise RuntimeError(f"palace_pg.kg.pytest_upstream needs {ENV_DSN} (an admin DSN on the target server)")
DATABASES = _Databases(_admin)
atexit.register(DATABASES.drop_all)


class UpstreamAgeKnowledgeGraph(AgeKnowledgeGraph):
    """``KnowledgeGraph(db_path)`` as the upstream tests build it: one fresh database per path."""

    def __init__(self, db_path: str | None = None, **kw) -> None:
        path = db_path or mempalace.knowledge_graph.DEFAULT_KG_PATH
        # The sqlite class creates the folder of its file; some tests write next to it.
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # ... and its file, which `mempalace kg normalize` checks for before opening the graph.
        open(path, "a").close()
        super().__init__(db_path=path, dsn=DATABASES.dsn_for(path), **kw)
        if self.store_name != STORE:  # the run must measure the store it names
            raise RuntimeError(f"upstream KG run on {STORE!r} opened the {self.store_name!r} store")


def _install() -> None:
    hook.patch_knowledge_graph_module(mempalace.knowledge_graph)
    mempalace.knowledge_graph.KnowledgeGraph = UpstreamAgeKnowledgeGraph
    hook.patch_kg_normalize_module(mempalace.kg_normalize)
    hook.patch_palace_audit_module(mempalace.palace_audit)


_install()


def pytest_report_header(config):
    return f"palace_pg: mempalace KnowledgeGraph → {UpstreamAgeKnowledgeGraph.__qualname__} ({STORE})"


def pytest_unconfigure(config):
    DATABASES.drop_all()
