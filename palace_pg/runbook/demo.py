"""What the runbooks run on when no palace or DSN is given: a generated demo palace and its own database.

The defaults must be safe and must run as committed (nbmake injects nothing),
so ``palace=None`` means a generated palace in the runbooks' work folder and
``dsn=None`` a dedicated database on the embedded server.  Both are made once
and shared by the three notebooks (01 → 02 → 03 each find the others' work).

The demo palace comes from :func:`palace_pg.synth.make_palace`: every MemPalace
writer kind, wings of very different sizes (:data:`palace_pg.synth.WINGS`, for
filtered recall by wing size), closets, 768-d assets, and a KG with temporal
facts, some of them ended.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEMO_DATABASE = "palace_runbook_demo"
ENV_ROOT = "PALACE_PG_RUNBOOK_DIR"
ENV_DATABASE = "PALACE_PG_RUNBOOK_DB"
ENV_DEMO = "PALACE_PG_DEMO"  # a folder `palace-pg demo` made: the runbooks' defaults continue it
DEMO_FILE = "demo.json"


def work_root() -> Path:
    """The runbooks' own folder: $PALACE_PG_RUNBOOK_DIR, else <work dir>/runbooks."""
    if os.environ.get(ENV_ROOT):
        return Path(os.environ[ENV_ROOT])
    base = os.environ.get("PALACE_PG_WORK_DIR") or Path(tempfile.gettempdir()) / "palace_pg-work"
    return Path(base) / "runbooks"


def record_cli_demo(folder: Path, palace: Path, database: str, evidence: Path) -> Path:
    """Written by `palace-pg demo`: what it made, so the runbooks opened in JupyterLab continue that demo.

    ``folder/demo.json`` names the palace, the database and where each kind of run archives its
    evidence; ``<work root>/last-demo.json`` points at it for a plain ``jupyter lab runbooks/``.
    """
    folder = Path(folder).resolve()
    facts = {"palace": str(Path(palace).resolve()), "database": database, "evidence": str(Path(evidence).resolve()),
             "interactive_evidence": str(folder / "evidence-jupyterlab")}
    (folder / DEMO_FILE).write_text(json.dumps(facts, indent=1) + "\n")
    work_root().mkdir(parents=True, exist_ok=True)
    (work_root() / "last-demo.json").write_text(json.dumps({"demo": str(folder)}) + "\n")
    return folder / DEMO_FILE


def cli_demo() -> dict | None:
    """The demo `palace-pg demo` made ($PALACE_PG_DEMO, else the last one), if its palace is still there."""
    folder = os.environ.get(ENV_DEMO)
    pointer = work_root() / "last-demo.json"
    if not folder and pointer.is_file():
        try:
            folder = json.loads(pointer.read_text()).get("demo")
        except (json.JSONDecodeError, AttributeError):
            folder = None
    facts_file = Path(folder) / DEMO_FILE if folder else None
    if facts_file is None or not facts_file.is_file():
        return None
    facts = json.loads(facts_file.read_text())
    palace = Path(facts["palace"])
    if not ((palace / "chroma.sqlite3").is_file() or chroma_source(palace) != palace):
        return None  # removed since: the runbooks make their own demo
    return {**facts, "folder": str(Path(folder).resolve())}


@dataclass
class Target:
    """Where a runbook reads and writes, resolved from its parameters."""

    palace: Path
    dsn: str | None
    evidence: Path
    work_dir: Path | None
    demo_palace: bool
    demo_database: bool
    origin: str = ""  # which demo this is, for the operator

    @property
    def throwaway(self) -> bool:
        """True when both sides are the generated demo: the write gate needs no confirmation headless."""
        return self.demo_palace and self.demo_database

    def describe(self) -> dict:
        from ..dsn import redact, resolve_dsn

        out = {"palace": str(self.palace), "target": redact(resolve_dsn(self.dsn)),
               "evidence": str(self.evidence), "demo palace": self.demo_palace,
               "demo database": self.demo_database}
        if self.origin:
            out["demo"] = self.origin
        return out


def resolve(params: dict) -> Target:
    """Palace, DSN and evidence folder from a runbook's checked parameters (making the demo as needed)."""
    root = work_root()
    demo_palace = params.get("palace") is None
    cli = cli_demo() if demo_palace and params.get("dsn") is None and not os.environ.get("PALACE_PG_DSN") else None
    if cli is not None:  # continue the demo `palace-pg demo` made: its palace, its database
        evidence = Path(params.get("evidence_dir") or cli["interactive_evidence"]).expanduser()
        evidence.mkdir(parents=True, exist_ok=True)
        return Target(Path(cli["palace"]).resolve(), ensure_demo_database(name=cli["database"]), evidence.resolve(),
                      Path(params["work_dir"]) if params.get("work_dir") else None, True, True,
                      origin=f"continuing `palace-pg demo` in {cli['folder']} (its own run's evidence: "
                             f"{cli['evidence']}; start again: rm -r {cli['folder']}, then palace-pg demo --runbooks)")
    fresh = False
    if demo_palace:
        before = _stamp_of(root / "demo" / "palace")
        palace = ensure_demo_palace(root / "demo" / "palace", params.get("demo_drawers", 2000),
                                    params.get("demo_seed", 0))
        fresh = _stamp_of(palace) != before
    else:
        palace = Path(params["palace"]).expanduser()
    # The demo database is for the demo palace only.  A real palace without a dsn goes where
    # `palace-pg migrate` puts it ($PALACE_PG_DSN, else the embedded server's default database),
    # so the CLI's status and the runbooks see the same target.
    demo_db = demo_palace and params.get("dsn") is None and not os.environ.get("PALACE_PG_DSN")
    # a newly generated demo palace gets a new demo database: the old one holds the previous palace
    dsn = params.get("dsn") or (ensure_demo_database(reset=fresh, demo_root=root / "demo") if demo_db else None)
    evidence = Path(params["evidence_dir"]).expanduser() if params.get("evidence_dir") else root / "evidence"
    evidence.mkdir(parents=True, exist_ok=True)
    work_dir = Path(params["work_dir"]) if params.get("work_dir") else None
    origin = f"the runbooks' own demo in {root / 'demo'}" if demo_palace and demo_db else ""
    return Target(palace.resolve(), dsn, evidence.resolve(), work_dir, demo_palace, demo_db, origin)


def chroma_source(palace: Path) -> Path:
    """The Chroma palace to read: the palace itself, or its backup once it has been cut over."""
    from ..cutover import latest_backup
    from ..marker import has_marker

    palace = Path(palace)
    if has_marker(palace):
        backup = latest_backup(palace.resolve())
        if backup is not None and (backup / "chroma.sqlite3").is_file():
            return backup
    return palace


def _stamp_of(palace: Path) -> tuple | None:
    stamps = sorted(Path(palace).parent.glob(".demo-*"))
    return (stamps[0].name, stamps[0].stat().st_mtime_ns) if stamps else None


def ensure_demo_database(*, reset: bool = False, demo_root: Path | None = None, name: str | None = None) -> str:
    """The demo's dedicated database on the embedded server (started if needed); its DSN.

    ``reset`` drops it first, but only when it holds nothing or a palace from ``demo_root``:
    a database holding any other palace is never dropped (PalacePgError with the fix).
    """
    from ..server import EmbeddedServer

    server = EmbeddedServer.from_env()
    if not server.running():
        server.start()
    name = name or os.environ.get(ENV_DATABASE, DEMO_DATABASE)
    dsn = server.create_database(name)
    if reset:
        held = _palace_held_by(dsn)
        if held and (demo_root is None or not Path(held).resolve().is_relative_to(Path(demo_root).resolve())):
            from ..errors import PalacePgError

            raise PalacePgError(f"the demo database {name!r} holds the palace {held}, not the demo's",
                                "pass dsn= for that palace, or set PALACE_PG_RUNBOOK_DB to another database "
                                "name for the demo; nothing was dropped")
        server.drop_database(name)
        dsn = server.create_database(name)
    return dsn


def _palace_held_by(dsn: str) -> str | None:
    """The source path of the palace a database holds, if palace_pg wrote one there."""
    from ..dsn import connect
    from ..target_db import state

    with connect(dsn) as conn:
        if not state.schema_exists(conn):
            return None
        return (state.get_meta(conn, "palace") or {}).get("source_path") or "(an unknown palace)"


def ensure_demo_palace(palace: Path, drawers: int = 2000, seed: int = 0) -> Path:
    """A generated palace at ``palace`` (made once; a cut-over or half-written one is made again)."""
    palace = Path(palace)
    stamp = palace.parent / f".demo-{drawers}-{seed}"
    if stamp.is_file() and ((palace / "chroma.sqlite3").is_file() or chroma_source(palace) != palace):
        return palace  # made earlier (and perhaps cut over since: its Chroma backup is the source)
    if palace.parent.exists():
        shutil.rmtree(palace.parent)
    palace.parent.mkdir(parents=True)
    from ..synth import make_palace

    make_palace(palace, drawers=drawers, seed=seed)
    stamp.write_text("generated by palace_pg.runbook.demo\n")
    log.info("demo palace of %d drawers written to %s", drawers, palace)
    return palace
