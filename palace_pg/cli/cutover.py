"""`palace-pg cutover | rollback`: the renames that switch MemPalace to PostgreSQL and back."""

from __future__ import annotations

import sys

from .present import add_target, print_json


def cmd_cutover(args) -> int:
    from ..cutover import cutover

    if not args.yes:
        print("the cutover renames the Chroma palace aside; rerun with --yes to confirm", file=sys.stderr)
        return 2
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
    co.set_defaults(func=cmd_cutover)

    rb = sub.add_parser("rollback", help="undo the cutover (renames only)")
    rb.add_argument("--palace", required=True)
    rb.add_argument("--yes", action="store_true")
    rb.set_defaults(func=cmd_rollback)
