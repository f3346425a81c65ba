"""`palace-pg db`: the embedded server."""

from __future__ import annotations

from pathlib import Path

from ..errors import PalacePgError
from .present import print_json


def _server(args):
    from ..server import EmbeddedServer

    server = EmbeddedServer.from_env()
    if getattr(args, "port", None):
        server.port = args.port
    if getattr(args, "data_dir", None):
        server.data_dir = Path(args.data_dir)
    return server


def cmd_db(args) -> int:
    server = _server(args)
    if args.action == "start":
        facts = server.start(durable=False if args.fast else (True if args.durable else None))
    elif args.action == "stop":
        facts = server.stop()
    elif args.action == "install":
        facts = {"runtime": str(server.install(force=args.force))}
    elif args.action == "url":
        print(server.url(args.database))
        return 0
    elif args.action == "create":
        if not args.database:
            raise PalacePgError("db create needs --database NAME", "e.g. palace-pg db create --database palace_prod")
        if not server.running():
            server.start()
        print(server.create_database(args.database))  # with vector and age, ready for a migration
        return 0
    else:
        facts = server.status()
    if args.json:
        print_json(facts)
    else:
        for k, v in facts.items():
            print(f"{k:>15}: {v}")
    return 0 if args.action != "status" or facts.get("running") else 1


def register(sub) -> None:
    db = sub.add_parser("db", help="the embedded PostgreSQL 18.6 + AGE + pgvector server")
    db.add_argument("action", choices=["start", "stop", "status", "url", "create", "install"],
                    help="start (idempotent; durable unless --fast), stop, status, url (the DSN), "
                         "create (a database with vector and age: --database NAME), install (the runtime only)")
    db.add_argument("--database", help="with create or url: the database's name")
    db.add_argument("--fast", action="store_true", help="fsync off: for tests only, never for real data")
    db.add_argument("--durable", action="store_true", help="switch a fast server back to durable")
    db.add_argument("--port", type=int, help="default $PALACE_PG_PORT, else 54329")
    db.add_argument("--data-dir", help="default $PALACE_PG_DATA, else $PALACE_PG_HOME/data")
    db.add_argument("--force", action="store_true", help="with install: rebuild the runtime")
    db.add_argument("--json", action="store_true", help="print the facts as JSON")
    db.set_defaults(func=cmd_db)
