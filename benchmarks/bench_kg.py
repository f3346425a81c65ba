"""Benchmark the KG stores: bulk load, 1-hop query_entity and timeline latency, add_triple rate.

    python benchmarks/bench_kg.py [--store age|tables|both] [--entities 20000] [--triples 100000]
                                  [--dsn DSN] [--keep] [--json OUT]

``--store`` picks the Apache AGE graph, the plain-tables store, or both in the same
run (each on its own scratch database with the same rows).  Without ``--dsn`` a
scratch database per store is created on the embedded server and dropped afterwards
(with ``--dsn``, one store at a time).  Targets, at 20K entities and 100K triples:
AGE (issue 5) 1-hop ``query_entity`` p50 <= 1 ms, ``add_triple`` >= 500/s (durable:
synchronous_commit on, one commit per call); tables (issue 18) 1-hop p50 <= 0.3 ms,
``timeline`` p50 <= 0.5 ms, bulk load <= 2 s, durable ``add_triple`` >= 1,000/s when
the commit floor allows.

The add rates are the median of ``--rounds`` rounds.  Each durable add waits for a
WAL flush, so the rate cannot beat the server's commit latency: the "commit floor"
row (a one-row INSERT per transaction, timed between adds) shows it.  When
other sessions write a lot of WAL on the same server, that floor rises (2-4 ms has
been seen) and every durable writer slows with it; read the add rate against it.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from palace_pg import metrics
from palace_pg.kg import AgeKnowledgeGraph, stores
from palace_pg.kg.store import TRIPLE_COLUMNS

log = logging.getLogger("bench_kg")
PREDICATES = ["knows", "works_on", "uses", "child_of", "loves", "mentions", "depends_on", "part_of"]


def synthetic_rows(n_entities: int, n_triples: int, seed: int = 7) -> tuple[list[dict], list[dict]]:
    """sqlite-shaped rows: names with spaces and quotes, a quarter of the facts closed."""
    rng = random.Random(seed)
    entities = [
        {"id": f"entity_{i}", "name": f"Entity {i}", "type": rng.choice(["person", "project", "tool"]),
         "properties": "{}", "created_at": "2026-01-01 00:00:00", "rowid": i + 1}
        for i in range(n_entities)
    ]
    triples = []
    for i in range(n_triples):
        s, o = rng.randrange(n_entities), rng.randrange(n_entities)
        year = rng.randrange(2015, 2027)
        closed = rng.random() < 0.25
        row = {c: None for c in TRIPLE_COLUMNS} | {
            "id": f"t_{i}", "subject": f"entity_{s}", "predicate": rng.choice(PREDICATES), "object": f"entity_{o}",
            "valid_from": f"{year}-0{rng.randrange(1, 10)}-1{rng.randrange(0, 10)}",
            "valid_to": f"{year + 1}-01-01T00:00:00Z" if closed else None,
            "confidence": 1.0, "source_file": "bench.md", "extracted_at": "2026-01-01 00:00:00", "rowid": i + 1,
        }
        triples.append(row)
    return entities, triples


def percentile(values: list[float], q: float) -> float:
    """palace_pg.metrics' definition (interpolated), as every other benchmark reports it."""
    return metrics.percentiles(values, (int(round(q * 100)),), digits=6)[f"p{int(round(q * 100))}_ms"]


def run(dsn: str, n_entities: int, n_triples: int, queries: int, adds: int,
        rounds: int = 3, figures: dict | None = None, store: str = "age") -> list[tuple[str, str, str]]:
    """The table rows; ``figures`` (when given) receives the same figures as numbers, for --json."""
    rows: list[tuple[str, str, str]] = []
    figures = {} if figures is None else figures
    entities, triples = synthetic_rows(n_entities, n_triples)
    with psycopg.connect(dsn) as conn:
        started = time.perf_counter()
        counts = stores.bulk_load(conn, entities, triples, store=store)  # ANALYZEs the tables it loads
        conn.commit()
        load_s = time.perf_counter() - started
    log.info("bulk_load (%s): %s in %.2f s", store, counts, load_s)
    figures["load_seconds"] = round(load_s, 3)
    rows.append((f"[{store}] bulk_load {n_entities} entities + {n_triples} triples", f"{load_s:.2f} s",
                 f"{(n_entities + n_triples) / load_s:,.0f} rows/s"))

    rng = random.Random(11)
    kg = AgeKnowledgeGraph(dsn=dsn, store=store)
    try:
        names = [f"Entity {rng.randrange(n_entities)}" for _ in range(queries)]
        for name in names[:50]:  # warm the plan cache and psycopg's prepared statements
            kg.query_entity(name)
        for label, kwargs in (("outgoing", {}), ("both", {"direction": "both"}),
                              ("outgoing as_of", {"as_of": "2020-06-01"})):
            lat = []
            for name in names:
                t0 = time.perf_counter()
                kg.query_entity(name, **kwargs)
                lat.append((time.perf_counter() - t0) * 1000)
            figures.setdefault("query_entity", {})[label] = {
                "p50_ms": round(statistics.median(lat), 4), "p95_ms": round(percentile(lat, 0.95), 4),
                "p99_ms": round(percentile(lat, 0.99), 4), "n": queries}
            rows.append((f"[{store}] query_entity 1-hop {label} (n={queries})",
                         f"p50 {statistics.median(lat):.3f} ms",
                         f"p95 {percentile(lat, 0.95):.3f} ms, p99 {percentile(lat, 0.99):.3f} ms"))

        # The KG's default is the server's own setting (on, unless the server runs --fast).
        sync = kg._pg().execute("SHOW synchronous_commit").fetchone()[0]
        mode = "durable commit each" if sync == "on" else f"synchronous_commit={sync}: NOT durable"
        figures["synchronous_commit"] = sync
        rows += _add_rates(kg, dsn, f"[{store}] add_triple (n={adds}, {mode})", rng, n_entities, adds, rounds,
                           figures)
        kg._pg().execute("SET synchronous_commit = off")
        rows.append(_add_rate(kg, f"[{store}] add_triple (n={adds}, synchronous_commit=off)", rng, n_entities, adds,
                              figures, "add_triple_async_per_s"))
        kg._pg().execute("SET synchronous_commit = on")

        lat = []
        for name in names[:200]:
            t0 = time.perf_counter()
            kg.timeline(name)
            lat.append((time.perf_counter() - t0) * 1000)
        figures["timeline"] = {"p50_ms": round(statistics.median(lat), 4),
                               "p95_ms": round(percentile(lat, 0.95), 4), "n": len(lat)}
        rows.append((f"[{store}] timeline(entity) (n=200)", f"p50 {statistics.median(lat):.3f} ms",
                     f"p95 {percentile(lat, 0.95):.3f} ms"))
        lat = []
        for _ in range(50):
            t0 = time.perf_counter()
            kg.timeline()
            lat.append((time.perf_counter() - t0) * 1000)
        figures["timeline_all"] = {"p50_ms": round(statistics.median(lat), 4), "n": len(lat)}
        rows.append((f"[{store}] timeline() first 100 of all (n=50)", f"p50 {statistics.median(lat):.3f} ms",
                     f"p95 {percentile(lat, 0.95):.3f} ms"))
        t0 = time.perf_counter()
        kg.stats()
        rows.append((f"[{store}] stats()", f"{(time.perf_counter() - t0) * 1000:.1f} ms", ""))
    finally:
        kg.close()
    return rows


def _add_rates(kg, dsn: str, label: str, rng: random.Random, n_entities: int, adds: int,
               rounds: int, figures: dict) -> list[tuple[str, str, str]]:
    """Durable add rate, median of ``rounds`` rounds, with the commit floor measured alongside.

    After every 10th add (outside the timed add), a one-row INSERT commits durably on a
    second connection: its p50 is the server's commit latency *during* the round.
    """
    rates, floors = [], []
    table = sql.Identifier("bench_kg_commit_floor")
    with psycopg.connect(dsn, autocommit=True) as probe:
        probe.execute("SET synchronous_commit = on")
        probe.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (x int)").format(table))
        insert = sql.SQL("INSERT INTO {} VALUES (1)").format(table).as_string(probe)
        for _ in range(rounds):
            lat: list[float] = []

            def ping(i: int) -> None:
                if i % 10 == 9:
                    t0 = time.perf_counter()
                    probe.execute(insert)
                    lat.append((time.perf_counter() - t0) * 1000)

            rates.append(_timed_adds(kg, rng, n_entities, adds, between=ping))
            floors.append(statistics.median(lat))
        probe.execute(sql.SQL("DROP TABLE {}").format(table))
    rate = statistics.median(rates)
    floor = statistics.median(floors)
    figures["add_triple_per_s"] = {"median": round(rate, 1), "rounds": [round(r, 1) for r in rates], "n": adds}
    figures["commit_floor_p50_ms"] = {"median": round(floor, 4), "rounds": [round(f, 4) for f in floors]}
    return [
        (f"{label}, median of {rounds}", f"{rate:,.0f} /s",
         f"{1000 / rate:.2f} ms each; rounds {', '.join(f'{r:,.0f}' for r in rates)} /s"),
        (f"commit floor during those rounds (1-row INSERT, n={adds // 10}/round)", f"p50 {floor:.3f} ms",
         f"per round {', '.join(f'{f:.2f}' for f in floors)} ms (at most {1000 / floor:,.0f} commits/s)"),
    ]


def _timed_adds(kg, rng: random.Random, n_entities: int, adds: int, between=None) -> float:
    """add_triple calls per second, counting only the time inside add_triple."""
    spent = 0.0
    for i in range(adds):
        # Mostly existing entities; every tenth fact brings a new one (auto-created).
        subject = f"Entity {rng.randrange(n_entities)}"
        obj = f"New thing {rng.random()}" if i % 10 == 0 else f"Entity {rng.randrange(n_entities)}"
        predicate = rng.choice(PREDICATES)
        t0 = time.perf_counter()
        kg.add_triple(subject, predicate, obj, valid_from="2026-05-01", source_file="bench.md")
        spent += time.perf_counter() - t0
        if between is not None:
            between(i)
    return adds / spent


def _add_rate(kg, label: str, rng: random.Random, n_entities: int, adds: int, figures: dict | None = None,
              key: str = "") -> tuple[str, str, str]:
    rate = _timed_adds(kg, rng, n_entities, adds)
    if figures is not None:
        figures[key] = round(rate, 1)
    return label, f"{rate:,.0f} /s", f"{1000 / rate:.2f} ms each"


def sqlite_reference(n_entities: int, n_triples: int, queries: int, adds: int,
                     figures: dict | None = None) -> list[tuple[str, str, str]]:
    """mempalace's own sqlite KnowledgeGraph on the same rows and machine, for scale."""
    import sqlite3
    import tempfile

    from mempalace.knowledge_graph import KnowledgeGraph

    figures = {} if figures is None else figures

    entities, triples = synthetic_rows(n_entities, n_triples)
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/knowledge_graph.sqlite3"
        KnowledgeGraph(db_path=path).close()
        with sqlite3.connect(path) as db:
            db.executemany("INSERT INTO entities (rowid, id, name, type, properties, created_at) "
                           "VALUES (:rowid, :id, :name, :type, :properties, :created_at)", entities)
            db.executemany(f"INSERT INTO triples (rowid, {', '.join(TRIPLE_COLUMNS)}) "
                           f"VALUES (:rowid, {', '.join(':' + c for c in TRIPLE_COLUMNS)})", triples)
        kg = KnowledgeGraph(db_path=path)
        rng = random.Random(11)
        names = [f"Entity {rng.randrange(n_entities)}" for _ in range(queries)]
        lat = []
        for name in names:
            t0 = time.perf_counter()
            kg.query_entity(name)
            lat.append((time.perf_counter() - t0) * 1000)
        figures["query_entity_outgoing_p50_ms"] = round(statistics.median(lat), 4)
        out = [(f"sqlite reference: query_entity outgoing (n={queries})", f"p50 {statistics.median(lat):.3f} ms",
                f"p95 {percentile(lat, 0.95):.3f} ms")]
        out.append(_add_rate(kg, f"sqlite reference: add_triple (n={adds}, WAL, synchronous=FULL)", rng,
                             n_entities, adds, figures, "add_triple_per_s"))
        kg.close()
    return out


def print_table(rows: list[tuple[str, str, str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    line = "+".join("-" * (w + 2) for w in widths)
    print(line)
    for r in rows:
        print(" | ".join(cell.ljust(w) for cell, w in zip(r, widths)))
    print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entities", type=int, default=20_000)
    parser.add_argument("--triples", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--adds", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3, help="durable add_triple rounds (the median is reported)")
    parser.add_argument("--store", choices=["age", "tables", "both"], default="age",
                        help="which KG store to measure (both: AGE and tables in the same run)")
    parser.add_argument("--dsn", help="an empty database (default: a scratch database per store on the embedded "
                        "server)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the sqlite reference rows")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    chosen = ["age", "tables"] if args.store == "both" else [args.store]
    if args.dsn and len(chosen) > 1:
        parser.error("--dsn names one empty database: measure one --store at a time with it")
    server = None
    names: list[str] = []
    if args.dsn is None:
        from palace_pg.server import EmbeddedServer

        server = EmbeddedServer.from_env()
        if not server.running():
            server.start()
    try:
        figures: dict = {"entities": args.entities, "triples": args.triples, "queries": args.queries,
                         "adds": args.adds, "rounds": args.rounds}
        rows = []
        for store in chosen:
            dsn = args.dsn
            if dsn is None:
                names.append(f"bench_kg_{store}_{uuid.uuid4().hex[:8]}")
                dsn = server.create_database(names[-1])
            figures[store] = {}
            rows += run(dsn, args.entities, args.triples, args.queries, args.adds, args.rounds, figures[store],
                        store=store)
        if not args.no_sqlite:
            figures["sqlite"] = {}
            rows += sqlite_reference(args.entities, args.triples, args.queries, args.adds, figures["sqlite"])
        print_table([("measure", "result", "detail"), *rows])
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
            print(f"JSON: {args.json}")
    finally:
        if server is not None and not args.keep:
            for name in names:
                server.drop_database(name)


if __name__ == "__main__":
    main()
