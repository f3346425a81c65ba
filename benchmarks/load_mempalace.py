"""MemPalace on PostgreSQL under concurrent use, with one immediate server stop mid-run (issue 15.4).

    python benchmarks/load_mempalace.py [--writers 4] [--readers 4] [--seconds 60] [--drawers 1000] [--no-restart]

A generated palace is migrated into a database of its own and served as a migrated palace is (a folder
holding only palace_pg's marker).  N writer processes and N reader processes then work through
MemPalace's own API for a fixed time: the ``postgres`` backend from MemPalace's registry
(``get_backend("postgres").get_collection``: add, upsert, delete, query, get) and the KnowledgeGraph API
(``AgeKnowledgeGraph``, what ``MEMPALACE_KG_BACKEND=age`` gives MemPalace: add_triple, invalidate,
query_entity).  Halfway, the server is stopped in ``immediate`` mode (no shutdown checkpoint, as a crash)
and started again.

Every writer keeps a journal of what the API acknowledged.  A call that failed leaves its id "in doubt"
(it may or may not have committed) and the writer never touches that id again.  Afterwards every
acknowledged write must be there exactly once (drawer: one row with the last acknowledged document;
deleted: absent; triple: one fact, current or invalidated as acknowledged), the collection's count must
equal what the journals imply, and no error may fall outside the restart window.

Prints a table and, last, one JSON line.  Exit 0 only when no acknowledged write is lost, no id is
duplicated, counts match and every error fell in the restart window.  Databases are ``load_<pid>``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM = 384  # the generator's text collections
GRACE_SECONDS = 3.0  # after the server is back: pools and cached connections reconnect
WRITE_MIX = [("add", 35), ("upsert", 20), ("delete", 10), ("kg_add", 25), ("kg_invalidate", 10)]
READ_MIX = [("query", 50), ("get", 30), ("kg_query", 20)]


def _vector(rng: random.Random) -> list[float]:
    v = np.random.default_rng(rng.getrandbits(32)).normal(size=DIM).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


def _kind(exc: BaseException) -> str:
    """The error's kind: its type and the first words of its message, digits and DSNs removed."""
    from palace_pg.dsn import scrub

    text = re.sub(r"\d+", "N", scrub(str(exc)).splitlines()[0] if str(exc) else "")
    return f"{type(exc).__name__}: {text[:90]}"


def _open(folder: str):
    from mempalace.backends import PalaceRef, get_backend

    from palace_pg.kg import AgeKnowledgeGraph

    ref = PalaceRef(id=folder, local_path=folder)
    col = get_backend("postgres").get_collection(palace=ref, collection_name="mempalace_drawers", create=False)
    return col, AgeKnowledgeGraph(db_path=os.path.join(folder, "knowledge_graph.sqlite3"))


def _pick(rng: random.Random, mix) -> str:
    return rng.choices([m for m, _ in mix], weights=[w for _, w in mix])[0]


def _started(start) -> float:
    """Wait until every worker has its connections (a loaded machine takes seconds to import chromadb and
    mempalace); the run's clock starts then, for all at once.  Returns the deadline."""
    ready, go, deadline = start
    ready.wait()
    go.wait()
    return deadline.value


def writer(k: int, folder: str, start, out: str, seed: int) -> None:
    rng = random.Random(seed * 1000 + k)
    col, kg = _open(folder)
    deadline = _started(start)
    drawers: dict[str, object] = {}  # id -> last acknowledged document | "deleted" | "doubt"
    triples: dict[str, str] = {}  # subject -> "open" | "invalidated" | "doubt"
    ops: list[tuple] = []
    n = 0
    while time.time() < deadline:
        op = _pick(rng, WRITE_MIX)
        present = [i for i, s in drawers.items() if s not in ("deleted", "doubt")]
        opened = [s for s, st in triples.items() if st == "open"]
        if op in ("upsert", "delete") and not present:
            op = "add"
        if op == "kg_invalidate" and not opened:
            op = "kg_add"
        n += 1
        start = time.time()
        try:
            if op in ("add", "upsert"):
                key = f"load-w{k}-{n}" if op == "add" else rng.choice(present)
                doc = f"writer {k} drawer {key} v{n}"
                drawers[key] = "doubt"
                getattr(col, op)(ids=[key], documents=[doc], embeddings=[_vector(rng)],
                                 metadatas=[{"wing": f"load_w{k}", "room": "r", "n": n}])
                drawers[key] = doc
            elif op == "delete":
                key = rng.choice(present)
                drawers[key] = "doubt"
                col.delete(ids=[key])
                drawers[key] = "deleted"
            elif op == "kg_add":
                subject = f"Load W{k} S{n}"
                triples[subject] = "doubt"
                kg.add_triple(subject, "wrote", f"Load Object {n % 50}", valid_from="2026-01-01")
                triples[subject] = "open"
            else:
                subject = rng.choice(opened)
                triples[subject] = "doubt"
                kg.invalidate(subject, "wrote", f"Load Object {int(subject.rsplit('S', 1)[1]) % 50}",
                              ended="2026-06-01")
                triples[subject] = "invalidated"
            ops.append((op, start, time.time(), None))
        except Exception as exc:  # noqa: BLE001 - every failure is counted by kind, none is hidden
            ops.append((op, start, time.time(), _kind(exc)))
            time.sleep(0.05)
    Path(out).write_text(json.dumps({"ops": ops, "drawers": drawers, "triples": triples}))


def reader(k: int, folder: str, start, out: str, seed: int, base_ids: list[str],
           entities: list[str]) -> None:
    rng = random.Random(seed * 1000 + 500 + k)
    col, kg = _open(folder)
    deadline = _started(start)
    ops: list[tuple] = []
    while time.time() < deadline:
        op = _pick(rng, READ_MIX)
        start = time.time()
        try:
            if op == "query":
                hits = col.query(query_embeddings=[_vector(rng)], n_results=10)
                assert len(hits.ids[0]) == 10, "a kNN query returned fewer than 10 drawers"
            elif op == "get":
                wanted = rng.sample(base_ids, 5)
                got = col.get(ids=wanted)
                assert sorted(got.ids) == sorted(wanted), "a get by id missed a drawer"
            else:
                kg.query_entity(rng.choice(entities), direction="both")
            ops.append((op, start, time.time(), None))
        except Exception as exc:  # noqa: BLE001
            ops.append((op, start, time.time(), _kind(exc)))
            time.sleep(0.05)
    Path(out).write_text(json.dumps({"ops": ops}))


def prepare(server, drawers: int, seed: int, tmp: Path) -> tuple[str, str, list[str], list[str]]:
    """Migrate a generated palace; return (database name, served folder, base drawer ids, KG entity names)."""
    import psycopg

    from palace_pg import engine
    from palace_pg.marker import Marker
    from palace_pg.phases.base import MigrationOptions
    from palace_pg.synth import make_palace
    from palace_pg.target_db import state

    palace = tmp / "source" / "palace"
    make_palace(palace, drawers=drawers, seed=seed)
    name = f"load_{os.getpid()}"
    server.drop_database(name)
    dsn = server.create_database(name)
    engine.migrate(MigrationOptions(palace=palace, dsn=dsn, work_dir=tmp / "work", recall_queries=10))
    with psycopg.connect(dsn) as conn:
        palace_id = state.get_meta(conn, "palace_id")
        base_ids = [r[0] for r in conn.execute("SELECT id FROM mempalace.drawers ORDER BY id")]
    served = tmp / "served"
    served.mkdir()
    Marker.for_target(palace_id, dsn).write(served)  # MemPalace finds the database through it
    from palace_pg.kg import AgeKnowledgeGraph

    with AgeKnowledgeGraph(dsn=dsn) as kg:
        entities = sorted({t["subject"] for t in kg.timeline(limit=500)}) or ["nobody"]
    return name, str(served), base_ids, entities


def check(folder: str, journals: list[dict], base_count: int) -> dict:
    """Every acknowledged write present exactly once; counts as the journals imply."""
    import psycopg

    col, kg = _open(folder)
    lost, duplicated, doubt_present, expected_present = [], 0, 0, 0
    from palace_pg.marker import read_marker

    with psycopg.connect(read_marker(folder).dsn()) as conn:
        total, distinct = conn.execute("SELECT count(*), count(DISTINCT id) FROM mempalace.drawers").fetchone()
    duplicated += total - distinct
    acknowledged = 0
    for journal in journals:
        drawers = journal.get("drawers", {})
        if drawers:
            got = col.get(ids=list(drawers), include=["documents"])
            found = Counter(got.ids)
            docs = dict(zip(got.ids, got.documents))
            for key, st in drawers.items():
                duplicated += max(found[key] - 1, 0)
                if st == "doubt":
                    doubt_present += found[key] > 0
                    continue
                acknowledged += 1
                if st == "deleted":
                    if found[key]:
                        lost.append(f"{key}: deleted, still there")
                else:
                    expected_present += 1
                    if found[key] != 1 or docs.get(key) != st:
                        lost.append(f"{key}: {found[key]} row(s), document {docs.get(key)!r} != {st!r}")
        for subject, st in journal.get("triples", {}).items():
            facts = [f for f in kg.query_entity(subject) if f["predicate"] == "wrote"]
            if st == "doubt":
                duplicated += max(len(facts) - 1, 0)
                continue
            acknowledged += 1
            if len(facts) != 1:
                lost.append(f"triple {subject}: {len(facts)} fact(s)")
            elif facts[0]["current"] != (st == "open"):
                lost.append(f"triple {subject}: current={facts[0]['current']}, acknowledged {st}")
    count = col.count()
    expected = base_count + expected_present + doubt_present
    return {"acknowledged_writes": acknowledged, "lost": len(lost), "lost_examples": lost[:5],
            "duplicated": duplicated, "count": count, "count_expected": expected, "count_match": count == expected}


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 2) if values else 0.0


def summarise(journals: list[dict], seconds: float, window: tuple[float, float] | None) -> dict:
    by_op: dict[str, list[float]] = defaultdict(list)
    errors_in, errors_out = Counter(), Counter()
    recovered_after = 0.0
    for journal in journals:
        first_ok_after = None
        for op, start, end, error in journal["ops"]:
            in_window = window is not None and end >= window[0] and start <= window[1] + GRACE_SECONDS
            if error is None:
                by_op[op].append(end - start)
                if window is not None and start >= window[1] and first_ok_after is None:
                    first_ok_after = end - window[1]
            else:
                (errors_in if in_window else errors_out)[f"{op}: {error}"] += 1
        if first_ok_after is not None:
            recovered_after = max(recovered_after, first_ok_after)
    every = [v for values in by_op.values() for v in values]
    return {
        "ops": len(every), "ops_per_s": round(len(every) / seconds, 1),
        "p50_ms": _percentile(every, 50), "p99_ms": _percentile(every, 99),
        "by_op": {op: {"n": len(v), "p50_ms": _percentile(v, 50), "p99_ms": _percentile(v, 99)}
                  for op, v in sorted(by_op.items())},
        "errors_in_restart_window": dict(errors_in), "errors_outside_window": dict(errors_out),
        "recovered_within_s": round(recovered_after, 2),
    }


def run_load(server, *, writers: int = 4, readers: int = 4, seconds: float = 60, drawers: int = 1000,
             seed: int = 1, restart: bool = True, keep: bool = False, as_configured: bool = False) -> dict:
    """One load run on ``server`` (benchmarks/reliability_report.py runs a short one): the figures."""
    mode = "durable"
    saved_options = os.environ.get("PGOPTIONS")
    if not server.durable() and not as_configured:
        # fast mode (tests) runs synchronous_commit off: an immediate stop then drops the last ~200 ms of
        # acknowledged commits, by design.  With it on for the clients, a commit's WAL reaches the kernel before
        # the ack, which survives a killed server (only an OS crash would need fsync): the figure we measure.
        os.environ["PGOPTIONS"] = f"{saved_options or ''} -c synchronous_commit=on".strip()
        mode = "fast server (fsync off), clients synchronous_commit=on"
    elif not server.durable():
        mode = "fast server as configured (synchronous_commit off: acknowledged commits may be lost)"
    try:
        with tempfile.TemporaryDirectory(prefix="palace_pg-load-") as tmp_name:
            tmp = Path(tmp_name)
            name, folder, base_ids, entities = prepare(server, drawers, seed, tmp)
            ctx = mp.get_context("spawn")  # no psycopg connection crosses a fork
            start = (ctx.Barrier(writers + readers + 1), ctx.Event(), ctx.Value("d", 0.0))
            procs, outs = [], []
            for k in range(writers):
                outs.append(str(tmp / f"w{k}.json"))
                procs.append(ctx.Process(target=writer, args=(k, folder, start, outs[-1], seed)))
            for k in range(readers):
                outs.append(str(tmp / f"r{k}.json"))
                procs.append(ctx.Process(target=reader, args=(k, folder, start, outs[-1], seed, base_ids,
                                                              entities)))
            for p in procs:
                p.start()
            start[0].wait(timeout=600)  # every worker connected
            start[2].value = deadline = time.time() + seconds
            start[1].set()
            window = None
            if restart:
                time.sleep(max(deadline - seconds / 2 - time.time(), 0))
                stopped = time.time()
                server.kill_immediate()
                server.start()
                window = (stopped, time.time())
            for p in procs:
                p.join()
            journals = [json.loads(Path(o).read_text()) for o in outs if Path(o).is_file()]
            crashed = len(procs) - len(journals)
            figures = {"mode": mode, "writers": writers, "readers": readers, "seconds": seconds,
                       "drawers": drawers, "restart": restart,
                       "restart_seconds": round(window[1] - window[0], 2) if window else None,
                       "workers_crashed": crashed, **summarise(journals, seconds, window),
                       **check(folder, journals, len(base_ids))}
            if not keep:
                server.drop_database(name)
    finally:
        if saved_options is None:
            os.environ.pop("PGOPTIONS", None)
        else:
            os.environ["PGOPTIONS"] = saved_options
    figures["ok"] = (figures["ops"] > 0 and figures["acknowledged_writes"] > 0 and figures["lost"] == 0 and figures["duplicated"] == 0 and figures["count_match"]
                     and not figures["workers_crashed"] and not figures["errors_outside_window"])
    return figures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--drawers", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-restart", action="store_true", help="no immediate stop (the baseline)")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--as-configured", action="store_true",
                    help="on a fast-mode server, keep its synchronous_commit off (shows what that mode loses)")
    args = ap.parse_args(argv)

    from palace_pg.server import EmbeddedServer

    server = EmbeddedServer.from_env()
    if not server.running():
        server.start()
    figures = run_load(server, writers=args.writers, readers=args.readers, seconds=args.seconds,
                       drawers=args.drawers, seed=args.seed, restart=not args.no_restart, keep=args.keep,
                       as_configured=args.as_configured)
    mode = figures["mode"]
    print(f"MemPalace on PostgreSQL: {args.writers} writers + {args.readers} readers, {args.seconds:g} s, "
          f"{args.drawers} drawers, immediate stop: {figures['restart_seconds']} s; {mode}")
    print(f"  operations/s        {figures['ops_per_s']} ({figures['ops']} ok), p50 {figures['p50_ms']} ms, "
          f"p99 {figures['p99_ms']} ms")
    for op, f in figures["by_op"].items():
        print(f"    {op:<14} n={f['n']:<6} p50 {f['p50_ms']} ms  p99 {f['p99_ms']} ms")
    print(f"  acknowledged writes {figures['acknowledged_writes']}, lost {figures['lost']}, "
          f"duplicated {figures['duplicated']}, count {figures['count']} (expected {figures['count_expected']})")
    print(f"  errors in the restart window: {sum(figures['errors_in_restart_window'].values())}, "
          f"outside it: {sum(figures['errors_outside_window'].values())}; "
          f"every worker served again within {figures['recovered_within_s']} s of the restart")
    for kind, n in {**figures["errors_in_restart_window"], **figures["errors_outside_window"]}.items():
        print(f"    {n:>5} × {kind}")
    print(json.dumps(figures, default=str))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
