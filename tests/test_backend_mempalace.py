"""MemPalace itself on a palace served by the postgres backend: CLI search, MCP tools, search parity.

The palace is built by hand as the migration leaves one (marker in the folder,
tables in the database), so these tests do not wait for the migration engine.
Embeddings come from a tiny local OpenAI-compatible endpoint (MemPalace's
``openai-compat`` embedder) serving deterministic bag-of-words vectors: no
model download, and CLI and MCP subprocesses embed exactly as the test does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import psycopg
import pytest

from palace_pg.testing import backend as pg_testing

DIM = 64
WORD_RE = re.compile(r"\w+")


def embed(text: str) -> list[float]:
    vec = np.zeros(DIM, dtype=np.float64)
    for word in WORD_RE.findall(text.lower()):
        h = hashlib.sha256(word.encode()).digest()
        vec[h[0] % DIM] += 1.0
        vec[h[1] % DIM] += 0.5
    vec += 1e-3
    return (vec / np.linalg.norm(vec)).tolist()


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        payload = json.dumps({"object": "list", "model": body.get("model"),
                              "data": [{"object": "embedding", "index": i, "embedding": embed(t)}
                                       for i, t in enumerate(texts)]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def embed_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


TOPICS = {
    "alpha": ["postgres vector index tuning", "hnsw graph search recall", "pgvector iterative scan"],
    "beta": ["garden tomatoes and basil", "compost and soil health", "watering schedule for herbs"],
    "gamma": ["kafka stream partitions", "consumer group rebalancing", "exactly once delivery"],
}


def _closets(ids):
    closet_ids = [f"closet_{w}_room0_{i:02d}" for i, w in enumerate(TOPICS)]
    closet_docs = [f"{TOPICS[w][0]}|{w}|→{ids[i * 9]}" for i, w in enumerate(TOPICS)]
    closet_metas = [{"wing": w, "room": "room0", "source_file": f"/src/{w}/0.md", "drawer_count": 3} for w in TOPICS]
    return closet_ids, closet_docs, closet_metas


def _drawers():
    ids, docs, metas = [], [], []
    n = 0
    for wing, texts in TOPICS.items():
        for room_i, text in enumerate(texts):
            for chunk in range(3):
                doc = f"{text} note {chunk}: details about {text.split()[0]} and more {wing}"
                ids.append(f"drawer_{wing}_room{room_i}_{n:04d}")
                docs.append(doc)
                metas.append({"wing": wing, "room": f"room{room_i}", "source_file": f"/src/{wing}/{room_i}.md",
                              "chunk_index": chunk, "added_by": "mempalace", "filed_at": f"2026-01-0{1 + n % 9}T10:00:00",
                              "normalize_version": 2, "id_recipe": "v3"})
                n += 1
    return ids, docs, metas


@pytest.fixture
def env(tmp_path, embed_url, monkeypatch):
    values = {
        "HOME": str(tmp_path / "home"),
        "MEMPALACE_CONFIG_DIR": str(tmp_path / "config"),
        "MEMPALACE_EMBEDDING_MODEL": "openai-compat",
        "MEMPALACE_EMBEDDING_API_URL": embed_url,
        "MEMPALACE_EMBEDDING_API_MODEL": "hash64",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PALACE_PG_DSN", raising=False)
    (tmp_path / "home").mkdir()
    return {**os.environ, **values}


@pytest.fixture
def palace(tmp_path, fresh_db, env):
    """A migrated-looking palace: drawers and closets COPYed in, marker written, identity recorded."""
    path = tmp_path / "palace"
    pg_testing.build_palace(path, fresh_db, collections={"mempalace_drawers": DIM, "mempalace_closets": DIM},
                         model_name="openai-compat")
    ids, docs, metas = _drawers()
    closet_ids, closet_docs, closet_metas = _closets(ids)
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        from pgvector.psycopg import register_vector

        register_vector(conn)
        pg_testing.copy_rows(conn, "drawers", ids, docs, metas, np.array([embed(d) for d in docs], dtype=np.float32))
        pg_testing.copy_rows(conn, "closets", closet_ids, closet_docs, closet_metas,
                          np.array([embed(d) for d in closet_docs], dtype=np.float32))
    return path


def _mempalace(env, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "mempalace", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_detection_picks_postgres(palace, env):
    from mempalace.palace import resolve_backend_name

    assert resolve_backend_name(str(palace)) == "postgres"


def test_cli_search_and_status(palace, env):
    proc = _mempalace(env, "--palace", str(palace), "search", "hnsw graph recall", "--results", "3")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "hnsw graph search recall" in proc.stdout
    proc = _mempalace(env, "--palace", str(palace), "search", "soil compost", "--wing", "beta")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "compost and soil health" in proc.stdout and "kafka" not in proc.stdout
    proc = _mempalace(env, "--palace", str(palace), "status")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "27" in proc.stdout


def _mcp(env, palace, calls):
    """Run the MCP server over stdio, send initialize + tools/call requests, return the results by id."""
    proc = subprocess.Popen([sys.executable, "-m", "mempalace.mcp_server", "--palace", str(palace)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    messages = [{"jsonrpc": "2.0", "id": 0, "method": "initialize",
                 "params": {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}},
                {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    for i, (tool, arguments) in enumerate(calls, start=1):
        messages.append({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
    out, err = proc.communicate("\n".join(json.dumps(m) for m in messages) + "\n", timeout=180)
    replies = {}
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "id" in msg:
            replies[msg["id"]] = msg
    assert len(replies) == len(calls) + 1, err[-3000:]
    return replies


def _tool_json(reply):
    assert "result" in reply, reply
    assert not reply["result"].get("isError"), reply
    return json.loads(reply["result"]["content"][0]["text"])


def test_mcp_status_search_add_drawer(palace, env, fresh_db):
    replies = _mcp(env, palace, [
        ("mempalace_status", {}),
        ("mempalace_search", {"query": "consumer group rebalancing", "limit": 3}),
        ("mempalace_add_drawer", {"wing": "delta", "room": "notes", "content": "a brand new drawer about lighthouses"}),
        ("mempalace_search", {"query": "lighthouses", "limit": 1, "wing": "delta"}),
    ])
    status = _tool_json(replies[1])
    assert status["total_drawers"] == 27
    assert status["wings"] == {"alpha": 9, "beta": 9, "gamma": 9}
    hits = _tool_json(replies[2])["results"]
    assert hits and hits[0]["text"].startswith("consumer group rebalancing")
    added = _tool_json(replies[3])
    assert added.get("success") is True, added
    found = _tool_json(replies[4])["results"]
    assert found and "lighthouses" in found[0]["text"]
    with psycopg.connect(fresh_db) as conn:
        row = conn.execute("SELECT metadata, seq FROM mempalace.drawers WHERE id = %s", [added["drawer_id"]]).fetchone()
    assert row[0]["wing"] == "delta" and row[1] >= 27


def test_search_memories_matches_chroma_palace(palace, env, tmp_path):
    """Same rows and vectors in a Chroma palace: search_memories returns the same drawers."""
    from mempalace.backends.chroma import ChromaBackend
    from mempalace.searcher import search_memories

    chroma_path = tmp_path / "chroma_palace"
    ids, docs, metas = _drawers()
    chroma = ChromaBackend().get_collection(str(chroma_path), "mempalace_drawers", create=True)
    chroma.upsert(ids=ids, documents=docs, metadatas=metas, embeddings=[embed(d) for d in docs])
    closet_ids, closet_docs, closet_metas = _closets(ids)
    closets = ChromaBackend().get_collection(str(chroma_path), "mempalace_closets", create=True)
    closets.upsert(ids=closet_ids, documents=closet_docs, metadatas=closet_metas,
                   embeddings=[embed(d) for d in closet_docs])
    queries = ["vector index", "tomatoes basil", "kafka partitions", "soil", "exactly once", "iterative scan"]
    differences = []
    for q in queries:
        for wing in (None, "alpha"):
            pg = search_memories(q, str(palace), wing=wing, n_results=5)
            ch = search_memories(q, str(chroma_path), wing=wing, n_results=5)
            pg_ids = [h["drawer_id"] for h in pg.get("results", [])]
            ch_ids = [h["drawer_id"] for h in ch.get("results", [])]
            if pg_ids != ch_ids:
                differences.append((q, wing, pg_ids, ch_ids))
    # Same drawers, closets and vectors: vector ranking, closet boosts (lexical_search) and the BM25 re-rank agree.
    assert differences == []
