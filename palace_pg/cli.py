"""The `palace-pg` command line.  The library is quiet; this module presents.

Exit codes: 0 success, 1 error, 2 usage, 3 preflight refusal (or a lock / a
changed source), 4 verification failure, 5 rows kept in mempalace.rejects.
"""

from __future__ import annotations

import argparse
import json
import os
import logging
import sys
from pathlib import Path

from . import __version__
from .dsn import redact
from .errors import PalacePgError, RejectedRows

log = logging.getLogger("palace_pg.cli")


# -- presentation helpers -----------------------------------------------------------------
def _print_json(value) -> None:
    print(json.dumps(value, indent=2, default=str))


def _table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) for c in columns)
    out = [line, "  ".join("-" * widths[c] for c in columns)]
    out += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(out)


_MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def _print_checks(checks) -> None:
    for c in checks:
        c = c if isinstance(c, dict) else c.__dict__
        print(f"  [{_MARK.get(c['status'], c['status'])}] {c['name']}: {c['detail']}")
        if c.get("fix") and c["status"] != "ok":
            print(f"         fix: {c['fix']}")


class _Bars:
    """One tqdm bar per (phase, unit), on stderr."""

    def __init__(self) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._bars: dict = {}

    def __call__(self, event) -> None:
        key = (event.phase, event.unit)
        if not event.total or not event.unit:
            if event.message and event.message != "done":
                print(f"== {event.phase}: {event.message}", file=sys.stderr)
            return
        bar = self._bars.get(key)
        if bar is None:
            bar = self._bars[key] = self._tqdm(total=event.total, desc=f"{event.phase}:{event.unit}",
                                               unit="row", file=sys.stderr, leave=True, initial=0)
        bar.n = event.done
        bar.refresh()
        if event.done >= event.total:
            bar.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


# -- commands -----------------------------------------------------------------------------
def _server(args):
    from .server import EmbeddedServer

    server = EmbeddedServer.from_env()
    if getattr(args, "port", None):
        server.port = args.port
    if getattr(args, "data_dir", None):
        server.data_dir = Path(args.data_dir)
    return server


def cmd_db(args) -> int:
    server = _server(args)
    if args.action == "start":
        facts = server.start(durable=False if args.fast else (True if args.durable else None))
    elif args.action == "stop":
        facts = server.stop()
    elif args.action == "install":
        facts = {"runtime": str(server.install(force=args.force))}
    elif args.action == "url":
        print(server.url(args.database))
        return 0
    elif args.action == "create":
        if not args.database:
            raise PalacePgError("db create needs --database NAME", "e.g. palace-pg db create --database palace_prod")
        if not server.running():
            server.start()
        print(server.create_database(args.database))  # with vector and age, ready for a migration
        return 0
    else:
        facts = server.status()
    if args.json:
        _print_json(facts)
    else:
        for k, v in facts.items():
            print(f"{k:>15}: {v}")
    return 0 if args.action != "status" or facts.get("running") else 1


def cmd_make_palace(args) -> int:
    from tqdm.auto import tqdm

    from .source.generate import make_palace

    bar = tqdm(total=args.drawers, desc="drawers", unit="row", file=sys.stderr)

    def progress(done, total):
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        facts = make_palace(args.out, drawers=args.drawers, seed=args.seed, progress=progress,
                            kg_entities=args.kg_entities, kg_triples=args.kg_triples, assets=not args.no_assets,
                            vectors=args.vectors, scratch=None if args.scratch == "none" else args.scratch)
    finally:
        bar.close()
    _print_json(facts)
    return 0


def _options(args):
    from .engine import phase_range
    from .phases.base import MigrationOptions

    only = args.phase or phase_range(getattr(args, "from_phase", None), getattr(args, "to_phase", None))
    return MigrationOptions(palace=Path(args.palace), dsn=args.dsn, batch_size=args.batch_size,
                            work_dir=Path(args.work_dir) if args.work_dir else None, restart=args.restart,
                            only=only, ef_search=args.ef_search)


def cmd_preflight(args) -> int:
    from .engine import preflight

    report = preflight(args.palace, args.dsn, work_dir=args.work_dir)
    if args.json:
        _print_json(report.as_dict())
    else:
        print(f"preflight of {args.palace}")
        _print_checks(report.checks)
        print(f"estimate: {report.estimate_seconds}")
    return 0 if report.ok else 3


def cmd_migrate(args) -> int:
    from .engine import migrate, plan

    options = _options(args)
    if args.dry_run:
        result = plan(options)
        if args.json:
            _print_json(result)
        else:
            _print_checks(result["preflight"]["checks"])
            for p in result["phases"]:
                print(f"\n== {p['phase']} ({p['state']}): {p['title']}")
                print(json.dumps(p.get("plan", {}), indent=2, default=str))
            print(f"\nestimate (s): {result['estimate_seconds']}\n(dry run: nothing was written)")
        return 0 if result["preflight"]["ok"] else 3
    bars = None if args.json or args.no_progress else _Bars()
    try:
        summary = migrate(options, progress=bars)
    finally:
        if bars:
            bars.close()
    if args.json:
        _print_json(summary)
    else:
        _print_checks([c for c in summary["preflight"]["checks"] if c["status"] != "ok"])
        if summary["status"] == "already-done":
            print(summary["message"])
        else:
            print(f"\nmigration {summary['status']} in {summary['elapsed_seconds']} s "
                  f"({'resumed' if summary['resumed'] else 'fresh'}); phases: {summary['phase_seconds']}")
            verify = summary["results"].get("verify")
            if isinstance(verify, dict) and "collections" in verify:
                print(_verification_table(verify, ["source_rows", "target_rows", "rejected"]))
            done = summary["results"].get("done")
            if isinstance(done, dict) and done.get("cutover"):
                print("\ncutover steps:")
                for i, step in enumerate(done["cutover"], 1):
                    print(f"  {i}. {step}")
    if summary.get("rejected") and not args.allow_rejects:
        raise RejectedRows(summary["rejected"])
    return 0


def _verification_table(report: dict, columns: list[str]) -> str:
    """One line per collection of a verify report: the given figures, then recall@10."""
    rows = [{"collection": name, **{c: figures.get(c) for c in columns},
             "recall@10": figures.get("recall", {}).get("recall_at_10", "")}
            for name, figures in report["collections"].items()]
    return _table(rows, ["collection", *columns, "recall@10"])


def cmd_verify(args) -> int:
    """Phase 6 again, on demand: every row, vector and KG column against the source (exit 4 on a difference)."""
    from .engine import verify
    from .phases.base import MigrationOptions

    report = verify(MigrationOptions(palace=Path(args.palace), dsn=args.dsn,
                                     work_dir=Path(args.work_dir) if args.work_dir else None,
                                     ef_search=args.ef_search))
    if args.json:
        _print_json(report)
        return 0
    print(_verification_table(report, ["source_rows", "target_rows", "rejected", "rows_compared",
                                       "mismatched_fields"]))
    kg = report["kg"]
    print(f"KG: entities {kg.get('entity_source')} → {kg.get('entity_target')}, "
          f"triples {kg.get('triple_source')} → {kg.get('triple_target')}")
    print(f"verified: {report['differences']} difference(s)")
    return 0


def cmd_status(args) -> int:
    from .engine import status

    result = status(args.dsn)
    if args.json:
        _print_json(result)
        return 0
    print(f"target: {result['target']}  complete: {result['complete']}")
    print(_table(result["checkpoints"], ["phase", "unit", "state", "batches", "rows_done", "updated_at"]))
    return 0


def cmd_cutover(args) -> int:
    from .cutover import cutover

    if not args.yes:
        print("the cutover renames the Chroma palace aside; rerun with --yes to confirm", file=sys.stderr)
        return 2
    _print_json(cutover(args.palace, args.dsn))
    return 0


def cmd_rollback(args) -> int:
    from .cutover import rollback

    if not args.yes:
        print("rollback renames folders back; rerun with --yes to confirm", file=sys.stderr)
        return 2
    _print_json(rollback(args.palace))
    return 0


def cmd_runbooks(args) -> int:
    from .runbook.evidence import run_runbooks

    result = run_runbooks(palace=args.palace, evidence=args.evidence, dsn=args.dsn, confirm=args.confirm,
                          parameters=dict(kv.split("=", 1) for kv in args.param or []))
    _print_json(result)
    return 0 if result.get("ok") else 1


def _pth_path() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["purelib"]) / "palace_pg_kg.pth"


def cmd_kg_hook(args) -> int:
    """Install the one-line .pth that lets mempalace's own CLI and MCP use the AGE graph.

    It is inert unless MEMPALACE_KG_BACKEND=age (or kg_backend: age in mempalace's config.json).
    """
    from .kg.hook import PTH_LINE

    pth = _pth_path()
    if args.action == "install":
        pth.write_text(PTH_LINE)
        print(f"installed {pth}; select the AGE graph with MEMPALACE_KG_BACKEND=age")
    elif args.action == "uninstall":
        pth.unlink(missing_ok=True)
        print(f"removed {pth}")
    else:
        print(f"{pth}: {'installed' if pth.is_file() else 'not installed'}")
    return 0


def cmd_demo(args) -> int:
    """The README's main job: server, a generated palace, the migration (and the runbooks when present)."""
    from .server import EmbeddedServer

    server = EmbeddedServer.from_env()
    print(f"== embedded PostgreSQL: {server.start()['extensions']}", file=sys.stderr)
    demo = Path(args.dir).resolve()
    palace = demo / "palace"
    if not palace.exists():
        from .source.generate import make_palace

        print(f"== generating a {args.drawers}-drawer demo palace in {palace}", file=sys.stderr)
        make_palace(palace, drawers=args.drawers, seed=0)
    dsn = server.create_database(args.database)
    if args.runbooks:
        from .runbook.evidence import run_runbooks

        result = run_runbooks(palace=palace, evidence=demo / "evidence", dsn=dsn, confirm=True)
        _print_json(result)
        print(f"\n== {'done' if result.get('ok') else 'FAILED'}: the executed runbooks and their manifest are in "
              f"{demo / 'evidence'}\n   open them (or run them yourself) in JupyterLab: jupyter lab runbooks/\n"
              f"   the demo database: {redact(dsn)}\n   the server keeps running: palace-pg db stop", file=sys.stderr)
        return 0 if result.get("ok") else 1
    ns = argparse.Namespace(palace=str(palace), dsn=dsn, batch_size=5000, work_dir=None, restart=False, phase=None,
                            ef_search=100, dry_run=False, json=False, no_progress=False, allow_rejects=False)
    return cmd_migrate(ns)


# -- parser -------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="palace-pg",
        description="Move a MemPalace palace off ChromaDB and its sqlite KG onto one PostgreSQL database "
                    "(pgvector + Apache AGE), losing nothing and proving it.",
        epilog="typical run: palace-pg db start; palace-pg preflight --palace P; palace-pg migrate --palace P; "
               "palace-pg cutover --palace P --yes.  Exit codes: 0 ok, 1 error, 2 usage, 3 refused by preflight "
               "(or locked, or the source changed), 4 verification failed, 5 rows kept in mempalace.rejects.")
    p.add_argument("--version", action="version", version=f"palace_pg {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="the embedded PostgreSQL 18.6 + AGE + pgvector server")
    db.add_argument("action", choices=["start", "stop", "status", "url", "create", "install"],
                    help="start (idempotent; durable unless --fast), stop, status, url (the DSN), "
                         "create (a database with vector and age: --database NAME), install (the runtime only)")
    db.add_argument("--database", help="with create or url: the database's name")
    db.add_argument("--fast", action="store_true", help="fsync off: for tests only, never for real data")
    db.add_argument("--durable", action="store_true", help="switch a fast server back to durable")
    db.add_argument("--port", type=int, help="default $PALACE_PG_PORT, else 54329")
    db.add_argument("--data-dir", help="default $PALACE_PG_DATA, else $PALACE_PG_HOME/data")
    db.add_argument("--force", action="store_true", help="with install: rebuild the runtime")
    db.add_argument("--json", action="store_true", help="print the facts as JSON")
    db.set_defaults(func=cmd_db)

    mk = sub.add_parser("make-palace", help="write a deterministic MemPalace palace for demos and tests")
    mk.add_argument("out", help="a new folder for the palace; hallways.json and tunnels.json go beside it, "
                    "so give it its own parent (e.g. /tmp/demo/palace)")
    mk.add_argument("--drawers", type=int, default=1000, help="drawers to write (closets and assets follow)")
    mk.add_argument("--seed", type=int, default=0, help="the same seed writes the same palace")
    mk.add_argument("--kg-entities", type=int, default=None, help="default drawers/8, at most 20,000")
    mk.add_argument("--kg-triples", type=int, default=None, help="default drawers*0.625, at most 100,000")
    mk.add_argument("--no-assets", action="store_true", help="no mempalace_assets collection")
    mk.add_argument("--vectors", choices=["auto", "minilm", "synthetic"], default="auto",
                    help="real MiniLM embeddings when the model is installed (auto), or clustered synthetic ones")
    mk.add_argument("--scratch", default="auto",
                    help="where to build before copying into OUT: auto (/dev/shm when it has room), a folder, "
                         "or 'none' to build in place")
    mk.set_defaults(func=cmd_make_palace)

    def target(sp):
        sp.add_argument("--dsn", default=None, help="target DSN (default $PALACE_PG_DSN, else the embedded server); "
                        "keep the password in PGPASSWORD or ~/.pgpass")

    pf = sub.add_parser("preflight", help="read-only checks of source and target")
    pf.add_argument("--palace", required=True, help="the Chroma palace folder (never written)")
    target(pf)
    pf.add_argument("--work-dir", help="where the source snapshot is copied (default: $PALACE_PG_WORK_DIR, "
                    "else <tmp>/palace_pg-work)")
    pf.add_argument("--json", action="store_true", help="print the report as JSON")
    pf.set_defaults(func=cmd_preflight)

    mg = sub.add_parser("migrate", help="run (or resume) the migration")
    mg.add_argument("--palace", "--from", dest="palace", required=True, help="the Chroma palace folder")
    mg.add_argument("--to", dest="dsn_to", default=None, help=argparse.SUPPRESS)
    target(mg)
    mg.add_argument("--batch-size", type=int, default=5000, help="rows per COPY and checkpoint")
    mg.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
    mg.add_argument("--restart", action="store_true", help="discard the target's copy and start again")
    mg.add_argument("--resume", action="store_true", help="(the default) continue from the checkpoints")
    mg.add_argument("--phase", action="append", help="run only this phase (repeatable)")
    mg.add_argument("--from-phase", dest="from_phase", help="run from this phase on (schema, drawers, collections, "
                    "indexes, kg, verify, done)")
    mg.add_argument("--to-phase", dest="to_phase", help="stop after this phase")
    mg.add_argument("--ef-search", type=int, default=100, help="hnsw.ef_search for verify's recall check")
    mg.add_argument("--work-dir", help="where the source snapshot is copied (default: $PALACE_PG_WORK_DIR, "
                    "else <tmp>/palace_pg-work)")
    mg.add_argument("--json", action="store_true", help="print the JSON summary")
    mg.add_argument("--no-progress", action="store_true", help="no progress bars (logs and summary only)")
    mg.add_argument("--allow-rejects", action="store_true",
                    help="exit 0 even when rows were kept in mempalace.rejects (otherwise exit 5)")
    mg.set_defaults(func=cmd_migrate)

    ve = sub.add_parser("verify", help="compare the target with the source again, row by row (exit 4 on a difference)")
    ve.add_argument("--palace", required=True, help="the Chroma palace that was migrated (or its backup after cutover)")
    target(ve)
    ve.add_argument("--work-dir", help="where the source snapshot is copied (default: $PALACE_PG_WORK_DIR, "
                    "else <tmp>/palace_pg-work)")
    ve.add_argument("--ef-search", type=int, default=100, help="hnsw.ef_search for the recall check")
    ve.add_argument("--json", action="store_true", help="print the full report as JSON")
    ve.set_defaults(func=cmd_verify)

    st = sub.add_parser("status", help="the target's checkpoint table")
    target(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    co = sub.add_parser("cutover", help="move the Chroma palace aside; leave a postgres palace in its place")
    co.add_argument("--palace", required=True)
    target(co)
    co.add_argument("--yes", action="store_true")
    co.set_defaults(func=cmd_cutover)

    rb = sub.add_parser("rollback", help="undo the cutover (renames only)")
    rb.add_argument("--palace", required=True)
    rb.add_argument("--yes", action="store_true")
    rb.set_defaults(func=cmd_rollback)

    rn = sub.add_parser("runbooks", help="run 01→03 with papermill and archive the evidence")
    rn.add_argument("--palace", required=True, help="the Chroma palace to migrate (never written)")
    rn.add_argument("--evidence", required=True, help="the folder the executed notebooks and manifest are archived in")
    target(rn)
    rn.add_argument("--confirm", action="store_true", help="pass the write gate of 02_migrate")
    rn.add_argument("-p", "--param", action="append", help="extra notebook parameter NAME=VALUE")
    rn.set_defaults(func=cmd_runbooks)

    kh = sub.add_parser("kg-hook", help="let mempalace's own CLI/MCP answer KG queries from AGE (.pth hook)")
    kh.add_argument("action", choices=["install", "uninstall", "status"])
    kh.set_defaults(func=cmd_kg_hook)

    de = sub.add_parser("demo", help="start the server, generate a demo palace, migrate it")
    de.add_argument("--dir", default="demo", help="where the demo palace and the evidence go (default ./demo)")
    de.add_argument("--drawers", type=int, default=2000, help="size of the generated palace")
    de.add_argument("--database", default="palace_demo", help="the database on the embedded server to migrate into")
    de.add_argument("--runbooks", action="store_true", help="run the three runbooks and archive the evidence")
    de.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "dsn_to", None) and not getattr(args, "dsn", None):
        args.dsn = args.dsn_to
    logging.basicConfig(level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except PalacePgError as exc:
        print(f"palace-pg: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("palace-pg: interrupted; rerun to resume from the last checkpoint", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `palace-pg status | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
