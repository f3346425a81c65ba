"""`palace-pg maintain`: the work kept out of the downtime window, run on the live database after the cutover.

Today: a partial HNSW index for each large wing (backend/wing_indexes.py), which
wing filters matching more than ``exact_max_rows`` rows use instead of the
iterative scan (k rows of the wing, better recall); smaller ones stay exact.  Built
with CREATE INDEX CONCURRENTLY (MemPalace keeps reading and writing); a rerun
builds only what is missing or was left INVALID by an interrupted run.
"""

from __future__ import annotations


def cmd_maintain(args) -> int:
    from psycopg import sql

    from ..backend import maintenance, wing_indexes
    from ..backend.handle import TableState
    from ..dsn import connect, shown
    from ..target_db.schema import qualified
    from .present import print_json

    results = []
    with connect(args.dsn, autocommit=True, vector=False, application_name="palace_pg maintain") as conn:
        target = shown(conn)
        registered = conn.execute("SELECT to_regclass('mempalace.collections') IS NOT NULL").fetchone()[0]
        collections = conn.execute(sql.SQL("SELECT name, table_name, dimension FROM {} ORDER BY name").format(
            qualified("collections"))).fetchall() if registered else []
        min_rows = args.min_rows if args.min_rows is not None else wing_indexes.MIN_ROWS
        for name, table, dimension in collections:
            if not args.json:
                print(f"{name}: wing indexes for wings above {min_rows} rows …", flush=True)
            result = maintenance.run(conn, TableState(name=name, table=table, dimension=dimension), wing_indexes.KIND,
                                     min_rows=min_rows)
            results.append({"collection": name, "table": table, "status": result.status, **result.stats})
    if args.json:
        print_json({"target": target, "collections": results})
        return 0
    if not collections:
        print(f"{target}: no migrated collections (run `palace-pg migrate` first)")
        return 1
    for r in results:
        wings = r.get("wings", {})
        bad = [w for w, v in wings.items() if v["state"] != "valid"]
        print(f"  {r['collection']}: {r['status']}; built {len(r.get('built', []))}, rebuilt "
              f"{len(r.get('rebuilt', []))}, kept {len(r.get('kept', []))} of {len(wings)} large wings"
              f"{'; NOT VALID: ' + ', '.join(bad) if bad else ''} ({r.get('seconds', 0)} s)")
        for wing, v in sorted(wings.items(), key=lambda kv: -kv[1]["rows"]):
            print(f"    {wing}: {v['rows']} rows, {v['state']}, {v['seconds']} s")
    return 0 if all(v["state"] == "valid" for r in results for v in r.get("wings", {}).values()) else 1


def register(sub) -> None:
    from .present import add_target

    mt = sub.add_parser("maintain", help="after the cutover: per-wing HNSW indexes for fast wing-filtered search "
                        "(concurrent, resumable; a rerun does only what is missing)")
    add_target(mt)
    mt.add_argument("--min-rows", type=int, default=None,
                    help="index wings with more rows than this (default 10000: smaller ones are searched exactly)")
    mt.add_argument("--json", action="store_true", help="print the result as JSON")
    mt.set_defaults(func=cmd_maintain)
