"""`palace-pg kg-hook`: mempalace's own CLI and MCP on the AGE graph."""

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


def register(sub) -> None:
    kh = sub.add_parser("kg-hook", help="let mempalace's own CLI/MCP answer KG queries from AGE (.pth hook)")
    kh.add_argument("action", choices=["install", "uninstall", "status"])
    kh.set_defaults(func=cmd_kg_hook)
