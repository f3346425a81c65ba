"""`palace-pg sync`: catch a migrated target up with its palace while MemPalace keeps running."""

from __future__ import annotations

from pathlib import Path

from .migration import progress_for
from .present import add_target, print_json, table


def sync_options(args):
    from ..phases.base import MigrationOptions

    return MigrationOptions(palace=Path(args.palace), dsn=args.dsn, batch_size=getattr(args, "batch_size", 5000),
                            work_dir=Path(args.work_dir) if args.work_dir else None,
                            online=not getattr(args, "offline", False))


def cmd_sync(args) -> int:
    from ..engine import sync

    with progress_for(args) as lines:
        result = sync(sync_options(args), progress=lines, verify=args.verify)
    if args.json:
        print_json(result)
        return 0
    if not result["wrote"]:
        print(f"nothing to catch up: {result['message']} ({result['elapsed_seconds']} s)")
    else:
        rows = [{"collection": name, **figures} for name, figures in result["collections"].items()]
        print(table(rows, ["collection", "added", "updated", "deleted", "candidates_unchanged", "rejected"]))
        kg = result["kg"]
        if kg:
            print(f"KG: entities +{kg['entities_added']} ~{kg['entities_changed']}, "
                  f"triples +{kg['triples_added']} ~{kg['triples_changed']}")
        print(f"synced in {result['elapsed_seconds']} s ({', '.join(f'{k} {v} s' for k, v in result['seconds'].items())})")
    if args.verify:
        print(f"verified: {result['verify']['differences']} difference(s)")
    return 0


def register(sub) -> None:
    sy = sub.add_parser("sync", help="catch the target up with the palace (rows, KG facts and files written "
                        "since the last read); repeatable while MemPalace runs")
    sy.add_argument("--palace", required=True, help="the Chroma palace that was migrated (never written)")
    add_target(sy)
    sy.add_argument("--batch-size", type=int, default=5000, help="rows per transaction")
    sy.add_argument("--work-dir", help="where the source snapshot is copied")
    sy.add_argument("--offline", action="store_true", help="refuse a palace that is being written (as migrate does)")
    sy.add_argument("--verify", action="store_true", help="run phase 6 against the palace afterwards")
    sy.add_argument("--no-progress", action="store_true", help="no progress bars")
    sy.add_argument("--json", action="store_true", help="print the summary as JSON")
    sy.set_defaults(func=cmd_sync)
