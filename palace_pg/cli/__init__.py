"""The `palace-pg` command line.  The library is quiet; this package presents.

One module per command group; each has ``register(sub)`` adding its subcommands.

Exit codes: 0 success, 1 error, 2 usage, 3 preflight refusal (or a lock / a
changed source), 4 verification failure, 5 rows kept in mempalace.rejects.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from .. import __version__
from ..errors import PalacePgError
from . import backup, cutover, db, export, kg, maintain, migration, palaces, runbooks, sync

log = logging.getLogger("palace_pg.cli")

# in the order `palace-pg --help` lists them
COMMAND_GROUPS = [db, palaces, migration, sync, cutover, maintain, export, backup, runbooks, kg]


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
    for group in COMMAND_GROUPS:
        group.register(sub)
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
