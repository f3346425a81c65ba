"""`palace-pg backup | restore`: pg_dump / pg_restore of a migrated database, with AGE's graph repaired."""

from __future__ import annotations

from .present import add_target, print_json


def _show(args, facts: dict, text: str) -> int:
    if args.json:
        print_json(facts)
    else:
        print(text)
    return 0


def cmd_backup(args) -> int:
    from ..backup import backup

    f = backup(args.dsn, args.file)
    return _show(args, f, f"backed up database {f['database']} ({f['tables']} tables, graphs {f['graphs']}) "
                          f"to {f['file']} ({f['bytes']} bytes)")


def cmd_restore(args) -> int:
    from ..backup import restore

    f = restore(args.file, args.dsn)
    return _show(args, f, f"restored {f['file']} into database {f['database']} ({f['tables']} tables, graphs "
                          f"{f['graphs']}; {f['graphs_repaired']} graph(s) re-pointed at their restored schema)")


def register(sub) -> None:
    bk = sub.add_parser("backup", help="pg_dump -Fc of a migrated database (restorable with `palace-pg restore`)")
    bk.add_argument("file", help="the archive to write (custom format)")
    rs = sub.add_parser("restore", help="pg_restore a backup into an empty database and repair AGE's graph OIDs")
    rs.add_argument("file", help="an archive `palace-pg backup` (or pg_dump -Fc) wrote")
    for parser, func in ((bk, cmd_backup), (rs, cmd_restore)):
        add_target(parser)
        parser.add_argument("--json", action="store_true")
        parser.set_defaults(func=func)
