"""`palace-pg cutover | rollback`: the renames that switch MemPalace to PostgreSQL and back."""

from __future__ import annotations

import sys

from .present import add_target, print_json


def cmd_cutover(args) -> int:
    from ..cutover import cutover

    if not args.yes:
        print("the cutover renames the Chroma palace aside; rerun with --yes to confirm", file=sys.stderr)
        return 2
    if args.sync:
        from ..cutover import cutover_with_sync
        from .sync import sync_options

        result = cutover_with_sync(sync_options(args))
        if args.json:
            print_json(result)
        else:
            print(f"cut over {result['palace']} in {result['downtime_seconds']} s of downtime "
                  f"(writers stopped → renamed): " + ", ".join(f"{k} {v} s" for k, v in result["downtime_parts"].items()))
            print(f"verified: {result['verify']['differences']} difference(s); Chroma palace kept at {result['backup']}")
        return 0
    print_json(cutover(args.palace, args.dsn))
    return 0


def cmd_rollback(args) -> int:
    from ..cutover import rollback

    if not args.yes:
        print("rollback renames folders back; rerun with --yes to confirm", file=sys.stderr)
        return 2
    print_json(rollback(args.palace))
    return 0


def register(sub) -> None:
    co = sub.add_parser("cutover", help="move the Chroma palace aside; leave a postgres palace in its place")
    co.add_argument("--palace", required=True)
    add_target(co)
    co.add_argument("--yes", action="store_true")
    co.add_argument("--sync", action="store_true",
                    help="after an online migration, with MemPalace's writers stopped: a last sync, phase 6 "
                         "against the final palace, then the renames (reports the downtime)")
    co.add_argument("--work-dir", help="where the source snapshot is copied")
    co.add_argument("--json", action="store_true", help="print the result as JSON")
    co.set_defaults(func=cmd_cutover)

    rb = sub.add_parser("rollback", help="undo the cutover (renames only)")
    rb.add_argument("--palace", required=True)
    rb.add_argument("--yes", action="store_true")
    rb.set_defaults(func=cmd_rollback)
