"""`palace-pg kg-hook`: mempalace's own CLI and MCP on palace_pg's graph; `palace-pg kg convert`: age ⇄ tables."""

from __future__ import annotations

from pathlib import Path


def _pth_path() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["purelib"]) / "palace_pg_kg.pth"


def cmd_kg_hook(args) -> int:
    """Install the one-line .pth that lets mempalace's own CLI and MCP use the AGE graph.

    It is inert unless MEMPALACE_KG_BACKEND=age (or kg_backend: age in mempalace's config.json).
    """
    from ..kg.hook import PTH_LINE

    pth = _pth_path()
    if args.action == "install":
        pth.write_text(PTH_LINE)
        print(f"installed {pth}; select the AGE graph with MEMPALACE_KG_BACKEND=age")
    elif args.action == "uninstall":
        pth.unlink(missing_ok=True)
        print(f"removed {pth}")
    else:
        print(f"{pth}: {'installed' if pth.is_file() else 'not installed'}")
    return 0


def cmd_kg_convert(args) -> int:
    """Move the migrated graph to the other KG store, verified column by column, in one transaction."""
    from ..dsn import connect, shown
    from ..kg.convert import convert
    from ..marker import has_marker, read_marker
    from .present import print_json

    with connect(args.dsn, vector=False, application_name="palace_pg kg convert") as conn:
        conn.autocommit = True  # convert() opens the one transaction itself
        result = convert(conn, args.to, keep_old=args.keep_old)
        target = shown(conn)
    if args.palace and has_marker(args.palace):
        marker = read_marker(args.palace)
        marker.kg_store = args.to
        marker.write(args.palace)
        result["marker"] = str(args.palace)
    if args.json:
        print_json(result)
        return 0
    print(f"{target}: knowledge graph moved from {result['from']} to {result['to']} "
          f"({result['entities']} entities, {result['triples']} triples, {result['columns_compared']} values "
          f"compared, 0 differences) in {result['seconds']} s; old store "
          f"{'dropped' if result['old_store_dropped'] else 'kept'}")
    print("restart processes that hold the graph open (the MCP server) so they use the new store")
    return 0


def register(sub) -> None:
    from .present import add_target

    kg = sub.add_parser("kg", help="the knowledge graph's store: convert between Apache AGE and plain tables")
    kg_sub = kg.add_subparsers(dest="kg_command", required=True)
    cv = kg_sub.add_parser("convert", help="move a migrated graph to the other store (verified, one transaction; "
                           "refuses a non-empty destination)")
    add_target(cv)
    cv.add_argument("--to", required=True, choices=["tables", "age"], help="the destination store")
    cv.add_argument("--keep-old", action="store_true", help="keep the old store's objects (default: drop them)")
    cv.add_argument("--palace", help="a cut-over palace folder whose marker should record the new store")
    cv.add_argument("--json", action="store_true", help="print the result as JSON")
    cv.set_defaults(func=cmd_kg_convert)

    kh = sub.add_parser("kg-hook", help="let mempalace's own CLI/MCP answer KG queries from AGE (.pth hook)")
    kh.add_argument("action", choices=["install", "uninstall", "status"])
    kh.set_defaults(func=cmd_kg_hook)
