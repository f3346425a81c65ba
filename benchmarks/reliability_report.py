"""The reliability and security figures for the README, from one run (issue #9).

    python benchmarks/reliability_report.py [--points 10] [--drawers 1500] [--batch-size 200] [--seed 1]
        [--load-seconds 20] [--load-workers 2] [--no-outsiders] [--no-backup] [--no-sync-kills] [--no-load]

Prints a table and a JSON line:

* kill points survived: N/N identical (``kill_resume.Harness``: SIGKILL at named
  crash points and random instants, resumed until done, the target fingerprint
  equal to a clean run's; plus the server stopped in immediate mode mid-batch
  and an INVALID HNSW index rebuilt);
* rows compared by hash: every row every completed run's verify phase compared
  (documents, type-strict metadata, bit-exact vectors, every KG column), and the
  mismatches (0);
* source palace hash unchanged: k/k migrator processes (every file, WAL
  sidecars included, hashed after each), the killed and resumed ones included;
* canary password leaks (0): a migration, status, a re-run and the runbooks
  with the embedded server's real password (in the DSN and in PGPASSWORD: the
  server asks for it, so a made-up canary would be refused), and malformed or
  unreachable DSNs holding a canary; both are searched for; scanned: stdout, stderr and -vv logs, error messages and
  whole tracebacks, the work folder, every table palace_pg wrote, the server
  log, and the runbooks' notebooks, logs, results and manifest;
* injection strings round-tripped n/n: as drawer ids, documents, metadata keys
  and values, and as KG entity names, types, properties, predicates and source
  fields, through a migration and through the AGE KG API; nothing else changed;
* fidelity cases k/k: 1 vs 1.0 vs true, int64 extremes, float64 subnormals,
  empty strings, odd keys, missing wing/room, Unicode, a long document, every
  vector bit-exact (-0.0 and float32 subnormals included), and NUL / NaN rows
  rejected with a reason and reported, never dropped.

And issue 15's (benchmarks/reliability_round_two.py; each can be skipped with its ``--no-*`` flag):

* local users other than the owner that can connect (0): ``nobody`` on TCP, TCP with the owner's URL,
  the socket and a guessed password (needs root and runuser, else "not checked");
* backup → restore differences (0): palace_pg.backup into a fresh database, every table fingerprinted,
  ``palace-pg verify`` of the copy against the source palace;
* the crash window between the schema phase and palace_id: SIGKILL at ``phase-done:1``, palace_id present
  after the rerun, identical to the clean run;
* sync kill points survived N/N identical: an online migration with MemPalace writing, more writes, a
  SIGKILL at each sync crash point, rerun, fingerprint equal to an uninterrupted sync's, source unchanged;
* MemPalace under load (load_mempalace.run_load, last: it stops the server once): ops/s, p50/p99,
  acknowledged writes lost (0), errors outside the restart window (0).

Exit 0 only when every figure is perfect.  Databases are named ``rel_<pid>_*``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import random
import shutil
import sqlite3
import struct
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psycopg
from psycopg import sql

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import reliability_round_two as round_two  # noqa: E402
from kill_resume import Harness, extras_ok, run, summary_of  # noqa: E402

from palace_pg.dsn import connect  # noqa: E402
from palace_pg.kg import AgeKnowledgeGraph, read_entities, read_triples  # noqa: E402
from palace_pg.kg.store import ENTITY_COLUMNS, TRIPLE_COLUMNS  # noqa: E402
from palace_pg.server import EmbeddedServer  # noqa: E402
from palace_pg.source.kg_reader import read_kg  # noqa: E402
from palace_pg.testing.chroma import build_palace, unit_vectors  # noqa: E402
from palace_pg.testing.injection import HOSTILE  # noqa: E402  (the injection corpus the tests use)
from palace_pg.testing.runbooks import CANARY, FAST  # noqa: E402  (the canary and runbook settings the tests use)

INJECTION = list(dict.fromkeys(HOSTILE + ["'; DROP TABLE x; --", "x' OR true OR '", "`tick` $tag$ \\'", "\\\\"]))

# DSNs that hold the canary and cannot work: unreachable, unparseable, or of a foreign scheme
BAD_DSNS = [
    f"postgresql://postgres:{CANARY}@127.0.0.1:1/palace",
    f"host=127.0.0.1 port=1 user=postgres password={CANARY} dbname=palace",
    f"postgresql://postgres@127.0.0.1:1/palace?password={CANARY}",
    f"host=127.0.0.1 port=1 password='{CANARY}' dbname=palace broken='",
    f"postgresql:/u:{CANARY}@h/db",
    f"postgresql+asyncpg://postgres:{CANARY}@127.0.0.1:1/palace",
    f"host=127.0.0.1 port=1 password='{CANARY} with spaces' dbname=palace",
]


# ── canary scanning ─────────────────────────────────────────────────────────────────────────


class CanaryScan:
    """Counts the artifacts scanned and the ones holding the canary (by label, never the value)."""

    def __init__(self) -> None:
        self.artifacts = 0
        self.bytes = 0
        self.leaks: list[str] = []
        self.scenarios = 0
        self.raw_echoes = 0  # control: bad DSNs whose raw psycopg/libpq error does show the canary
        self.secrets: tuple[bytes, ...] = (CANARY.encode(),)  # plus the server's password (canary_section)

    def text(self, label: str, text: str | bytes) -> None:
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        self.artifacts += 1
        self.bytes += len(data)
        if any(secret in data for secret in self.secrets):
            self.leaks.append(label)

    def tree(self, label: str, root: Path) -> None:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                self.text(f"{label}/{path.relative_to(root)}", path.read_bytes())

    def exception(self, label: str, exc: BaseException) -> None:
        """The message, the repr and the whole traceback with its chained causes, as a user would see them."""
        self.text(label, "".join(traceback.format_exception(exc)) + repr(exc) + str(exc))

    def database(self, label: str, dsn: str) -> None:
        """Every table palace_pg wrote (its schema and the graph), as text."""
        with psycopg.connect(dsn) as conn:
            tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                                  "WHERE table_schema IN ('mempalace', 'mempalace_kg') ORDER BY 1, 2").fetchall()
            for schema_, table in tables:
                rows = conn.execute(sql.SQL("SELECT t::text FROM {}.{} t").format(
                    sql.Identifier(schema_), sql.Identifier(table))).fetchall()
                self.text(f"{label}:{schema_}.{table}", "\n".join(r[0] for r in rows))


@contextmanager
def captured_logs():
    """Every palace_pg/papermill log record of the block, at DEBUG, as text."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


@contextmanager
def env(**values):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def canary_section(h: Harness, scan: CanaryScan, tmp: Path, runbooks: bool) -> dict:
    """Leaves the migrated database ``canary`` behind for the fidelity checks; returns its DSN and facts."""
    server = h.server
    log_start = server.log_file.stat().st_size if server.log_file.exists() else 0
    plain = h.database("canary")
    from palace_pg.server import auth

    password = auth.read_password(server.passfile)  # accepted by the locked server, unlike a made-up canary
    scan.secrets += (password.encode(),)
    with_password = plain.replace("postgres@", f"postgres:{password}@", 1)
    assert password in with_password
    # 1. a migration, a re-run and status with the password in the DSN, logging at -vv
    scan.scenarios += 1
    rc, out, err = h.migrate(with_password, label="canary migration", extra=("-vv",))
    migrated = rc == 0
    scan.text("migrate -vv stdout", out)
    scan.text("migrate -vv stderr", err)
    rc2, out, err = h.migrate(with_password, label="canary re-run", extra=("-vv",))
    scan.text("re-run -vv stdout+stderr", out + err)
    for cmd in (["-vv", "status", "--json", "--dsn", with_password], ["-vv", "status"]):
        rc3, out, err = run([sys.executable, "-m", "palace_pg.cli", *cmd],
                            env={"PALACE_PG_DSN": with_password, "PGPASSWORD": password})
        scan.text(f"{' '.join(cmd[:2])} stdout+stderr", out + err)
    scan.tree("work folder", h.work)
    scan.database("target tables", plain)
    # 2. DSNs that fail, holding the canary: CLI output and in-process tracebacks
    from palace_pg import engine
    from palace_pg.phases.base import MigrationOptions
    from palace_pg.runbook import evidence

    for i, bad in enumerate(BAD_DSNS):
        scan.scenarios += 1
        try:  # the control: what psycopg/libpq say without palace_pg in between
            psycopg.connect(bad, connect_timeout=3).close()
        except Exception as exc:
            scan.raw_echoes += CANARY in "".join(traceback.format_exception(exc))
        rc, out, err = run([sys.executable, "-m", "palace_pg.cli", "-vv", "migrate", "--palace", str(h.palace),
                            "--dsn", bad, "--work-dir", str(h.work), "--no-progress"])
        h.watch.check(f"failed migrate, bad DSN {i}")
        scan.text(f"bad DSN {i}: CLI stdout+stderr (exit {rc})", out + err)
        for what, call in (("connect", lambda: connect(bad)),
                           ("engine.migrate", lambda: engine.migrate(MigrationOptions(
                               palace=h.palace, dsn=bad, work_dir=h.work))),
                           ("run_runbooks", lambda: evidence.run_runbooks(h.palace, tmp / f"ev-bad-{i}", dsn=bad))):
            with captured_logs() as logs:
                try:
                    call()
                    scan.leaks.append(f"bad DSN {i}: {what} did not fail")
                except Exception as exc:  # every failure shape: the text a user would see is what is scanned
                    scan.exception(f"bad DSN {i}: {what} traceback", exc)
            scan.text(f"bad DSN {i}: {what} logs", logs.getvalue())
        if (tmp / f"ev-bad-{i}").exists():
            scan.tree(f"bad DSN {i}: evidence", tmp / f"ev-bad-{i}")
    # 3. the runbooks with the canary as PGPASSWORD: notebooks, logs, results, manifest
    rb = {}
    if runbooks:
        scan.scenarios += 1
        rb_dsn = h.database("runbooks")
        ev = tmp / "evidence"
        with env(PGPASSWORD=password), captured_logs() as logs:
            try:
                result = evidence.run_runbooks(h.palace, ev, dsn=rb_dsn, confirm=True, parameters=FAST,
                                               secret_values=(CANARY, password))
                rb = {"ok": result["ok"], "failed": result["failed"]}
                scan.text("run_runbooks result", json.dumps(result, default=str))
            except Exception as exc:  # SecretLeak: the library caught a leak and archived nothing
                rb = {"ok": False, "failed": type(exc).__name__}
                scan.leaks.append(f"run_runbooks raised {type(exc).__name__}")
                scan.exception("run_runbooks traceback", exc)
        h.watch.check("runbooks (01 → 02 → 03)")
        scan.text("run_runbooks logs", logs.getvalue())
        scan.tree("evidence", ev)
        scan.database("runbooks target tables", rb_dsn)
        h.drop("runbooks")
    if server.log_file.exists():
        with open(server.log_file, "rb") as f:
            f.seek(log_start)
            scan.text("server log", f.read())
    return {"dsn": plain, "migrated": migrated, "rerun_exit": rc2, "runbooks": rb}


# ── fidelity ────────────────────────────────────────────────────────────────────────────────


def _bits(value) -> object:
    """A value with floats replaced by their IEEE-754 bits: equal only when identical, type included."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value).hex())
    return (type(value).__name__, value)


def _same(a: dict | None, b: dict | None) -> bool:
    return a is not None and b is not None and set(a) == set(b) and all(_bits(a[k]) == _bits(b[k]) for k in a)


def _target_vectors(conn, table: str) -> dict[str, bytes]:
    """id → float32 little-endian bytes, from pgvector's binary form (big-endian after a 4-byte header)."""
    rows = conn.execute(sql.SQL("SELECT id, vector_send(embedding) FROM mempalace.{}").format(
        sql.Identifier(table))).fetchall()
    return {rid: np.frombuffer(bytes(b)[4:], dtype=">f4").astype("<f4").tobytes() for rid, b in rows}


def fidelity_generated(palace: Path, facts: dict, dsn: str, tmp: Path) -> list[dict]:
    """The generator's tricky rows and every vector, source (a copy read by chromadb) against target."""
    import chromadb
    from chromadb.config import Settings

    copy = tmp / "fidelity-source-copy"
    shutil.copytree(palace, copy)
    client = chromadb.PersistentClient(path=str(copy), settings=Settings(anonymized_telemetry=False))
    got = client.get_collection("mempalace_drawers").get(include=["documents", "metadatas", "embeddings"])
    src = {rid: (doc, meta, np.asarray(vec, dtype="<f4").tobytes())
           for rid, doc, meta, vec in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"])}
    del client
    with psycopg.connect(dsn) as conn:
        tgt = {rid: (doc, meta) for rid, doc, meta in
               conn.execute("SELECT id, document, metadata FROM mempalace.drawers").fetchall()}
        vectors = _target_vectors(conn, "drawers")
        jsonb_types = dict(conn.execute(
            "SELECT id, jsonb_typeof(metadata -> 'priority') FROM mempalace.drawers WHERE metadata ? 'priority'"
        ).fetchall())
    tricky = facts["tricky"]
    cases = []

    def case(name: str, ok: bool, detail: str) -> None:
        cases.append({"case": name, "ok": bool(ok), "detail": detail})

    def row_equal(key: str) -> bool:
        rid = tricky[key]
        return rid in tgt and tgt[rid][0] == src[rid][0] and _same(src[rid][1], tgt[rid][1])

    prio = [tgt[tricky[k]][1]["priority"] for k in ("priority_int", "priority_float", "priority_bool")]
    case("typed metadata 1 vs 1.0 vs true",
         all(row_equal(k) for k in ("priority_int", "priority_float", "priority_bool"))
         and [type(v) for v in prio] == [int, float, bool]
         and [jsonb_types[tricky[k]] for k in ("priority_int", "priority_float", "priority_bool")]
         == ["number", "number", "boolean"],
         f"read back as {prio!r} ({', '.join(type(v).__name__ for v in prio)})")
    ext = {**tgt[tricky["int64_max"]][1], **tgt[tricky["int64_min"]][1]}
    case("int64 extremes", row_equal("int64_max") and row_equal("int64_min")
         and ext["counter_neg"] == -(2**63 - 1) and {tgt[tricky[k]][1]["counter"] for k in ("int64_max", "int64_min")}
         == {2**63 - 1, -(2**63)}, "2^63-1 and -2^63 as int")
    case("float64 subnormal and max, bit-exact", row_equal("float_extremes"),
         "5e-324, -5e-324, 1.7976931348623157e308")
    case("empty string kept (not NULL)", row_equal("empty_strings") and tgt[tricky["empty_strings"]][1]["note"] == "",
         "note = ''")
    case("keys with quotes and $$", row_equal("odd_key"), "'label \"quoted\" $$dollar$$'")
    case("emoji, U+2028/U+2029", row_equal("unicode"), "document and metadata")
    long_doc = tgt[tricky["long_document"]][0]
    case("long document", row_equal("long_document"), f"{len(long_doc):,} characters")
    no_wing_src = {r for r, (_, m, _) in src.items() if "wing" not in (m or {})}
    no_wing_tgt = {r for r, (_, m) in tgt.items() if "wing" not in (m or {})}
    case("missing wing/room carried as missing", no_wing_src == no_wing_tgt and bool(no_wing_src),
         f"{len(no_wing_src)} rows without wing")
    same_rows = sum(1 for r in src if r in tgt and tgt[r][0] == src[r][0] and _same(src[r][1], tgt[r][1]))
    case("every document and metadata map", same_rows == len(src) == len(tgt), f"{same_rows}/{len(src)} rows")
    exact = sum(1 for r in src if vectors.get(r) == src[r][2])
    case("every vector bit-exact", exact == len(src) == len(vectors), f"{exact}/{len(src)} rows")
    probe = facts["probe_vector"]
    comps = np.frombuffer(vectors[probe["id"]], dtype="<f4")
    bits = {i: int(comps[int(i)].view(np.uint32)) for i in probe["components"]}
    signed_zero = any(c == 0 and np.signbit(c) for c in comps)
    subnormal = any(0 < abs(c) < np.finfo(np.float32).tiny for c in comps)
    case("float32 -0.0 and subnormals bit-exact", bits == {k: int(v) for k, v in probe["components"].items()}
         and signed_zero and subnormal, f"components {sorted(bits)} as uint32 {list(bits.values())}")
    return cases


# ── the hostile palace: injection strings and rows PostgreSQL cannot store ──────────────────

REJECTS = {  # id → (document, metadata); the vectors of *_vector rows are damaged in the queue after the build
    "rej_nul_document": ("a\x00b", {"wing": "w"}),
    "rej_nul_metadata_value": ("fine", {"wing": "w", "k": "x\x00y"}),
    "rej_nul_metadata_key": ("fine", {"wing": "w", "k\x00ey": "v"}),
    "rej_nan_vector": ("fine", {"wing": "w"}),
    "rej_inf_vector": ("fine", {"wing": "w"}),
}
# NaN/Infinity as a metadata value cannot be in a palace: chromadb drops the key when it stores the row
# (sqlite has no NaN), so the loader's check for it is never reached from a real palace.


def _drawer_id(i: int, value: str) -> str:
    return f"inj{i:03d} {value}"


def build_hostile_palace(path: Path) -> Path:
    vecs = unit_vectors(40 + len(INJECTION) + len(REJECTS), seed=11)
    rows = [(f"drawer_w_r_{i:024x}", f"document {i}", {"wing": "w", "room": "r", "chunk_index": i}, vecs[i])
            for i in range(40)]
    for i, value in enumerate(INJECTION):
        rows.append((_drawer_id(i, value), value, {"wing": value, "room": value, f"k{i} {value}": value},
                     vecs[40 + i]))
    for j, (rid, (doc, meta)) in enumerate(REJECTS.items()):
        rows.append((rid, doc, meta, vecs[40 + len(INJECTION) + j]))
    build_palace(path, rows, kg=False)
    # NaN/Infinity in a vector: chromadb refuses them on add, so they are written where a damaged palace holds them
    with sqlite3.connect(path / "chroma.sqlite3") as db:
        for rid, bad in (("rej_nan_vector", np.nan), ("rej_inf_vector", np.inf)):
            blob = db.execute("SELECT vector FROM embeddings_queue WHERE id = ?", [rid]).fetchone()[0]
            vec = np.frombuffer(blob, dtype="<f4").copy()
            vec[0] = bad
            db.execute("UPDATE embeddings_queue SET vector = ? WHERE id = ?", [vec.tobytes(), rid])
    db.close()
    from mempalace.knowledge_graph import KnowledgeGraph

    kg = KnowledgeGraph(str(path / "knowledge_graph.sqlite3"))
    for i, value in enumerate(INJECTION):
        kg.add_entity(value, entity_type=value, properties={value: value})
        kg.add_triple(value, value, f"obj {i}", valid_from="2026-01-01", source_closet=value, source_file=value,
                      source_drawer_id=value, adapter_name=value)
    kg.close()
    return path


def _shape(conn) -> dict:
    """What 'nothing else changed' compares: graph counts, the tables that exist, the sentinel table."""
    return {
        "vertices": conn.execute('SELECT count(*) FROM mempalace_kg."Entity"').fetchone()[0],
        "edges": conn.execute('SELECT count(*) FROM mempalace_kg."RELATES"').fetchone()[0],
        "tables": [f"{s}.{t}" for s, t in conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN "
            "('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall()],
        "sentinel": conn.execute("SELECT v FROM public.x").fetchall(),
    }


def _layout(conn) -> dict:
    """The tables outside palace_pg's schemas, and palace_pg's own (collection tables, which vary, left out)."""
    collections = set()
    if conn.execute("SELECT to_regclass('mempalace.collections')").fetchone()[0]:
        collections = {r[0] for r in conn.execute("SELECT table_name FROM mempalace.collections")}
    out: dict[str, list[str]] = {"outside": [], "palace_pg": []}
    for s, t in conn.execute("SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema "
                             "NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2").fetchall():
        if s not in ("mempalace", "mempalace_kg"):
            out["outside"].append(f"{s}.{t}")
        elif not (s == "mempalace" and t in collections):
            out["palace_pg"].append(f"{s}.{t}")
    return out


def _sentinel(dsn: str) -> None:
    """A table named x (what `'; DROP TABLE x; --` aims at) holding one row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.x (v text)")
        conn.execute("INSERT INTO public.x VALUES ('still here')")


def injection_and_rejects(server: EmbeddedServer, watch_runs: list, tmp: Path, batch: int,
                          reference: list[str]) -> tuple[dict, list[dict], Harness]:
    palace = build_hostile_palace(tmp / "hostile" / "palace")
    h = Harness(server, palace, tmp / "hostile-work", batch, prefix="rel")
    watch_runs.append(h.watch)
    dsn = h.database("injection")
    _sentinel(dsn)
    with psycopg.connect(dsn) as conn:
        outside_before = _layout(conn)["outside"]
    rc, out, err = h.migrate(dsn, label="hostile palace")
    summary = summary_of(out)
    verify = summary.get("results", {}).get("verify", {})
    kg_copy = tmp / "hostile-kg.sqlite3"
    shutil.copy2(palace / "knowledge_graph.sqlite3", kg_copy)
    for suffix in ("-wal", "-shm"):
        if (palace / f"knowledge_graph.sqlite3{suffix}").exists():
            shutil.copy2(palace / f"knowledge_graph.sqlite3{suffix}", f"{kg_copy}{suffix}")
    src_entities, src_triples = read_kg(kg_copy)
    with psycopg.connect(dsn) as conn:
        drawers = {rid: (doc, meta, wing, room) for rid, doc, meta, wing, room in conn.execute(
            "SELECT id, document, metadata, wing, room FROM mempalace.drawers").fetchall()}
        rejects = {rid: (reason, json.loads(bytes(payload)), vector) for rid, reason, payload, vector in conn.execute(
            "SELECT id, reason, payload, vector FROM mempalace.rejects").fetchall()}
        tgt_entities = {e["id"]: e for e in read_entities(conn)}
        tgt_triples = {t["id"]: t for t in read_triples(conn)}
        shape = {**_shape(conn), **_layout(conn)} if rc == 0 else {}
    cols_e, cols_t = ("rowid", *ENTITY_COLUMNS), ("rowid", *TRIPLE_COLUMNS)
    kg_equal = ({e["id"]: {c: e[c] for c in cols_e} for e in src_entities}
                == {k: {c: e[c] for c in cols_e} for k, e in tgt_entities.items()}
                and {t["id"]: {c: t[c] for c in cols_t} for t in src_triples}
                == {k: {c: t[c] for c in cols_t} for k, t in tgt_triples.items()})
    by_name = {e["name"]: e for e in tgt_entities.values()}
    by_closet = {t["source_closet"]: t for t in tgt_triples.values()}
    migrated_ok = []
    for i, value in enumerate(INJECTION):
        d = drawers.get(_drawer_id(i, value))
        e, t = by_name.get(value), by_closet.get(value)
        migrated_ok.append(
            d is not None and d[0] == value and d[1] == {"wing": value, "room": value, f"k{i} {value}": value}
            and d[2] == value and d[3] == value
            and e is not None and e["type"] == value and e["properties"] == json.dumps({value: value})
            and t is not None and all(t[c] == value for c in ("source_file", "source_drawer_id", "adapter_name"))
            and t["subject"] == e["id"])
    unchanged = bool(shape) and shape["sentinel"] == [("still here",)] and kg_equal \
        and shape["vertices"] == len(src_entities) and shape["edges"] == len(src_triples) \
        and shape["outside"] == outside_before and shape["palace_pg"] == reference
    api = _through_the_api(server, h)
    injection = {
        "strings": len(INJECTION),
        "migration_round_tripped": sum(migrated_ok),
        "migration_failed": [v for v, ok in zip(INJECTION, migrated_ok) if not ok],
        "migration_exit": rc, "migration_differences": verify.get("differences"),
        "migration_nothing_else_changed": unchanged,
        "kg_rows_equal_by_id": kg_equal, "kg_entities": len(src_entities), "kg_triples": len(src_triples),
        **api,
    }
    # rejected and reported, never dropped
    drawers_verify = verify.get("collections", {}).get("mempalace_drawers", {})
    reported = {r["id"] for r in drawers_verify.get("rejected_rows", [])}
    accounted = drawers_verify.get("target_rows", -1) + drawers_verify.get("rejected", 0) \
        == drawers_verify.get("source_rows")
    cases = []
    for rid, (doc, meta) in REJECTS.items():
        reason, payload, vector = rejects.get(rid, ("", {}, None))
        kept = bool(payload) and payload.get("document") == doc and payload.get("metadata") == meta
        if rid.endswith("_vector"):  # the damaged vector is kept as read, NaN/Infinity included
            kept = kept and vector is not None and not np.isfinite(np.frombuffer(bytes(vector), dtype="<f4")[0])
        cases.append({"case": f"{rid.removeprefix('rej_').replace('_', ' ')} rejected and reported",
                      "ok": rid in rejects and rid in reported and rid not in drawers and kept and accounted,
                      "detail": reason or "NOT REJECTED"})
    return injection, cases, h


def _through_the_api(server: EmbeddedServer, h: Harness) -> dict:
    """mempalace's KnowledgeGraph API on AGE: hostile lookups change nothing; hostile writes read back verbatim."""
    dsn = h.database("kg_api")
    _sentinel(dsn)
    ok = []
    try:
        with AgeKnowledgeGraph(dsn=dsn) as kg:
            kg.add_triple("anchor", "knows", "other")
            with psycopg.connect(dsn) as conn:
                before = _shape(conn)
            for value in INJECTION:
                kg.query_entity(value, direction="both")
                kg.query_relationship(value)
                kg.timeline(value)
                kg.find_entity_candidates(value)
                kg.invalidate(value, value, value, ended="2026-01-01")
                kg.rewrite(value, "p", "o")
            with psycopg.connect(dsn) as conn:
                lookups_unchanged = _shape(conn) == before
            for i, value in enumerate(INJECTION):
                kg.add_entity(value, entity_type=value, properties={value: value})
                kg.add_triple(value, value, f"obj {i}", source_closet=value, source_file=value,
                              source_drawer_id=value, adapter_name=value)
            with psycopg.connect(dsn) as conn:
                after = _shape(conn)
                entities = {e["name"]: e for e in read_entities(conn)}
                triples = {t["source_file"]: t for t in read_triples(conn)}
            for i, value in enumerate(INJECTION):
                facts = kg.query_entity(value)
                fact = facts[0] if len(facts) == 1 else {}
                ok.append(fact.get("subject") == value and fact.get("object") == f"obj {i}"
                          and fact.get("predicate") == value.lower().replace(" ", "_")
                          and fact.get("source_closet") == value
                          and [f["subject"] for f in kg.query_relationship(value)] == [value]
                          and entities.get(value, {}).get("type") == value
                          and entities[value]["properties"] == json.dumps({value: value})
                          and triples.get(value, {}).get("adapter_name") == value
                          and triples[value]["source_drawer_id"] == value)
        writes_exact = (after["vertices"], after["edges"], after["tables"], after["sentinel"]) == (
            before["vertices"] + 2 * len(INJECTION), before["edges"] + len(INJECTION), before["tables"],
            before["sentinel"])
    finally:
        h.drop("kg_api")
    return {"api_round_tripped": sum(ok), "api_failed": [v for v, good in zip(INJECTION, ok) if not good],
            "api_lookups_changed_nothing": lookups_unchanged, "api_writes_changed_nothing_else": writes_exact}


# ── the report ──────────────────────────────────────────────────────────────────────────────


def _palace_pg_tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return _layout(conn)["palace_pg"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=10, help="kill points (each: a fresh database, 2 kills, resume)")
    ap.add_argument("--drawers", type=int, default=1500, help="drawers in the generated palace")
    ap.add_argument("--batch-size", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-extras", action="store_true",
                    help="skip the immediate server stop and the INVALID-index case (they restart the server)")
    ap.add_argument("--no-runbooks", action="store_true", help="skip the runbooks in the canary scan")
    ap.add_argument("--no-outsiders", action="store_true", help="skip another OS user's connection attempts")
    ap.add_argument("--no-backup", action="store_true", help="skip the backup → restore round trip")
    ap.add_argument("--no-sync-kills", action="store_true", help="skip the kill points of syncs")
    ap.add_argument("--sync-batch-size", type=int, default=50,
                    help="rows per sync transaction (smaller: more crash points, each a sync killed and rerun)")
    ap.add_argument("--no-load", action="store_true", help="skip the load run (it stops the server once)")
    ap.add_argument("--load-seconds", type=float, default=20)
    ap.add_argument("--load-workers", type=int, default=2, help="writer processes, and as many readers")
    ap.add_argument("--load-drawers", type=int, default=500)
    args = ap.parse_args(argv)
    started = time.monotonic()
    server = EmbeddedServer.from_env()
    if not server.running():
        server.start()
    rng = random.Random(args.seed)
    outside = None if args.no_outsiders else round_two.outsiders(server)
    round_trip = syncs = load = None
    with tempfile.TemporaryDirectory(prefix="palace_pg-rel-") as tmp:
        tmp = Path(tmp)
        from palace_pg.synth import make_palace

        palace = tmp / "src" / "palace"
        facts = make_palace(palace, drawers=args.drawers, seed=args.seed)
        h = Harness(server, palace, tmp / "work", args.batch_size, prefix="rel")
        watches = [h.watch]
        h.clean_run()
        kill = h.kill_points(args.points, rng, extras=not args.no_extras)
        window = h.crash_window()
        scan = CanaryScan()
        canary = canary_section(h, scan, tmp, runbooks=not args.no_runbooks)
        fidelity = fidelity_generated(palace, facts, canary["dsn"], tmp) if canary["migrated"] else \
            [{"case": "the canary migration", "ok": False, "detail": "failed"}]
        reference = _palace_pg_tables(canary["dsn"])
        if not args.no_backup:
            round_trip = round_two.backup_round_trip(h, canary["dsn"], tmp) if canary["migrated"] else \
                {"ok": False, "bytes": 0, "tables": 0, "differing_tables": ["(the canary migration failed)"],
                 "verify_differences": None}
        h.drop("canary")
        injection, reject_cases, hostile = injection_and_rejects(server, watches, tmp, args.batch_size, reference)
        hostile.drop("injection")
        fidelity += reject_cases
        if not args.no_sync_kills:
            from palace_pg.testing.chroma import copy_of

            syncs = h.sync_kill_points(copy_of(palace, tmp / "sync"), tmp / "sync-work", args.sync_batch_size)
    if not args.no_load:  # last: it stops the server in immediate mode once
        from load_mempalace import run_load

        load = run_load(server, writers=args.load_workers, readers=args.load_workers, seconds=args.load_seconds,
                        drawers=args.load_drawers, seed=args.seed)
    verified = {k: h.verified[k] + hostile.verified[k] for k in h.verified}
    runs = sum(w.runs for w in watches)
    unchanged = sum(w.unchanged for w in watches)
    killed = kill["kills"] + (0 if args.no_extras else 2)
    fid_ok = sum(c["ok"] for c in fidelity)
    extras = "" if args.no_extras else (
        f"; server stopped (immediate) mid-batch: {kill['immediate_stop_mid_batch']}; "
        f"INVALID HNSW index rebuilt: {kill['after_rebuild']}")
    n = injection["strings"]
    rows_total = verified["rows_compared"] + verified["kg_rows_compared"]
    table = [
        ("kill points survived", f"{kill['identical']}/{kill['kill_points']} identical "
                                 f"({kill['kills']} SIGKILLs, {kill['tables_compared']} tables fingerprinted){extras}"),
        ("rows compared by hash", f"{rows_total:,} rows in {verified['runs']} verifications "
                                  f"({verified['kg_rows_compared']:,} of them KG), "
                                  f"mismatches {verified['mismatches']}"),
        ("source palace hash unchanged", f"{unchanged}/{runs} runs ({killed} of them killed, "
                                         f"{len(watches)} palaces)"),
        ("canary password leaks", f"{len(scan.leaks)} in {scan.artifacts} artifacts "
                                  f"({scan.bytes / 1e6:.1f} MB) over {scan.scenarios} scenarios; raw libpq errors "
                                  f"echo it for {scan.raw_echoes}/{len(BAD_DSNS)} of the bad DSNs"),
        ("injection strings round-tripped", f"{injection['migration_round_tripped']}/{n} through a migration, "
                                            f"{injection['api_round_tripped']}/{n} through the AGE KG API; "
                                            f"nothing else changed: "
                                            f"{'yes' if _nothing_else(injection) else 'NO'}"),
        ("fidelity cases", f"{fid_ok}/{len(fidelity)}"),
        *round_two.rows(outside, round_trip, window, syncs, load),
    ]
    width = max(len(k) for k, _ in table)
    print(f"{'figure':<{width}}  result")
    print(f"{'-' * width}  {'-' * 6}")
    for k, v in table:
        print(f"{k:<{width}}  {v}")
    for c in fidelity:
        print(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['case']}: {c['detail']}")
    figures = {
        "kill_points": kill["kill_points"], "identical": kill["identical"], "kills": kill["kills"],
        "kill": {k: v for k, v in kill.items() if k not in ("source_hash_unchanged", "source_runs",
                                                             "source_runs_unchanged")},
        "rows_compared": rows_total, "verifications": verified["runs"], "kg_rows_compared": verified["kg_rows_compared"],
        "mismatches": verified["mismatches"],
        "source_runs": runs, "source_runs_unchanged": unchanged, "source_runs_killed": killed,
        "source_changed_after": [c for w in watches for c in w.changed_after],
        "canary_leaks": len(scan.leaks), "canary_leaked_in": scan.leaks, "canary_artifacts": scan.artifacts,
        "canary_bytes": scan.bytes, "canary_scenarios": scan.scenarios,
        "canary_raw_libpq_echoes": f"{scan.raw_echoes}/{len(BAD_DSNS)}", "runbooks": canary["runbooks"],
        "injection": injection,
        "fidelity_cases": len(fidelity), "fidelity_ok": fid_ok, "fidelity": fidelity,
        "outsiders": outside, "backup_round_trip": round_trip, "crash_window": window, "sync_kills": syncs,
        "load": load,
        "drawers": args.drawers, "batch_size": args.batch_size, "seed": args.seed,
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(figures, default=str, ensure_ascii=False))
    ok = (kill["identical"] == kill["kill_points"] and extras_ok(kill) and verified["mismatches"] == 0
          and unchanged == runs and not scan.leaks and canary["rerun_exit"] == 0
          and (args.no_runbooks or canary["runbooks"].get("ok"))
          and injection["migration_round_tripped"] == n == injection["api_round_tripped"]
          and _nothing_else(injection) and fid_ok == len(fidelity)
          and round_two.all_ok(outside, round_trip, window, syncs, load))
    return 0 if ok else 1


def _nothing_else(injection: dict) -> bool:
    return all(injection[k] for k in ("migration_nothing_else_changed", "kg_rows_equal_by_id",
                                      "api_lookups_changed_nothing", "api_writes_changed_nothing_else"))


if __name__ == "__main__":
    sys.exit(main())
