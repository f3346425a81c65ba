"""`palace-pg preflight | migrate | verify | status`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import RejectedRows
from .present import add_target, print_checks, print_json, table
from .progress import PhaseLines


def _options(args):
    from ..engine import phase_range
    from ..phases.base import MigrationOptions

    only = args.phase or phase_range(getattr(args, "from_phase", None), getattr(args, "to_phase", None))
    return MigrationOptions(palace=Path(args.palace), dsn=args.dsn, batch_size=args.batch_size,
                            work_dir=Path(args.work_dir) if args.work_dir else None, restart=args.restart,
                            only=only, ef_search=args.ef_search, online=getattr(args, "online", False),
                            kg_store=args.kg_store)


def cmd_preflight(args) -> int:
    from ..engine import preflight

    report = preflight(args.palace, args.dsn, work_dir=args.work_dir, kg_store=args.kg_store, online=args.online)
    if args.json:
        print_json(report.as_dict())
    else:
        target = ((report.as_dict().get("facts") or {}).get("target") or {}).get("dsn", "")
        print(f"preflight of {Path(args.palace).resolve()} → {target}")
        print_checks(report.checks)
        print(f"verdict: {'ready to migrate' if report.ok else 'refused: fix the FAIL checks above'}")
        print(estimate_text(report.estimate_seconds))
    return 0 if report.ok else 3


def cmd_migrate(args) -> int:
    from ..engine import migrate, plan

    options = _options(args)
    if args.dry_run:
        result = plan(options)
        if args.json:
            print_json(result)
        else:
            print_checks(result["preflight"]["checks"])
            for p in result["phases"]:
                print(f"\n== {p['phase']} ({p['state']}): {p['title']}")
                print(json.dumps(p.get("plan", {}), indent=2, default=str))
            print(f"\n{estimate_text(result['estimate_seconds'])}\n(dry run: nothing was written)")
        return 0 if result["preflight"]["ok"] else 3
    with progress_for(args) as progress:
        summary = migrate(options, progress=progress)
    if args.json:
        print_json(summary)
    else:
        print_checks([c for c in summary["preflight"]["checks"] if c["status"] != "ok"])
        if summary["status"] == "already-done":
            print(summary["message"])
        else:
            phases = ", ".join(f"{k} {v} s" for k, v in summary["phase_seconds"].items())
            print(f"\nmigration {summary['status']} into {summary.get('target', '')} in {summary['elapsed_seconds']} s "
                  f"({'resumed' if summary['resumed'] else 'fresh'}): {phases}")
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


def estimate_text(estimate: dict | None) -> str:
    """The preflight's time estimate as a sentence: 'about 1.0 s: snapshot 0.1 s, load 0.2 s, …'."""
    if not estimate:
        return "estimate: none (preflight could not size the source)"
    steps = ", ".join(f"{k} {v} s" for k, v in estimate.items() if k != "total")
    total = estimate.get("total")
    return f"estimated time: about {total} s ({steps})" if total is not None else f"estimated time: {steps}"


def progress_for(args):
    """The phase lines on stderr, or a silent callback for --json and --no-progress."""
    import contextlib

    if getattr(args, "json", False) or getattr(args, "no_progress", False):
        return contextlib.nullcontext(None)
    return PhaseLines()


def _verification_table(report: dict, columns: list[str]) -> str:
    """One line per collection of a verify report: the given figures, then recall@10."""
    rows = [{"collection": name, **{c: figures.get(c) for c in columns},
             "recall@10": figures.get("recall", {}).get("recall_at_10", "")}
            for name, figures in report["collections"].items()]
    return table(rows, ["collection", *columns, "recall@10"])


def cmd_verify(args) -> int:
    """Phase 6 again, on demand: every row, vector and KG column against the source (exit 4 on a difference)."""
    from ..engine import verify
    from ..phases.base import MigrationOptions

    with progress_for(args) as progress:
        report = verify(MigrationOptions(palace=Path(args.palace), dsn=args.dsn,
                                         work_dir=Path(args.work_dir) if args.work_dir else None,
                                         ef_search=args.ef_search), progress=progress)
    if args.json:
        print_json(report)
        return 0
    print(_verification_table(report, ["source_rows", "target_rows", "rejected", "rows_compared",
                                       "mismatched_fields"]))
    kg = report["kg"]
    print(f"KG: entities {kg.get('entity_source')} → {kg.get('entity_target')}, "
          f"triples {kg.get('triple_source')} → {kg.get('triple_target')}")
    print(f"verified: {report['differences']} difference(s)")
    return 0


def cmd_status(args) -> int:
    from ..engine import status

    result = status(args.dsn)
    if args.json:
        print_json(result)
        return 0
    print(f"target: {result['target']}  complete: {result['complete']}")
    print(table(result["checkpoints"], ["phase", "unit", "state", "batches", "rows_done", "updated_at"]))
    return 0


def _add_kg_store(parser) -> None:
    parser.add_argument("--kg-store", choices=["auto", "age", "tables"], default="auto",
                        help="where the knowledge graph goes: the Apache AGE graph, plain tables (for servers "
                             "without AGE), or auto (AGE where the extension is installed, else tables)")


def register(sub) -> None:
    pf = sub.add_parser("preflight", help="read-only checks of source and target")
    pf.add_argument("--palace", required=True, help="the Chroma palace folder (never written)")
    add_target(pf)
    pf.add_argument("--work-dir", help="where the source snapshot is copied (default: $PALACE_PG_WORK_DIR, "
                    "else <tmp>/palace_pg-work)")
    pf.add_argument("--json", action="store_true", help="print the report as JSON")
    pf.add_argument("--online", action="store_true",
                    help="MemPalace may be writing: copy until the palace holds still, and accept a complete "
                         "online copy that `palace-pg sync` catches up")
    _add_kg_store(pf)
    pf.set_defaults(func=cmd_preflight)

    mg = sub.add_parser("migrate", help="run (or resume) the migration")
    mg.add_argument("--palace", "--from", dest="palace", required=True, help="the Chroma palace folder")
    mg.add_argument("--to", dest="dsn_to", default=None, help=argparse.SUPPRESS)
    add_target(mg)
    mg.add_argument("--batch-size", type=int, default=5000, help="rows per COPY and checkpoint")
    mg.add_argument("--dry-run", action="store_true", help="show the plan; change nothing")
    mg.add_argument("--restart", action="store_true", help="discard the target's copy and start again")
    mg.add_argument("--resume", action="store_true", help="(the default) continue from the checkpoints")
    mg.add_argument("--phase", action="append", help="run only this phase (repeatable)")
    mg.add_argument("--from-phase", dest="from_phase", help="run from this phase on (schema, drawers, collections, "
                    "indexes, kg, verify, done)")
    mg.add_argument("--to-phase", dest="to_phase", help="stop after this phase")
    mg.add_argument("--ef-search", type=int, default=200, help="hnsw.ef_search floor for verify's recall check (the backend's; grows with k and size)")
    _add_kg_store(mg)
    mg.add_argument("--work-dir", help="where the source snapshot is copied (default: $PALACE_PG_WORK_DIR, "
                    "else <tmp>/palace_pg-work)")
    mg.add_argument("--online", action="store_true",
                    help="MemPalace may keep writing: copy the palace until it holds still, migrate that copy, "
                         "then catch up with `palace-pg sync` and cut over with `cutover --sync`")
    mg.add_argument("--json", action="store_true", help="print the JSON summary")
    mg.add_argument("--no-progress", action="store_true", help="no progress bars (logs and summary only)")
    mg.add_argument("--allow-rejects", action="store_true",
                    help="exit 0 even when rows were kept in mempalace.rejects (otherwise exit 5)")
    mg.set_defaults(func=cmd_migrate)

    ve = sub.add_parser("verify", help="compare the target with the source again, row by row (exit 4 on a difference)")
    ve.add_argument("--palace", required=True, help="the Chroma palace that was migrated (or its backup after cutover)")
    add_target(ve)
    ve.add_argument("--work-dir", help="where the source snapshot is copied (default: $PALACE_PG_WORK_DIR, "
                    "else <tmp>/palace_pg-work)")
    ve.add_argument("--ef-search", type=int, default=200, help="hnsw.ef_search floor for the recall check (the backend's; grows with k and size)")
    ve.add_argument("--json", action="store_true", help="print the full report as JSON")
    ve.add_argument("--no-progress", action="store_true", help="no progress lines")
    ve.set_defaults(func=cmd_verify)

    st = sub.add_parser("status", help="the target's checkpoint table")
    add_target(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
