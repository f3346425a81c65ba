"""MEMPALACE_KG_BACKEND=age makes mempalace's own MCP kg_* tools and `mempalace kg` answer from AGE.

Each test runs a fresh interpreter whose site directory holds exactly the .pth
line palace_pg ships (``hook.PTH_LINE``), as an installed palace_pg would have,
against a migrated palace: its folder holds the marker and no sqlite file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from palace_pg.kg import AgeKnowledgeGraph, bulk_load, read_triples
from palace_pg.kg.hook import PTH_LINE
from palace_pg.marker import Marker

ENTITIES = [
    {"id": "max", "name": "Max", "type": "person", "properties": "{}", "created_at": "2026-01-01 00:00:00", "rowid": 1},
    {"id": "alice", "name": "Alice", "type": "person", "properties": "{}", "created_at": "2026-01-01 00:00:00", "rowid": 2},
    {"id": "chess", "name": "chess", "type": "unknown", "properties": "{}", "created_at": "2026-01-01 00:00:00", "rowid": 3},
]
TRIPLES = [
    {"id": "t1", "subject": "max", "predicate": "child_of", "object": "alice", "valid_from": "2015-04-01",
     "confidence": 1.0, "rowid": 1},
    {"id": "t2", "subject": "max", "predicate": "plays", "object": "chess", "valid_from": "2025-01-01",
     "confidence": 1.0, "source_closet": "closet_1", "rowid": 2},
]


@pytest.fixture
def palace(kg_db, kg_store, tmp_path) -> Path:
    """A migrated palace whose KG is in ``kg_store`` (every test here runs on both stores)."""
    with psycopg.connect(kg_db) as conn:
        bulk_load(conn, ENTITIES, TRIPLES)
        conn.commit()
    folder = tmp_path / "palace"
    folder.mkdir()
    Marker.for_target("test-palace", kg_db, kg_store=kg_store).write(folder)
    return folder


@pytest.fixture
def run_python(tmp_path):
    """Run code in a fresh interpreter with palace_pg's .pth active; returns (stdout, stderr, code)."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "palace_pg_kg.pth").write_text(PTH_LINE)
    home = tmp_path / "home"
    home.mkdir()

    def run(code: str, *, backend: str | None = "age", stdin: str = "", config: dict | None = None):
        env = {k: v for k, v in os.environ.items() if k not in ("PALACE_PG_DSN", "MEMPALACE_KG_BACKEND")}
        env["HOME"] = str(home)
        if backend is not None:
            env["MEMPALACE_KG_BACKEND"] = backend
        if config is not None:
            (home / ".mempalace").mkdir(exist_ok=True)
            (home / ".mempalace" / "config.json").write_text(json.dumps(config))
        prelude = f"import site, sys\nsite.addsitedir({str(site_dir)!r})\n"
        proc = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], input=stdin, env=env,
                              capture_output=True, text=True, timeout=180)
        return proc.stdout, proc.stderr, proc.returncode

    return run


WHICH_CLASS = """
import mempalace.knowledge_graph as m, mempalace.kg_normalize as n, mempalace.palace_audit as a
print(m.KnowledgeGraph.__module__, n.off_vocabulary_facts.__module__, a._read_kg.__module__)
"""


@pytest.mark.parametrize("backend, config, expected", [
    ("age", None, "palace_pg.kg.graph palace_pg.kg.hook palace_pg.kg.hook"),
    ("postgres", None, "palace_pg.kg.graph palace_pg.kg.hook palace_pg.kg.hook"),
    ("sqlite", None, "mempalace.knowledge_graph mempalace.kg_normalize mempalace.palace_audit"),
    (None, None, "mempalace.knowledge_graph mempalace.kg_normalize mempalace.palace_audit"),
    (None, {"kg_backend": "age"}, "palace_pg.kg.graph palace_pg.kg.hook palace_pg.kg.hook"),
    ("sqlite", {"kg_backend": "age"}, "mempalace.knowledge_graph mempalace.kg_normalize mempalace.palace_audit"),
])
def test_selection_follows_env_then_config(run_python, backend, config, expected):
    out, err, code = run_python(WHICH_CLASS, backend=backend, config=config)
    assert code == 0, err
    assert out.split() == expected.split()


def test_bindings_made_before_the_swap_are_updated(run_python):
    out, err, code = run_python("""
        import mempalace.mcp_server as s
        from palace_pg.kg import AgeKnowledgeGraph
        print("swapped:", s.KnowledgeGraph is AgeKnowledgeGraph)
    """)
    # (mempalace.mcp_server moves stdout onto stderr at import, to keep the protocol stream clean)
    assert code == 0 and "swapped: True" in out + err, out + err


def _rpc(*calls) -> str:
    lines = [{"jsonrpc": "2.0", "id": 0, "method": "initialize",
              "params": {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
             {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    for i, (name, args) in enumerate(calls, start=1):
        lines.append({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": name, "arguments": args}})
    return "\n".join(json.dumps(line) for line in lines) + "\n"


def _tool_results(stdout: str) -> dict:
    out = {}
    for line in stdout.splitlines():
        msg = json.loads(line)
        if msg.get("id"):
            out[msg["id"]] = json.loads(msg["result"]["content"][0]["text"])
    return out


def test_mcp_kg_tools_answer_from_age(run_python, palace, kg_db):
    stdin = _rpc(
        ("mempalace_kg_stats", {}),
        ("mempalace_kg_query", {"entity": "Max"}),
        ("mempalace_kg_add", {"subject": "Max", "predicate": "loves", "object": "Go", "valid_from": "2026-01-01"}),
        ("mempalace_kg_invalidate", {"subject": "Max", "predicate": "plays", "object": "chess", "ended": "2026-02-01"}),
        ("mempalace_kg_timeline", {"entity": "Max"}),
    )
    out, err, code = run_python(f"""
        sys.argv = ["mempalace-mcp", "--palace", {str(palace)!r}]
        from mempalace.mcp_server import main
        main()
    """, stdin=stdin)
    assert code == 0, err
    results = _tool_results(out)
    assert results[1]["entities"] == 3 and results[1]["triples"] == 2
    assert {f["object"] for f in results[2]["active_facts"]} == {"Alice", "chess"}
    assert results[3]["success"] is True
    assert [f["object"] for f in results[5]["timeline"]] == ["Alice", "chess", "Go"]
    assert not (palace / "knowledge_graph.sqlite3").exists()
    # The writes landed in PostgreSQL.
    with AgeKnowledgeGraph(dsn=kg_db) as kg:
        assert kg.query_entity("Max", as_of="2026-03-01") == [
            f | {"direction": "outgoing", "subject": "Max"} for f in kg.query_entity("Max", as_of="2026-03-01")]
        assert {(f["object"], f["current"]) for f in kg.query_entity("Max")} == {
            ("Alice", True), ("chess", False), ("Go", True)}


def test_cli_kg_normalize_reads_and_rewrites_age(run_python, palace, kg_db):
    out, err, code = run_python(f"""
        from mempalace.cli import main
        sys.argv = ["mempalace", "--palace", {str(palace)!r}, "kg", "normalize"]
        main()
    """)
    # Counting the facts is answered from AGE; proposing rewrites needs an LLM, absent here.
    assert "2 open facts use a predicate outside" in out, out + err

    plan = {"vocabulary": ["uses", "child_of"], "facts": [
        {"id": "t2", "subject": "Max", "old_predicate": "plays", "old_object": "chess",
         "predicate": "uses", "object": "chess"}]}
    out, err, code = run_python(f"""
        from mempalace.config import MempalaceConfig
        from mempalace.kg_normalize import save_normalize_plan
        save_normalize_plan(MempalaceConfig(palace_path={str(palace)!r}), {plan!r})
        from mempalace.cli import main
        sys.argv = ["mempalace", "--palace", {str(palace)!r}, "kg", "normalize", "--yes"]
        main()
    """)
    assert code == 0 and "Rewrote 1 fact(s)" in out, out + err
    with psycopg.connect(kg_db) as conn:
        rows = {t["predicate"]: t for t in read_triples(conn)}
    assert rows["plays"]["valid_to"] == rows["uses"]["valid_from"]
    assert rows["uses"]["source_closet"] == "closet_1" and rows["uses"]["valid_to"] is None


def test_sqlite_selection_leaves_mempalace_alone(run_python, palace):
    out, err, code = run_python(f"""
        from mempalace.cli import main
        sys.argv = ["mempalace", "--palace", {str(palace)!r}, "kg", "normalize"]
        main()
    """, backend="sqlite")
    assert code == 1 and "No knowledge graph at" in out, out + err


def test_audit_counts_come_from_age(run_python, palace):
    out, err, code = run_python(f"""
        import json
        from mempalace import palace_audit
        path = palace_audit.resolve_kg_path({str(palace)!r})
        print(json.dumps(palace_audit._read_kg(path)))
    """)
    assert code == 0, err
    report = json.loads(out)
    assert report["entities"] == 3 and report["triples"] == 2 and report["current_facts"] == 2
    assert report["distinct_predicates"] == 2 and report["one_off_predicates"] == 2
    assert report["path"].endswith("palace_pg.json")


def test_no_marker_and_no_dsn_is_a_clear_error(run_python, tmp_path):
    out, err, code = run_python(f"""
        from mempalace.knowledge_graph import KnowledgeGraph
        try:
            KnowledgeGraph(db_path={str(tmp_path / 'nowhere' / 'knowledge_graph.sqlite3')!r})
        except Exception as exc:
            print(type(exc).__name__)
            print(exc)
    """)
    assert code == 0, err
    assert out.splitlines()[0] == "KgNotConfigured"
    assert "MEMPALACE_KG_BACKEND=sqlite" in out


def test_wrapper_launcher_selects_age_without_the_pth(palace, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PALACE_PG_DSN", "MEMPALACE_KG_BACKEND")}
    env["HOME"] = str(tmp_path / "home")
    code = f"import sys; sys.argv = ['palace-pg-mempalace', '--palace', {str(palace)!r}, 'kg', 'normalize']\n" \
           "from palace_pg.kg.launch import mempalace_main; mempalace_main()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert "2 open facts use a predicate outside" in proc.stdout, proc.stdout + proc.stderr
