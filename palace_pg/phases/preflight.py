"""Phase 0: preflight.  Read-only on both sides; returns every check with its detail and fix.

It never writes the source (it reads a snapshot), and never writes the target
(only catalog queries).  A ``fail`` refuses the migration; a ``warn`` is shown.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

from ..dsn import shown
from ..errors import Check
from ..target_db import schema, state
from .indexes_phase import hnsw_memory_bytes, vector_version

MIN_SERVER = 160000
MIN_VECTOR = (0, 8, 2)
# measured rates on 2 cores (perf-anchors.md §0, §6): used for the time estimate only
READ_ROWS_PER_S = 15_000
COPY_ROWS_PER_S = 39_000
HNSW_S_PER_160K = 36.0
KG_ROWS_PER_S = 85_000
VERIFY_ROWS_PER_S = 25_000
BYTES_PER_ROW_OVERHEAD = 2.2  # table + TOAST + indexes, relative to raw payload


@dataclass
class PreflightReport:
    checks: list[Check]
    facts: dict
    estimate_seconds: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not any(c.status == "fail" for c in self.checks)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == "fail"]

    def as_dict(self) -> dict:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks], "facts": self.facts,
                "estimate_seconds": self.estimate_seconds}


def _mem_total() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_daemon(url: str | None) -> Check:
    if not url:
        return Check("daemon", "ok", "PALACE_DAEMON_URL is not set")
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=2):
            pass
        answered = True
    except urllib.error.HTTPError:
        answered = True  # it answered, even if with an error status
    except (urllib.error.URLError, OSError, ValueError):
        answered = False
    if answered:
        return Check("daemon", "fail", "the palace daemon answers: it would keep writing to the Chroma palace "
                     "and those writes would be lost", "stop it (e.g. `systemctl stop palace-daemon`), confirm "
                     "its /health no longer answers, then rerun", {"url": url})
    return Check("daemon", "ok", "the palace daemon does not answer")


def source_checks(src) -> tuple[list[Check], dict]:
    """Checks and facts about the source palace (its snapshot)."""
    from ..errors import SourceError

    checks: list[Check] = []
    facts: dict = {"palace": str(src.path), "fingerprint": src.snapshot.fingerprint,
                   "snapshot_bytes": src.snapshot.total_bytes, "collections": {}}
    checks.append(Check("source_stable", "ok", f"snapshot of {len(src.snapshot.files)} files "
                        f"({src.snapshot.total_bytes / 1e6:.1f} MB) taken with no file changing meanwhile"))
    if src.kg_source_path is not None:
        try:  # read the KG while chromadb starts up for any queue tail (the result is cached)
            src.kg()
        except SourceError:
            pass  # reported by the knowledge_graph check below
    try:
        readers = src.probe()
        direct = [n for n, r in readers.items() if r["reader"] == "direct"]
        other = [f"{n} ({r['reader']}: {r['why']})" for n, r in readers.items() if r["reader"] != "direct"]
        detail = f"read straight from chroma.sqlite3 and the HNSW files: {', '.join(direct) or 'none'}"
        if other:
            detail += f"; through chromadb, which opened the snapshot in a separate process: {', '.join(other)}"
        checks.append(Check("source_readable", "ok", detail, data={"readers": readers}))
    except SourceError as exc:
        checks.append(Check("source_readable", "fail", exc.problem, exc.fix))
        return checks, facts
    names = [c.name for c in src.collections]
    if src.drawers_name not in names:
        checks.append(Check("collections", "fail", f"no {src.drawers_name} collection (found: {names or 'none'})",
                            "point --palace at a MemPalace palace folder"))
    else:
        checks.append(Check("collections", "ok", ", ".join(f"{c.name} ({src.count(c.name)} rows, dim {c.dimension})"
                                                          for c in src.collections)))
    for c in src.collections:
        facts["collections"][c.name] = {"rows": src.count(c.name), "dimension": c.dimension,
                                        "pending_queue_rows": c.pending_queue_rows, "metadata": c.metadata,
                                        "segment_files": c.segment_files}
    pending = sum(c.pending_queue_rows for c in src.collections)
    checks.append(Check("pending_writes", "ok",
                        f"{pending} write(s) in embeddings_queue past the flushed HNSW segment; chromadb replays "
                        "them, so they are migrated" if pending else "no pending writes in embeddings_queue"))
    kg_path = src.kg_source_path
    if kg_path is None:
        checks.append(Check("knowledge_graph", "warn", "no knowledge_graph.sqlite3 for this palace: the KG phase "
                            "will load an empty graph", "if the palace has a KG elsewhere, move it to "
                            "<palace>/knowledge_graph.sqlite3 (where mempalace looks)"))
        facts["kg"] = {"path": None, "entities": 0, "triples": 0}
    else:
        try:
            entities, triples = src.kg()
        except SourceError as exc:
            checks.append(Check("knowledge_graph", "fail", exc.problem, exc.fix))
            entities, triples = [], []
        else:
            wal = Path(str(kg_path) + "-wal")
            wal_size = wal.stat().st_size if wal.exists() else 0
            checks.append(Check("knowledge_graph", "ok", f"{kg_path}: {len(entities)} entities, {len(triples)} triples"
                                + (f" (read with its {wal_size}-byte -wal applied)" if wal_size else "")))
        facts["kg"] = {"path": str(kg_path), "entities": len(entities), "triples": len(triples)}
    embedder = {c.name: src.embedder_identity(c.name) for c in src.collections}
    facts["embedder"] = embedder
    bad = [f"{n}: sidecar says {e['recorded_dimension']}, Chroma {e['dimension']}" for n, e in embedder.items()
           if e["recorded_dimension"] not in (None, 0, e["dimension"])]
    if bad:
        checks.append(Check("embedder", "fail", "embedder dimension disagrees: " + "; ".join(bad),
                            "fix mempalace_embedder.json with `mempalace palace set-embedder`"))
    else:
        checks.append(Check("embedder", "ok", ", ".join(f"{n}: {e['model_name']}/{e['dimension']}"
                                                        for n, e in embedder.items())))
    _, left = src.carried_files()
    facts["files_left_in_backup"] = left
    return checks, facts


def check_kg_store(conn: psycopg.Connection, requested: str, age_version: str | None, *, restart: bool) -> Check:
    """Which KG store the migration will use (--kg-store age|tables|auto), and whether it can."""
    from ..kg import stores

    if requested not in stores.CHOICES:
        return Check("kg_store", "fail", f"unknown KG store {requested!r}", f"use one of {', '.join(stores.CHOICES)}")
    held = None if restart else stores.recorded(conn)
    where = {"age": f"the Apache AGE graph {schema.GRAPH} (AGE {age_version})",
             "tables": f"plain tables {schema.SCHEMA}.{schema.KG_TABLES['entities']}/{schema.KG_TABLES['triples']}"}
    if held and requested not in ("auto", held):
        return Check("kg_store", "fail", f"this target's partial migration keeps the KG in {held}; "
                     f"--kg-store {requested} would split it", f"rerun with --kg-store {held} (or auto), or --restart; "
                     "after the migration, `palace-pg kg convert` moves the graph", {"kg_store": held})
    if requested == "age" and age_version is None:
        return Check("kg_store", "fail", "--kg-store age, but the age extension is not installed in this database",
                     "CREATE EXTENSION age (with 'age' in shared_preload_libraries), or use --kg-store tables "
                     "(or auto)", {"kg_store": None})
    store = held or (requested if requested != "auto" else ("age" if age_version else "tables"))
    why = (f"--kg-store {requested}" if requested != "auto" else
           "recorded by the earlier run" if held else
           "auto: the age extension is installed" if store == "age" else
           "auto: no age extension in this database (as on most managed services)")
    return Check("kg_store", "ok", f"the knowledge graph goes into {where[store]} ({why})", data={"kg_store": store})


def target_checks(conn: psycopg.Connection, src, *, restart: bool, rows: int, dimension: int,
                  payload_bytes: int, lock_pid: int | None = None,
                  kg_store: str = "auto", online: bool = False) -> tuple[list[Check], dict]:
    checks: list[Check] = []
    facts = {"dsn": shown(conn)}
    version = conn.info.server_version
    facts["server_version"] = conn.execute("SHOW server_version").fetchone()[0]
    checks.append(Check("server_version", "ok" if version >= MIN_SERVER else "fail",
                        f"PostgreSQL {facts['server_version']}",
                        "" if version >= MIN_SERVER else "use PostgreSQL 16 or newer"))
    exts = dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())
    available = dict(conn.execute("SELECT name, default_version FROM pg_available_extensions "
                                  "WHERE name IN ('vector', 'age')").fetchall())
    facts["extensions"] = {k: exts.get(k) for k in ("vector", "age")}
    if "vector" not in exts:
        checks.append(Check("vector", "fail", "the vector extension is not installed in this database"
                            + (f" (available: {available['vector']})" if "vector" in available else ""),
                            "CREATE EXTENSION vector (as a superuser), or install pgvector >= 0.8.2"))
    elif vector_version(conn) < MIN_VECTOR:
        checks.append(Check("vector", "fail", f"pgvector {exts['vector']} is older than 0.8.2 (CVE-2026-3172: "
                            "overflow in parallel HNSW builds)", "install pgvector >= 0.8.2, then "
                            "ALTER EXTENSION vector UPDATE"))
    else:
        checks.append(Check("vector", "ok", f"pgvector {exts['vector']}"))
    kg_check = check_kg_store(conn, kg_store, exts.get("age"), restart=restart)
    facts["kg_store"] = kg_check.data.get("kg_store")
    checks.append(kg_check)
    settings = dict(conn.execute("SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'full_page_writes', "
                                 "'synchronous_commit', 'maintenance_work_mem', 'max_parallel_maintenance_workers', "
                                 "'shared_preload_libraries', 'data_directory')").fetchall())
    facts["settings"] = {k: v for k, v in settings.items() if k != "data_directory"}
    unsafe = [k for k in ("fsync", "full_page_writes") if settings.get(k) == "off"]
    if unsafe:
        checks.append(Check("durability", "warn", f"the server runs with {', '.join(unsafe)} = off: an OS crash "
                            "can corrupt the migrated data silently", "for real data, turn them on "
                            "(`palace-pg db start` without --fast) before the cutover"))
    else:
        checks.append(Check("durability", "ok", "fsync and full_page_writes are on"))
    need = hnsw_memory_bytes(rows, dimension)
    total = _mem_total()
    facts["hnsw_memory_bytes"] = need
    if total and need * 1.25 > total * 0.5:
        checks.append(Check("memory", "warn", f"the HNSW build wants ~{need / 2**20:.0f} MB of "
                            f"maintenance_work_mem; this machine has {total / 2**30:.1f} GB",
                            "the build spills to disk and is slower; more RAM speeds it up"))
    else:
        checks.append(Check("memory", "ok", f"HNSW build: ~{need / 2**20:.0f} MB maintenance_work_mem "
                            "(set per session by the indexes phase)"))
    data_dir = settings.get("data_directory")
    target_bytes = int(payload_bytes * BYTES_PER_ROW_OVERHEAD)
    facts["target_bytes_estimate"] = target_bytes
    if data_dir and os.path.isdir(data_dir):
        free = shutil.disk_usage(data_dir).free
        status = "ok" if free > target_bytes * 1.2 else "fail"
        checks.append(Check("target_disk", status, f"{free / 2**30:.1f} GB free for ~{target_bytes / 2**30:.2f} GB",
                            "" if status == "ok" else "free disk space on the server's data volume"))
    else:
        checks.append(Check("target_disk", "ok", f"remote server: cannot measure its disk; it needs "
                            f"~{target_bytes / 2**30:.2f} GB"))
    checks.extend(_target_state_checks(conn, src, restart, online))
    holder = state.lock_holder(conn, lock_pid)
    if holder:
        checks.append(Check("lock", "fail", f"another migrator holds the target (pid {holder['pid']}, since "
                            f"{holder['since']})", "wait for it to finish, or stop it; never run two at once"))
    else:
        checks.append(Check("lock", "ok", "no other migrator is running on this target"))
    return checks, facts


def _target_state_checks(conn: psycopg.Connection, src, restart: bool, online: bool = False) -> list[Check]:
    if not state.schema_exists(conn):
        return [Check("target_state", "ok", "the target is empty: a fresh migration")]
    palace = state.get_meta(conn, "palace") or {}
    fingerprint = state.get_meta(conn, "source_fingerprint")
    same_palace = palace.get("collections") == src.identity()["collections"]
    if not palace:
        return [Check("target_state", "fail", "the target has a mempalace schema that palace_pg did not write",
                      "use an empty database (CREATE DATABASE …) for the migration")]
    if not same_palace:
        return [Check("target_state", "fail", f"the target holds another palace ({palace.get('source_path')})",
                      "migrate into an empty database; one database holds one palace")]
    if fingerprint != src.snapshot.fingerprint:
        if state.is_done(conn, "done") and not restart:
            catch_up = "`palace-pg sync --palace P` (MemPalace may keep running; 02_migrate's sync cell does it)"
            if online:
                return [Check("target_state", "ok", "the target holds a complete online copy of this palace; "
                              f"what MemPalace wrote since is caught up by {catch_up}")]
            return [Check("target_state", "fail", "the palace changed since its complete migration "
                          f"(fingerprint {str(fingerprint)[:12]}… → {src.snapshot.fingerprint[:12]}…)",
                          f"catch the target up with {catch_up}, or rerun with --restart to migrate from scratch")]
        if restart:
            return [Check("target_state", "warn", "the source changed since the last run; --restart will clear "
                          "the target's copy of this palace and start again")]
        return [Check("target_state", "fail", "the source palace changed since the migration started "
                      f"(fingerprint {str(fingerprint)[:12]}… → {src.snapshot.fingerprint[:12]}…)",
                      "rerun with --restart to migrate the current palace from scratch")]
    done = state.is_done(conn, "done")
    return [Check("target_state", "ok", "this palace was already migrated completely: a rerun writes nothing"
                  if done else "the target holds a partial migration of this palace: it will resume")]


def estimate(rows_by_collection: dict[str, int], kg_rows: int, snapshot_bytes: int) -> dict:
    rows = sum(rows_by_collection.values())
    biggest = max(rows_by_collection.values(), default=0)
    est = {
        "snapshot": snapshot_bytes / 400e6,
        "load": rows / READ_ROWS_PER_S + rows / COPY_ROWS_PER_S,
        "indexes": HNSW_S_PER_160K * (rows / 160_000) ** 1.1 + biggest / 100_000,
        "kg": kg_rows / KG_ROWS_PER_S,
        "verify": rows / VERIFY_ROWS_PER_S + rows / READ_ROWS_PER_S,
    }
    est = {k: round(v, 1) for k, v in est.items()}
    est["total"] = round(sum(est.values()), 1)
    return est


def run_preflight(conn: psycopg.Connection, src, *, restart: bool = False, daemon_url: str | None = None,
                  lock_pid: int | None = None, kg_store: str = "auto", online: bool = False) -> PreflightReport:
    checks, facts = source_checks(src)
    checks.insert(0, check_daemon(daemon_url if daemon_url is not None else os.environ.get("PALACE_DAEMON_URL")))
    rows = {c.name: (c.count or 0) for c in src.collections}
    drawers = src.drawers
    dim = (drawers.dimension if drawers else 384) or 384
    payload = sum((c.count or 0) * ((c.dimension or 0) * 4 + 1200) for c in src.collections)
    tchecks, tfacts = target_checks(conn, src, restart=restart, rows=rows.get(src.drawers_name, 0),
                                    dimension=dim, payload_bytes=payload, lock_pid=lock_pid, kg_store=kg_store,
                                    online=online)
    checks.extend(tchecks)
    facts["target"] = tfacts
    kg = facts.get("kg", {})
    report = PreflightReport(checks, facts, estimate(rows, kg.get("entities", 0) + kg.get("triples", 0),
                                                     src.snapshot.total_bytes))
    return report
