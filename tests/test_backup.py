"""Backup and restore of a migrated palace, against the real server: every row, the graph, MemPalace's answers.

One generated palace is migrated once; ``palace-pg backup`` / ``palace-pg restore`` carry it into a fresh
database, and the copy must be the same palace: the fingerprint of every table, MemPalace's backend and the
AGE knowledge graph answering as before, ``verify`` against the source palace passing, and writes working.
The README's plain pg_dump / pg_restore steps are run as written.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pytest
from mempalace.backends import PalaceRef
from palace_pg.testing.chroma import copy_of
from palaces import generated

from palace_pg import backup, engine
from palace_pg.backend import PostgresBackend
from palace_pg.cli import main
from palace_pg.dsn import connect
from palace_pg.kg import AgeKnowledgeGraph
from palace_pg.marker import Marker
from palace_pg.phases.base import MigrationOptions
from palace_pg.target_db import state
from palace_pg.target_db.fingerprint import target_fingerprint

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def databases(pg_server, tmp_path_factory):
    """Made here, dropped at the end: the module shares one migration."""
    made: list[str] = []

    def make(prefix: str, *, extensions: bool = True) -> str:
        name = f"t_{prefix}_{uuid.uuid4().hex[:8]}"
        made.append(name)
        if extensions:
            return pg_server.create_database(name)
        with psycopg.connect(pg_server.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a fixed, generated identifier
        return pg_server.url(name)

    yield make
    for name in made:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def migrated(databases, tmp_path_factory):
    """(palace, source DSN, archive): a generated palace migrated and backed up through the CLI."""
    tmp = tmp_path_factory.mktemp("backup")
    palace = copy_of(generated(300, 7), tmp / "src")
    dsn = databases("bk_src")
    assert engine.migrate(MigrationOptions(palace=palace, dsn=dsn, work_dir=tmp / "work",
                                           recall_queries=10))["status"] == "done"
    archive = tmp / "palace.dump"
    assert main(["backup", "--dsn", dsn, str(archive)]) == 0
    return palace, dsn, archive


@pytest.fixture(scope="module")
def restored(migrated, databases) -> str:
    _palace, _dsn, archive = migrated
    target = databases("bk_dst")  # as `palace-pg db create` makes it: vector and age already there
    assert main(["restore", str(archive), "--dsn", target]) == 0
    return target


def _fingerprint(dsn: str) -> dict:
    with connect(dsn) as conn:
        return target_fingerprint(conn)


def _backend_answers(dsn: str, folder: Path) -> dict:
    """MemPalace's backend, opened through a marker as a migrated palace is: counts, rows, kNN answers."""
    with psycopg.connect(dsn) as conn:
        palace_id = state.get_meta(conn, "palace_id")
    folder.mkdir(parents=True, exist_ok=True)
    Marker.for_target(palace_id, dsn).write(folder)  # a folder of its own: the source palace is never written
    backend = PostgresBackend()
    try:
        ref = PalaceRef(id=str(folder), local_path=str(folder))
        out = {}
        for name in ("mempalace_drawers", "mempalace_closets"):
            col = backend.get_collection(palace=ref, collection_name=name, create=False)
            rows = col.get(include=["documents", "metadatas", "embeddings"])
            order = np.argsort(rows.ids)
            probes = np.asarray(rows.embeddings, dtype=np.float32)[order[:5]]
            hits = col.query(query_embeddings=probes, n_results=5, include=["distances"])
            out[name] = {
                "count": col.count(),
                "rows": sorted(zip(rows.ids, rows.documents, map(repr, rows.metadatas))),
                "vectors": np.asarray(rows.embeddings, dtype=np.float32)[order].tobytes(),
                "knn": [list(ids) for ids in hits.ids],
                "distances": np.round(np.asarray(hits.distances, dtype=np.float64), 6).tolist(),
                "filtered": sorted(col.get(where={"wing": rows.metadatas[0]["wing"]}).ids),
            }
        return out
    finally:
        backend.close()


def _kg_answers(dsn: str) -> dict:
    with AgeKnowledgeGraph(dsn=dsn) as kg:
        names = sorted({t["subject"] for t in kg.timeline(limit=1000)})[:10]
        return {"stats": kg.stats(), "timeline": kg.timeline(limit=1000),
                "entities": {n: kg.query_entity(n, direction="both") for n in names}}


def test_restore_gives_back_the_same_palace(migrated, restored, tmp_path):
    palace, source, _archive = migrated
    assert _fingerprint(restored) == _fingerprint(source)
    answers = _backend_answers(source, tmp_path / "orig")
    assert answers["mempalace_drawers"]["count"] > 0 and answers["mempalace_drawers"]["filtered"]
    assert _backend_answers(restored, tmp_path / "copy") == answers
    before, after = _kg_answers(source), _kg_answers(restored)
    assert before["stats"]["triples"] > 0 and before["entities"]
    assert after == before
    report = engine.verify(MigrationOptions(palace=palace, dsn=restored, work_dir=tmp_path / "work",
                                            recall_queries=10))
    assert report["differences"] == 0


def test_the_restored_graph_takes_writes(restored):
    with AgeKnowledgeGraph(dsn=restored) as kg:
        before = kg.stats()
        kg.add_triple("Restored Rita", "keeps", "the backup", valid_from="2026-12-01")
        after = kg.stats()
        assert after["triples"] == before["triples"] + 1
        assert [f["object"] for f in kg.query_entity("Restored Rita")] == ["the backup"]
    with psycopg.connect(restored) as conn:  # no vertex id was handed out twice (sequences restored)
        dupes = conn.execute("SELECT count(*) - count(DISTINCT id) FROM mempalace_kg._ag_label_vertex").fetchone()
        assert dupes[0] == 0


def test_restore_refuses_a_database_that_holds_a_palace(migrated):
    _palace, source, archive = migrated
    before = _fingerprint(source)
    with pytest.raises(backup.BackupError, match="not empty"):
        backup.restore(archive, source)
    assert _fingerprint(source) == before


def test_a_failed_restore_leaves_nothing(databases, tmp_path):
    target = databases("bk_bad")
    broken = tmp_path / "broken.dump"
    broken.write_bytes(b"PGDMP" + b"\0" * 64)
    with pytest.raises(backup.BackupError, match="pg_restore failed"):
        backup.restore(broken, target)
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT to_regnamespace('mempalace')").fetchone()[0] is None


def _readme_sql(dbname: str) -> str:
    block = re.search(r"```sql\n(.*?)```", README.read_text(), re.DOTALL).group(1)
    assert "ag_graph" in block
    return block.replace('"D2"', f'"{dbname}"')


def test_plain_pg_restore_with_the_readme_steps(pg_server, migrated, databases):
    """`pg_restore` alone leaves the graph unreachable; the README's SQL makes it the same palace."""
    _palace, source, archive = migrated
    target = databases("bk_plain", extensions=False)  # `createdb D2`: an empty database
    subprocess.run([pg_server.binary("pg_restore"), "--no-owner", "-d", target, str(archive)], check=True,
                   capture_output=True)
    with psycopg.connect(target) as conn:
        conn.execute("SET search_path = ag_catalog, public")
        with pytest.raises(psycopg.Error, match="graph with oid"):
            conn.execute("SELECT * FROM cypher('mempalace_kg', $$ MATCH (n) RETURN count(n) $$) AS (c agtype)")
    dbname = psycopg.conninfo.conninfo_to_dict(target)["dbname"]
    subprocess.run([pg_server.binary("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d", target, "-c",
                    _readme_sql(dbname)], check=True, capture_output=True)
    assert _fingerprint(target) == _fingerprint(source)
