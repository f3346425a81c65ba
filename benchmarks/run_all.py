"""Run the three benchmarks and set their figures against issue 8's targets.

    python benchmarks/run_all.py [--drawers 160000] [--repeat 3] [--quick] [--skip migrate|search|kg]…
                                 [--palace P] [--builtin-repeat 1] [--results benchmarks/results]

Runs, each as a subprocess writing its own JSON into ``--results``:

* ``bench_migrate.py`` (migration vs mempalace's built-in pgvector copy) -> ``migrate.json``;
* ``bench_search.py`` (Chroma vs the postgres backend, filters, ef_search sweep) -> ``search.json``;
* ``bench_kg.py`` (AGE KG vs mempalace's sqlite KG), ``--repeat`` independent runs -> ``kg_<i>.json``.

Then writes ``summary.json`` (every sub-result, the machine, the versions, the
server settings) and ``summary.md`` (one table: figure / target / measured as
median (min–max) / met?, and a line on the machine), and prints the table.
Each sub-run's output is also kept in ``<name>.log``.

A benchmark that fails does not stop the others: its rows read "n/a", the
failure is recorded in summary.json, and the exit code is 1.

``--quick`` is a smoke test (3,000 drawers, one run, a small KG); it writes to
``<results>/quick/`` so it never overwrites the real figures, and its
summary.md says it is a smoke run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (str(ROOT), str(HERE)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench_migrate import server_settings  # noqa: E402

from palace_pg.metrics import spread  # noqa: E402

BENCHES = ("migrate", "search", "kg")
QUICK = {"drawers": 3000, "repeat": 1}
QUICK_KG = ["--entities", "2000", "--triples", "10000", "--queries", "200", "--adds", "200"]
EF_SWEEP = "40,100"
SEARCH_CASES = (("unfiltered", "unfiltered", 1.5), ("wing 1%", "filtered, 1% wing", 10.0),
                ("wing 11%", "filtered, 11% wing", 10.0))
RECALL_TARGET = 0.99


# ------------------------------------------------------------------ running

def cli_flags(script: Path) -> set[str]:
    """The long options a script's argparse accepts today (read from its --help)."""
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, cwd=ROOT)
    return set(re.findall(r"(?<![\w-])--[a-z][\w-]*", out.stdout))


def run_logged(name: str, cmd: list[str], log_path: Path) -> dict:
    """Run cmd from the repo root, echoing its output and keeping it in log_path."""
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    started = time.monotonic()
    with open(log_path, "w") as log, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True, bufsize=1) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
        code = proc.wait()
    return {"cmd": cmd, "exit_code": code, "seconds": round(time.monotonic() - started, 1), "log": str(log_path)}


def load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_migrate(args, out: Path) -> tuple[dict, dict | None]:
    path = out / "migrate.json"
    path.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / "bench_migrate.py"), "--repeat", str(args.repeat),
           "--builtin-repeat", str(args.builtin_repeat), "--json", str(path)]
    cmd += ["--palace", str(args.palace)] if args.palace else ["--drawers", str(args.drawers)]
    run = run_logged("migrate", cmd, out / "migrate.log")
    return run, load_json(path)


def run_search(args, out: Path) -> tuple[dict, dict | None]:
    """bench_search.py through whichever of its documented flags it has at the time."""
    script = HERE / "bench_search.py"
    flags = cli_flags(script)
    path = out / "search.json"
    path.unlink(missing_ok=True)
    cmd = [sys.executable, str(script), "--rows" if "--rows" in flags else "--drawers", str(args.drawers),
           "--out", str(path)]
    if "--rounds" in flags:
        cmd += ["--rounds", str(args.repeat)]
    if "--ef-search" in flags:
        cmd += ["--ef-search", EF_SWEEP]
    run = run_logged("search", cmd, out / "search.log")
    return run, load_json(path)


def run_kg(args, out: Path) -> tuple[dict, list[dict]]:
    """``--repeat`` independent runs (load, queries, one durable add round each)."""
    runs, results = [], []
    for i in range(1, args.repeat + 1):
        path = out / f"kg_{i}.json"
        path.unlink(missing_ok=True)
        cmd = [sys.executable, str(HERE / "bench_kg.py"), "--rounds", "1", "--json", str(path)]
        cmd += QUICK_KG if args.quick else []
        runs.append(run_logged(f"kg run {i}/{args.repeat}", cmd, out / f"kg_{i}.log"))
        if (res := load_json(path)) is not None:
            results.append(res)
    code = next((r["exit_code"] for r in runs if r["exit_code"]), 0)
    return {"runs": runs, "exit_code": code, "seconds": round(sum(r["seconds"] for r in runs), 1)}, results


# ------------------------------------------------------------------ facts

def machine() -> dict:
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "")
    except OSError:
        pass
    ram_gb = None
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        ram_gb = round(kb / 2**20, 1)
    except (OSError, AttributeError):
        pass
    return {"cores": os.cpu_count(), "ram_gb": ram_gb, "cpu_model": cpu or platform.processor() or "unknown",
            "python": platform.python_version(), "kernel": platform.release()}


def server_facts() -> tuple[dict, dict]:
    """(versions, settings) of the embedded server."""
    versions: dict = {}
    for pkg in ("chromadb", "mempalace"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    settings: dict = {}
    try:
        from palace_pg.server import EmbeddedServer

        server = EmbeddedServer.from_env()
        status = server.status()
        versions["postgresql"] = status.get("server_version")
        versions["pgvector"] = status.get("extensions", {}).get("vector")
        versions["age"] = status.get("extensions", {}).get("age")
        settings = server_settings(server.url()) | {"mode": status.get("mode")}
    except Exception as exc:  # the summary still says what it could
        settings = {"error": f"{type(exc).__name__}: {exc}"}
    return versions, settings


# ------------------------------------------------------------------ table

def dig(obj, *keys, default=None):
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


def first(obj, *paths):
    """The first of several key paths present in obj (bench_search's JSON may change shape)."""
    for path in paths:
        value = dig(obj, *path)
        if value is not None:
            return value
    return None


def fig(values) -> dict | None:
    values = [v for v in values if isinstance(v, (int, float))]
    return spread(values) if values else None


def single(value) -> dict | None:
    return fig([value]) if value is not None else None


def fmt(f: dict | None, unit: str = "", digits: int = 2) -> str:
    if not f:
        return "n/a"
    text = f"{f['median']:,.{digits}f}{unit}"
    if f["runs"] > 1:
        text += f" ({f['min']:,.{digits}f}–{f['max']:,.{digits}f}, {f['runs']} runs)"
    else:
        text += " (1 run)"
    return text


def row(figure: str, target: str, measured: str, met: bool | None, value: dict | None = None) -> dict:
    return {"figure": figure, "target": target, "measured": measured, "met": met, "value": value}


def migrate_rows(m: dict | None) -> list[dict]:
    pp, bi = dig(m, "palace_pg") or {}, dig(m, "builtin_pgvector_copy") or {}
    total, rss, builtin = pp.get("total_seconds"), pp.get("peak_rss_mb"), bi.get("total_seconds")
    speed = dig(m, "speedup_vs_builtin")
    speed_fig = None
    if speed is not None and total and builtin:
        speed_fig = {"median": speed, "min": round(builtin["min"] / total["max"], 2),
                     "max": round(builtin["max"] / total["min"], 2), "runs": total["runs"]}
    rows_ = [
        row(f"Migration, total ({dig(m, 'rows', default='?'):,} rows)" if m else "Migration, total",
            "≤ 75 s", fmt(total, " s", 1), total["median"] <= 75 if total else None, total),
        row("Migration vs built-in pgvector copy", "≥ 5× faster",
            (f"{fmt(speed_fig, '×')}; built-in copy {fmt(builtin, ' s', 1)}" if speed_fig else "n/a"),
            speed >= 5 if speed is not None else None, speed_fig),
        row("Migrator peak RSS", "≤ 1 GB (1,024 MB)", fmt(rss, " MB", 0),
            rss["median"] <= 1024 if rss else None, rss),
    ]
    if pp.get("rows_per_second"):
        rows_.append(row("Migration rate", "—", f"{pp['rows_per_second']:,} rows/s (median run)", None))
    return rows_


def search_result(s: dict | None, system: str, label: str) -> dict | None:
    keys = {"palace_pg": ("palace_pg", "postgres"), "chroma": ("chroma",),
            "builtin": ("builtin_pgvector", "mempalace_pgvector", "builtin", "pgvector")}[system]
    return first(s, *[(k, label) for k in keys])


def search_fig(res: dict | None) -> tuple[dict | None, float | None]:
    if not isinstance(res, dict):
        return None, None
    p50 = res.get("p50_ms")
    rounds = res.get("rounds_p50_ms") or ([p50] if p50 is not None else [])
    f = fig(rounds)
    if f is not None and p50 is not None:
        f["median"] = p50  # the script's own median of rounds
    recall = first(res, ("recall_at_k",), ("recall_at_10",), ("recall",))
    return f, recall


def search_rows(s: dict | None) -> list[dict]:
    rows_ = []
    for label, name, limit in SEARCH_CASES:
        f, recall = search_fig(search_result(s, "palace_pg", label))
        met = None if f is None or recall is None else (f["median"] <= limit and recall >= RECALL_TARGET)
        measured = "n/a" if f is None else f"p50 {fmt(f, ' ms')}; recall@10 {recall}"
        rows_.append(row(f"Search top-10, {name} (palace_pg backend)",
                         f"p50 ≤ {limit:g} ms at recall@10 ≥ {RECALL_TARGET}", measured, met,
                         {"p50_ms": f, "recall_at_10": recall}))
    for system, title in (("builtin", "mempalace built-in pgvector"), ("chroma", "Chroma")):
        for label, name, _limit in SEARCH_CASES:
            f, recall = search_fig(search_result(s, system, label))
            if f is not None:
                rows_.append(row(f"Search top-10, {name} ({title})", "—",
                                 f"p50 {fmt(f, ' ms')}; recall@10 {recall}", None, {"p50_ms": f, "recall_at_10": recall}))
    pg = first(s, ("palace_pg",), ("postgres",)) or {}
    for label in sorted((k for k in pg if k.startswith("unfiltered ef=")), key=lambda k: int(re.sub(r"\D", "", k) or 0)):
        f, recall = search_fig(pg[label])
        if f is not None:
            rows_.append(row(f"Search top-10, {label.replace('unfiltered ', 'unfiltered, ')} (palace_pg backend)",
                             "—", f"p50 {fmt(f, ' ms')}; recall@10 {recall}", None, {"p50_ms": f, "recall_at_10": recall}))
    return rows_


def kg_rows(runs: list[dict]) -> list[dict]:
    hop = fig([dig(r, "age", "query_entity", "outgoing", "p50_ms") for r in runs])
    add = fig([dig(r, "age", "add_triple_per_s", "median") for r in runs])
    floor = fig([dig(r, "age", "commit_floor_p50_ms", "median") for r in runs])
    timeline = fig([dig(r, "age", "timeline", "p50_ms") for r in runs])
    sq_hop = fig([dig(r, "sqlite", "query_entity_outgoing_p50_ms") for r in runs])
    sq_add = fig([dig(r, "sqlite", "add_triple_per_s") for r in runs])
    load = fig([dig(r, "age", "load_seconds") for r in runs])
    size = f"{runs[0]['entities']:,} entities, {runs[0]['triples']:,} triples" if runs else "?"
    durable = dig(runs[0], "age", "synchronous_commit") == "on" if runs else None
    rows_ = [
        row(f"KG query_entity 1-hop p50 (AGE, {size})", "≤ 1 ms", fmt(hop, " ms", 3),
            hop["median"] <= 1 if hop else None, hop),
        row("KG add_triple, durable (one commit each)" if durable is not False else
            "KG add_triple (synchronous_commit NOT on: not durable)", "≥ 500 /s",
            fmt(add, " /s", 0) + (f"; commit floor p50 {fmt(floor, ' ms', 2)}" if floor else ""),
            add["median"] >= 500 if add else None, add),
        row("KG timeline p50 (AGE)", "—", fmt(timeline, " ms", 3), None, timeline),
        row("KG bulk load (AGE)", "—", fmt(load, " s", 2), None, load),
    ]
    if sq_hop:
        rows_ += [row("KG query_entity 1-hop p50 (mempalace sqlite)", "—", fmt(sq_hop, " ms", 3), None, sq_hop),
                  row("KG add_triple (mempalace sqlite, synchronous=FULL)", "—", fmt(sq_add, " /s", 0), None, sq_add)]
    return rows_


def table(rows_: list[dict]) -> str:
    mark = {True: "yes", False: "**no**", None: ""}
    lines = ["| figure | target | measured (median, min–max) | met? |", "|---|---|---|---|"]
    lines += [f"| {r['figure']} | {r['target']} | {r['measured']} | {mark[r['met']]} |" for r in rows_]
    return "\n".join(lines)


def context_line(summary: dict) -> str:
    m, v, s = summary["machine"], summary["versions"], summary["server_settings"]
    settings = ", ".join(f"{k}={val}" for k, val in sorted(s.items()) if k != "mode")
    vec = summary["vectors"]
    return (f"Machine: {m['cores']} cores, {m['ram_gb']} GB RAM, {m['cpu_model']}. "
            f"Versions: PostgreSQL {v.get('postgresql')}, pgvector {v.get('pgvector')}, AGE {v.get('age')}, "
            f"chromadb {v.get('chromadb')}, mempalace {v.get('mempalace')}. "
            f"Server ({s.get('mode', '?')}): {settings}. "
            f"Vectors: migration palace {vec['migrate']}; search {vec['search']}; KG rows synthetic. "
            f"Date: {summary['date']}.")


# ------------------------------------------------------------------ main

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--drawers", type=int, default=160_000)
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (median, min and max are reported)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke test: {QUICK['drawers']} drawers, repeat {QUICK['repeat']}, a small KG; "
                         "results go to <results>/quick/")
    ap.add_argument("--skip", action="append", choices=BENCHES, default=[], help="repeatable")
    ap.add_argument("--palace", type=Path, help="migrate this existing palace instead of generating one")
    ap.add_argument("--builtin-repeat", type=int, default=1, help="runs of the (slow) built-in backend copy")
    ap.add_argument("--results", type=Path, default=HERE / "results")
    args = ap.parse_args(argv)
    if args.quick:
        args.drawers, args.repeat = QUICK["drawers"], QUICK["repeat"]
        args.results = args.results / "quick"
    args.results = args.results.resolve()
    if args.palace:
        args.palace = args.palace.resolve()
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    out = args.results
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    runs: dict = {}
    migrate = search = None
    kg: list[dict] = []
    if "migrate" not in args.skip:
        runs["migrate"], migrate = run_migrate(args, out)
    if "search" not in args.skip:
        runs["search"], search = run_search(args, out)
    if "kg" not in args.skip:
        runs["kg"], kg = run_kg(args, out)
    failed = [name for name, r in runs.items() if r["exit_code"] != 0] + \
             [name for name, res in (("migrate", migrate), ("search", search), ("kg", kg or None))
              if name in runs and not res and runs[name]["exit_code"] == 0]

    versions, settings = server_facts()
    rows_ = []
    if "migrate" not in args.skip:
        rows_ += migrate_rows(migrate)
    if "search" not in args.skip:
        rows_ += search_rows(search)
    if "kg" not in args.skip:
        rows_ += kg_rows(kg)
    summary = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": args.quick, "drawers": args.drawers, "repeat": args.repeat, "skipped": args.skip,
        "palace": str(args.palace) if args.palace else None,
        "machine": machine(), "versions": versions, "server_settings": settings,
        "vectors": {
            "migrate": dig(migrate, "facts", "vectors") or ("as in the given palace" if args.palace else "n/a"),
            "search": first(search, ("vectors",), ("facts", "vectors")) or
            ("synthetic clustered (palace_pg.testing.backend.synthetic_drawers)" if search else "n/a"),
        },
        "failed": failed, "runs": runs, "seconds": round(time.monotonic() - started, 1),
        "table": rows_, "migrate": migrate, "search": search, "kg": kg,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = table(rows_)
    head = ""
    if args.quick:
        head = (f"**Smoke run (--quick: {args.drawers} drawers, {args.repeat} run): "
                "not the benchmark's figures.**\n\n")
    if failed:
        head += f"**Failed: {', '.join(failed)}** (see summary.json).\n\n"
    (out / "summary.md").write_text(f"{head}{md}\n\n{context_line(summary)}\n")
    print("\n" + head + md + "\n\n" + context_line(summary))
    print(f"\nwrote {out / 'summary.json'} and {out / 'summary.md'} in {summary['seconds']} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
