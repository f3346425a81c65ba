"""`palace-pg cutover | rollback`: the renames that switch MemPalace to PostgreSQL and back."""

from __future__ import annotations

import sys

from .present import Bars, add_target, print_json


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
    bars = Bars() if args.with_writes and not args.no_progress else None
    try:
        print_json(rollback(args.palace, with_writes=args.with_writes, dsn=args.dsn, progress=bars))
    finally:
        if bars:
            bars.close()
    return 0


def register(sub) -> None:
    co = sub.add_parser("cutover", help="move the Chroma palace aside; leave a postgres palace in its place")
    co.add_argument("--palace", required=True)
    add_target(co)
    co.add_argument("--yes", action="store_true")
    co.set_defaults(func=cmd_cutover)

    rb = sub.add_parser("rollback", help="undo the cutover (renames; --with-writes exports PostgreSQL's palace first)")
    rb.add_argument("--palace", required=True)
    rb.add_argument("--with-writes", action="store_true",
                    help="export what PostgreSQL holds now (writes since the cutover included) to Chroma, verify it "
                         "and put it in place; the pre-cutover backup and the database are kept")
    add_target(rb)
    rb.add_argument("--no-progress", action="store_true")
    rb.add_argument("--yes", action="store_true")
    rb.set_defaults(func=cmd_rollback)
