"""`palace-pg cutover | rollback`: the renames that switch MemPalace to PostgreSQL and back."""

from __future__ import annotations

import contextlib
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

        from .migration import progress_for

        with progress_for(args) as lines:
            result = cutover_with_sync(sync_options(args), lines)
        if args.json:
            print_json(result)
        else:
            print(f"cut over {result['palace']} in {result['downtime_seconds']} s of downtime "
                  f"(writers stopped → renamed): " + ", ".join(f"{k} {v} s" for k, v in result["downtime_parts"].items()))
            print(f"verified: {result['verify']['differences']} difference(s); Chroma palace kept at {result['backup']}")
        return 0
    result = cutover(args.palace, args.dsn)
    if args.json:
        print_json(result)
        return 0
    print(f"cut over {result['palace']}\n"
          f"  MemPalace now runs on PostgreSQL: {result['marker']} points at {result['target']}\n"
          f"  the Chroma palace is kept at {result['backup']}"
          + (f"\n  small files carried over: {', '.join(result['files_restored'])}" if result["files_restored"] else "")
          + f"\n  smoke test offline: mempalace --palace {result['palace']} status (a search needs MemPalace's "
          "embedding model; see the cutover steps)"
          f"\n  undo: palace-pg rollback --palace {result['palace']} --yes")
    return 0


def cmd_rollback(args) -> int:
    from ..cutover import rollback

    if not args.yes:
        print("rollback renames folders back; rerun with --yes to confirm", file=sys.stderr)
        return 2
    from .migration import progress_for

    with progress_for(args) if args.with_writes else contextlib.nullcontext(None) as lines:
        result = rollback(args.palace, with_writes=args.with_writes, dsn=args.dsn, progress=lines)
    if args.json:
        print_json(result)
        return 0
    print(f"rolled back {result['palace']}: the Chroma palace is back in place\n"
          f"  restored from {result['restored_from']}\n"
          f"  the PostgreSQL-side folder (palace_pg.json) is kept at {result['postgres_folder_kept_at']}\n"
          + (f"  the pre-cutover Chroma palace is kept at {result.get('pre_cutover_backup_kept_at')}\n"
             "  every row, vector bit and KG column of the export was verified against PostgreSQL"
             if args.with_writes else "  writes made on PostgreSQL since the cutover stay only in PostgreSQL "
             "(roll back with --with-writes to keep them)"))
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
    co.add_argument("--no-progress", action="store_true")
    co.set_defaults(func=cmd_cutover)

    rb = sub.add_parser("rollback", help="undo the cutover (renames; --with-writes exports PostgreSQL's palace first)")
    rb.add_argument("--palace", required=True)
    rb.add_argument("--with-writes", action="store_true",
                    help="export what PostgreSQL holds now (writes since the cutover included) to Chroma, verify it "
                         "and put it in place; the pre-cutover backup and the database are kept")
    add_target(rb)
    rb.add_argument("--no-progress", action="store_true")
    rb.add_argument("--yes", action="store_true")
    rb.add_argument("--json", action="store_true", help="print the result as JSON")
    rb.set_defaults(func=cmd_rollback)
