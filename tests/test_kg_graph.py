"""AgeKnowledgeGraph behaviours beyond the parity run: construction, transactions, concurrency, snapshots.

Tests taking ``kg_db`` (or ``kg``) run on both KG stores (AGE and plain tables)."""

from __future__ import annotations

import re
import sqlite3
import threading

import psycopg
import pytest

from palace_pg.kg import AgeKnowledgeGraph, AgeStore, KgNotConfigured, read_entities, read_triples, stores
from palace_pg.marker import Marker


@pytest.fixture
def kg(kg_db, kg_store):
    with AgeKnowledgeGraph(dsn=kg_db) as graph:
        assert graph.store_name == kg_store
        yield graph


def test_db_path_finds_the_database_through_the_palace_marker(fresh_db, tmp_path, monkeypatch):
    monkeypatch.delenv("PALACE_PG_DSN", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    palace = tmp_path / "palace"
    palace.mkdir()
    Marker.for_target("p", fresh_db).write(palace)
    with AgeKnowledgeGraph(db_path=str(palace / "knowledge_graph.sqlite3")) as kg:
        kg.add_triple("Max", "child_of", "Alice")
        assert kg.db_path == str(palace / "knowledge_graph.sqlite3")
    with AgeKnowledgeGraph(dsn=fresh_db) as same:
        assert same.stats()["triples"] == 1


def test_palace_pg_dsn_overrides_and_absence_is_a_clear_error(fresh_db, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PALACE_PG_DSN", raising=False)
    with pytest.raises(KgNotConfigured, match="PALACE_PG_DSN"):
        AgeKnowledgeGraph(db_path=str(tmp_path / "x" / "knowledge_graph.sqlite3"))
    monkeypatch.setenv("PALACE_PG_DSN", fresh_db)
    with AgeKnowledgeGraph(db_path=str(tmp_path / "x" / "knowledge_graph.sqlite3")) as kg:
        assert kg.stats()["entities"] == 0


def _failing_insert(store: str):
    def insert_triple(self, row):
        raise RuntimeError("disk full")
    return type("FailingInsert", (stores.store_class(store),), {"insert_triple": insert_triple})


def test_rewrite_is_one_transaction(kg_db, kg_store):
    """Upstream's test_kg_rewrite_is_one_transaction, with the failure injected into the store."""
    with AgeKnowledgeGraph(dsn=kg_db) as kg:
        tid = kg.add_triple("Max", "plays", "chess", valid_from="2025-01-01")
    with AgeKnowledgeGraph(dsn=kg_db, store_factory=_failing_insert(kg_store)) as broken:
        with pytest.raises(RuntimeError):
            broken.rewrite(tid, "uses", "chess", at="2026-01-01T00:00:00Z")
    with AgeKnowledgeGraph(dsn=kg_db) as kg:
        (fact,) = kg.query_entity("Max")
        assert fact["predicate"] == "plays" and fact["current"] is True
        assert kg.stats()["triples"] == 1


def test_supersede_defaults_to_now_and_shares_the_boundary(kg):
    old = kg.add_triple("Bot", "uses_model", "A", valid_from="2026-01-01")
    new = kg.supersede("Bot", "uses_model", "A", "B")
    rows = {r["id"]: r for r in kg.dump_rows("triples")}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rows[new]["valid_from"])
    assert rows[old]["valid_to"] == rows[new]["valid_from"]
    with pytest.raises(ValueError, match="before valid_from"):
        kg.supersede("Bot", "uses_model", "B", "C", at="2020-01-01")


def test_concurrent_writers_create_one_fact(kg_db):
    """The graph-wide write lock makes 'check open fact, then insert' atomic across connections."""
    graphs = [AgeKnowledgeGraph(dsn=kg_db) for _ in range(4)]
    ids, barrier = [], threading.Barrier(len(graphs))

    def write(g):
        barrier.wait()
        for _ in range(5):
            ids.append(g.add_triple("Max", "knows", "Alice"))

    threads = [threading.Thread(target=write, args=(g,)) for g in graphs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g in graphs:
        g.close()
    assert len(set(ids)) == 1
    with psycopg.connect(kg_db) as conn:
        assert len(read_triples(conn)) == 1
        assert [e["rowid"] for e in read_entities(conn)] == [2, 1]  # alice, max: one rowid each


def test_missing_endpoint_rows_behave_like_sqlite_then_heal(kg):
    kg.apply_row("triples", {"id": "t_x", "subject": "ghost", "predicate": "haunts", "object": "house"})
    # sqlite joins entity rows for names: a triple with no entity row at either end is not returned.
    assert kg.query_relationship("haunts") == []
    assert kg.timeline() == [] and kg.timeline_total() == 1
    assert kg.stats()["entities"] == 0 and kg.stats()["triples"] == 1
    kg.add_entity("Ghost")
    kg.add_entity("House")
    assert kg.query_relationship("haunts")[0] == {
        "subject": "Ghost", "predicate": "haunts", "object": "House", "valid_from": None, "valid_to": None,
        "current": True}


def test_conn_is_a_read_only_sqlite_snapshot_closed_by_close(kg_db):
    kg = AgeKnowledgeGraph(dsn=kg_db)
    tid = kg.add_triple("Alice", "knows", "Bob", source_file="notes.md")
    snap = kg._conn()
    assert snap.execute("SELECT source_file FROM triples WHERE id = ?", (tid,)).fetchone()["source_file"] == "notes.md"
    with pytest.raises(sqlite3.OperationalError):
        snap.execute("DELETE FROM triples")
    kg.close()
    with pytest.raises(sqlite3.ProgrammingError):
        snap.execute("SELECT 1")
    assert kg.stats()["triples"] == 1  # reconnects after close, like the sqlite class


def test_synchronous_commit_can_be_relaxed(fresh_db, monkeypatch):
    monkeypatch.setenv("PALACE_PG_KG_SYNCHRONOUS_COMMIT", "off")
    with AgeKnowledgeGraph(dsn=fresh_db) as kg:
        assert kg._pg().execute("SHOW synchronous_commit").fetchone()[0] == "off"
    monkeypatch.delenv("PALACE_PG_KG_SYNCHRONOUS_COMMIT")
    with psycopg.connect(fresh_db) as conn:  # the server's own setting (off on a --fast test server)
        server_default = conn.execute("SHOW synchronous_commit").fetchone()[0]
    with AgeKnowledgeGraph(dsn=fresh_db) as kg:
        assert kg._pg().execute("SHOW synchronous_commit").fetchone()[0] == server_default


def test_one_hop_lookups_are_index_scans(fresh_db):
    kg = AgeKnowledgeGraph(dsn=fresh_db, store="age")
    for i in range(50):
        kg.add_triple(f"E{i}", "knows", f"E{(i + 1) % 50}")
    from palace_pg.kg.age_store import Q_INCOMING, Q_OUTGOING, Q_PREDICATE, Q_TRIPLE, _cypher, _params

    with psycopg.connect(fresh_db) as conn:
        conn.execute('SET enable_seqscan = off')  # tiny tables: make the planner show what it can use
        for body, params in ((Q_OUTGOING, {"id": "e1"}), (Q_INCOMING, {"id": "e1"}),
                             (Q_PREDICATE, {"predicate": "knows"}), (Q_TRIPLE, {"id": "x"})):
            plan = "\n".join(r[0] for r in conn.execute(
                psycopg.sql.SQL("EXPLAIN ") + _cypher(body), [_params(params)]))
            assert re.search(r"kg_entity_id|kg_triple_predicate|kg_triple_id", plan), plan
            assert "Seq Scan on \"Entity\"" not in plan and "Seq Scan on \"RELATES\"" not in plan, plan
    kg.close()


def test_tables_lookups_are_index_scans(fresh_db):
    from palace_pg.kg import tables_store as ts

    with AgeKnowledgeGraph(dsn=fresh_db, store="tables") as kg:
        for i in range(50):
            kg.add_triple(f"E{i}", "knows", f"E{(i + 1) % 50}", valid_from=f"2026-01-{i % 28 + 1:02d}")
    with psycopg.connect(fresh_db) as conn:
        conn.execute("SET enable_seqscan = off")
        for query, params, index in ((ts._OUTGOING, ["e1"], "kg_triples_subject"),
                                     (ts._INCOMING, ["e1"], "kg_triples_object"),
                                     (ts._PREDICATE, ["knows"], "kg_triples_predicate"),
                                     (ts._OPEN_TRIPLES, ["e1", "knows", "e2"], "kg_triples_open"),
                                     (ts._TIMELINE_ALL, [100, 0], "kg_triples_timeline"),
                                     (ts._GET_TRIPLE, ["x"], "kg_triples_pkey")):
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + query, params))
            assert index in plan, plan
            assert "Seq Scan on kg_triples" not in plan, plan


class _NoEntities(AgeStore):
    """Skips the entity inserts, so the edge insert finds no endpoint (a server-side failure)."""

    def insert_or_ignore_entities(self, rows):
        pass


def test_a_failed_pipelined_write_rolls_back_and_the_connection_recovers(fresh_db):
    with AgeKnowledgeGraph(dsn=fresh_db) as kg:
        kg.add_triple("Max", "knows", "Alice")
    with AgeKnowledgeGraph(dsn=fresh_db, store_factory=_NoEntities) as broken:
        for _ in range(6):  # past psycopg's prepare threshold: prepared statements skipped by the abort
            with pytest.raises(psycopg.errors.NotNullViolation):
                broken.add_triple("Ghost", "haunts", "House")
            assert broken._pg().info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert broken.add_triple("Max", "knows", "Alice")  # an open fact: no insert, still answers
    with AgeKnowledgeGraph(dsn=fresh_db) as kg:
        assert kg.stats()["triples"] == 1 and kg.stats()["entities"] == 2
        tid = kg.add_triple("Ghost", "haunts", "House")
        assert kg.query_entity("Ghost")[0]["object"] == "House"
    with psycopg.connect(fresh_db) as conn:
        assert {t["id"] for t in read_triples(conn)} >= {tid}
        assert [e["id"] for e in read_entities(conn)] == ["alice", "ghost", "house", "max"]


def test_add_triple_is_committed_when_it_returns(kg_db):
    """Each call is its own durable transaction: another connection sees it at once."""
    with AgeKnowledgeGraph(dsn=kg_db) as kg, psycopg.connect(kg_db, autocommit=True) as other:
        assert kg._pg().execute("SHOW synchronous_commit").fetchone()[0] == \
            other.execute("SHOW synchronous_commit").fetchone()[0]  # the server's own: not relaxed by the KG
        for i in range(3):
            tid = kg.add_triple("Max", "knows", f"Friend {i}", valid_from="2026-01-01")
            assert kg._pg().info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert [t["id"] for t in read_triples(other) if t["id"] == tid] == [tid]
        assert [r["rowid"] for r in kg.dump_rows("entities")] == [1, 2, 3, 4]
        assert [r["rowid"] for r in kg.dump_rows("triples")] == [1, 2, 3]
        # sqlite's idempotency: the open fact's id again, no new row, no new entity.
        assert kg.add_triple("Max", "knows", "Friend 0") == kg.dump_rows("triples")[0]["id"]
        assert kg.stats()["triples"] == 3 and kg.stats()["entities"] == 4


def test_add_triple_turns_a_placeholder_endpoint_into_the_entity(kg):
    kg.apply_row("triples", {"id": "t_x", "subject": "ghost", "predicate": "haunts", "object": "house"})
    tid = kg.add_triple("Ghost", "haunts", "House")
    assert tid == "t_x"  # the replicated fact is open: sqlite answers its id
    entities = kg.dump_rows("entities")
    assert [(e["id"], e["name"], e["rowid"]) for e in entities] == [("ghost", "Ghost", 1), ("house", "House", 2)]
    assert kg.query_relationship("haunts")[0]["subject"] == "Ghost"
