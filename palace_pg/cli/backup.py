"""`palace-pg backup | restore`: pg_dump / pg_restore of a migrated database, with AGE's graph repaired."""

from __future__ import annotations

from .present import add_target, print_json


def cmd_backup(args) -> int:
    from ..backup import backup

    facts = backup(args.dsn, args.file)
    if args.json:
        print_json(facts)
    else:
        print(f"backed up database {facts['database']} ({facts['tables']} tables, graphs {facts['graphs']}) "
              f"to {facts['file']} ({facts['bytes']} bytes)")
    return 0


def cmd_restore(args) -> int:
    from ..backup import restore

    facts = restore(args.file, args.dsn)
    if args.json:
        print_json(facts)
    else:
        print(f"restored {facts['file']} into database {facts['database']} ({facts['tables']} tables, graphs "
              f"{facts['graphs']}; {facts['graphs_repaired']} graph(s) re-pointed at their restored schema)")
    return 0


def register(sub) -> None:
    bk = sub.add_parser("backup", help="pg_dump -Fc of a migrated database (restorable with `palace-pg restore`)")
    bk.add_argument("file", help="the archive to write (custom format)")
    add_target(bk)
    bk.add_argument("--json", action="store_true")
    bk.set_defaults(func=cmd_backup)
    rs = sub.add_parser("restore", help="pg_restore a backup into an empty database and repair AGE's graph OIDs")
    rs.add_argument("file", help="an archive `palace-pg backup` (or pg_dump -Fc) wrote")
    add_target(rs)
    rs.add_argument("--json", action="store_true")
    rs.set_defaults(func=cmd_restore)
