"""`palace-pg runbooks | demo`: the notebooks under papermill, and the README's main job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..dsn import redact
from .migration import cmd_migrate
from .present import add_target, print_json


def cmd_runbooks(args) -> int:
    from ..runbook.evidence import run_runbooks

    result = run_runbooks(palace=args.palace, evidence=args.evidence, dsn=args.dsn, confirm=args.confirm,
                          parameters=dict(kv.split("=", 1) for kv in args.param or []),
                          progress=None if args.json else _notebook_progress)
    if args.json:
        print_json(result)
    else:
        print(_outcome(result))
    return 0 if result.get("ok") else 1


def _outcome(result: dict) -> str:
    failed = result.get("failed")
    head = f"FAILED in {failed['notebook']}: {failed['error']}" if failed else "ok: every runbook passed"
    return "\n".join([head, f"  evidence: {result['evidence']}", f"  manifest: {result['manifest']}",
                      *(f"  notebook: {n}" for n in result.get("notebooks") or [])])


def cmd_demo(args) -> int:
    """The README's main job: server, a generated palace, the migration (and the runbooks when present)."""
    from ..server import EmbeddedServer

    server = EmbeddedServer.from_env()
    print(f"== embedded PostgreSQL: {server.start()['extensions']}", file=sys.stderr)
    demo = Path(args.dir).resolve()
    palace = demo / "palace"
    if not palace.exists():
        from ..synth import make_palace

        print(f"== generating a {args.drawers}-drawer demo palace in {palace}", file=sys.stderr)
        make_palace(palace, drawers=args.drawers, seed=0)
    dsn = server.create_database(args.database)
    from ..runbook.demo import record_cli_demo

    record_cli_demo(demo, palace, args.database, demo / "evidence")
    if args.runbooks:
        from ..runbook.evidence import run_runbooks, runbooks_dir

        result = run_runbooks(palace=palace, evidence=demo / "evidence", dsn=dsn, confirm=True,
                              progress=_notebook_progress)
        if args.json:
            print_json(result)
        print(f"\n== {_outcome(result).splitlines()[0]}"
              f"\n   the executed runbooks and their manifest: {demo / 'evidence'}"
              f"\n   the demo palace: {palace}\n   the demo database: {redact(dsn)}"
              f"\n   continue this demo interactively (same palace and database; evidence goes to "
              f"{demo / 'evidence-jupyterlab'}):\n     PALACE_PG_DEMO={demo} {_here(_jupyter())} lab "
              f"{_here(runbooks_dir())}\n   start again: rm -r {_here(demo)} && palace-pg demo --runbooks"
              f"\n   the server keeps running: palace-pg db stop", file=sys.stderr)
        return 0 if result.get("ok") else 1
    ns = argparse.Namespace(palace=str(palace), dsn=dsn, batch_size=5000, work_dir=None, restart=False, phase=None,
                            ef_search=200, dry_run=False, json=False, no_progress=False, allow_rejects=False)
    return cmd_migrate(ns)


def _jupyter() -> Path:
    """The venv's jupyter (it is not on PATH unless the venv is activated)."""
    return Path(sys.executable).with_name("jupyter")


def _here(path: Path) -> str:
    """A path as the operator types it: relative to the current folder when inside it."""
    path = Path(path).absolute()
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)


def _notebook_progress(notebook: str, cell: int, cells: int, title: str) -> None:
    """One line per cell as papermill runs it, so a long cell is never a silent terminal."""
    print(f"   {notebook}  cell {cell}/{cells}  {title}", file=sys.stderr, flush=True)


def register(sub) -> None:
    rn = sub.add_parser("runbooks", help="run 01→03 with papermill and archive the evidence")
    rn.add_argument("--palace", required=True, help="the Chroma palace to migrate (never written)")
    rn.add_argument("--evidence", required=True, help="the folder the executed notebooks and manifest are archived in")
    add_target(rn)
    rn.add_argument("--confirm", action="store_true", help="pass the write gate of 02_migrate")
    rn.add_argument("-p", "--param", action="append", help="extra notebook parameter NAME=VALUE")
    rn.add_argument("--json", action="store_true", help="print the result as JSON (no progress lines)")
    rn.set_defaults(func=cmd_runbooks)

    de = sub.add_parser("demo", help="start the server, generate a demo palace, migrate it")
    de.add_argument("--dir", default="demo", help="where the demo palace and the evidence go (default ./demo)")
    de.add_argument("--drawers", type=int, default=2000, help="size of the generated palace")
    de.add_argument("--database", default="palace_demo", help="the database on the embedded server to migrate into")
    de.add_argument("--runbooks", action="store_true", help="run the three runbooks and archive the evidence")
    de.add_argument("--json", action="store_true", help="also print the runbooks' result as JSON")
    de.set_defaults(func=cmd_demo)
