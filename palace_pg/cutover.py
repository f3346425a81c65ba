"""The cutover and its rollback: the only operations that touch the palace folder, and only by renaming.

Cutover prepares the palace_pg palace (palace_pg's marker and the palace's small
files: embedder sidecar, origin.json, …, so MemPalace detects the ``postgres``
backend there) in ``<palace>.palace-pg-prepared``, then renames the Chroma
palace aside to ``<palace>.chromadb-backup-<stamp>`` (never deleted) and the
prepared folder into its place.  A kill between the two renames leaves both
folders; the next cutover (or ``cutover --sync``) finishes the second rename.  It refuses unless the target holds a verified
migration of exactly the palace on disk now.  Rollback renames back; with
``with_writes`` it first exports what PostgreSQL holds now (``palace_pg.export``)
and puts that palace in place instead, so writes made since the cutover are kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from pathlib import Path

from psycopg import sql

from .dsn import connect, label
from .errors import PalacePgError
from .faults import crash_point
from .marker import MARKER_NAME, Marker, has_marker, read_marker
from .source.snapshot import hash_palace
from .target_db import schema, state

log = logging.getLogger(__name__)

BACKUP_INFIX = ".chromadb-backup-"
PREPARED_SUFFIX = ".palace-pg-prepared"


def cutover_steps(palace: Path, dsn_display: str) -> list[str]:
    palace = Path(palace)
    return [
        "Stop every MemPalace writer: the MCP server, palace-daemon, miners and hooks.",
        f"Run the cutover: `palace-pg cutover --palace {palace} --yes` (or the second gate in 02_migrate). It "
        f"moves the Chroma palace to {palace.name}{BACKUP_INFIX}<date> (kept, never deleted) and leaves "
        f"{palace} holding {MARKER_NAME}, which points at {dsn_display} (no password).",
        "Select the AGE knowledge graph: `palace-pg kg-hook install` once per environment, then "
        "export MEMPALACE_KG_BACKEND=age (or \"kg_backend\": \"age\" in mempalace's config.json).",
        "Keep the password out of config files: PGPASSWORD or ~/.pgpass for the MemPalace processes.",
        f"Smoke test, offline: `mempalace --palace {palace} status` and a KG query (the MCP server's kg_* tools "
        "with MEMPALACE_KG_BACKEND=age); 02_migrate runs both after its cutover gate. "
        f"`mempalace --palace {palace} search \"…\"` needs MemPalace's embedding model (all-MiniLM-L6-v2): "
        "without its files it tries to download them, and fails offline; there, search with a vector instead "
        "(the postgres backend's collection.query(query_embeddings=[…])).",
        "Start the MemPalace processes again.",
        f"Rollback at any time: `palace-pg rollback --palace {palace} --yes` renames the Chroma backup back "
        f"(writes made on PostgreSQL since the cutover stay only in PostgreSQL); "
        f"`palace-pg rollback --palace {palace} --with-writes --yes` exports PostgreSQL's palace to Chroma and "
        f"puts it in place instead, keeping those writes (stop every MemPalace writer first).",
    ]


def _stamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")


def cutover(palace: str | os.PathLike, dsn: str | None = None, *, now: dt.datetime | None = None,
            settled: dict[str, tuple] | None = None) -> dict:
    """Move the Chroma palace aside and leave a palace_pg palace in its place.  Returns what was done.

    Every file of the palace must hash as the target's manifest records; ``settled`` (taken with
    writers stopped, before the snapshot behind that manifest) spares re-reading the files whose
    status has not changed since (:func:`palace_pg.source.snapshot.settled_files`).
    """
    palace = Path(palace).expanduser().resolve()
    finished = finish_interrupted_cutover(palace, dsn)
    if finished is not None:
        return finished
    if has_marker(palace):
        raise PalacePgError(f"{palace} is already cut over (it holds {MARKER_NAME})", "nothing to do")
    if not (palace / "chroma.sqlite3").is_file():
        raise PalacePgError(f"{palace} is not a Chroma palace", "pass the palace that was migrated")
    with connect(dsn) as conn:
        if not {"verify", "done"} <= state.applied(conn):
            raise PalacePgError("the target holds no complete, verified migration",
                                "run `palace-pg migrate` to the end (phase 6 verify must pass) first")
        from .source.chroma_reader import read_collection_facts
        from .source.kg_reader import resolve_kg_path

        held = state.get_meta(conn, "palace") or {}
        if held.get("collections") != {c.name: c.uuid for c in read_collection_facts(palace)}:
            raise PalacePgError(f"the target holds another palace ({held.get('source_path')}), not {palace}",
                                "pass the --dsn of the database this palace was migrated into "
                                "(one database holds one palace); nothing was changed")
        recorded = state.get_meta(conn, "source_manifest") or {}

        want = {rel: info["sha256"] for rel, info in recorded.items()}
        current = hash_palace(palace, resolve_kg_path(palace), settled=settled, known=want)
        if current != want:
            changed = sorted(set(current.items()) ^ set(want.items()))
            raise PalacePgError(
                f"the palace changed since it was migrated ({len(changed)} file(s), e.g. {changed[0][0]})",
                "rerun `palace-pg migrate --restart` so the target holds what is on disk now, then cut over",
            )
        palace_id = state.get_meta(conn, "palace_id")
        files = conn.execute(sql.SQL("SELECT path, content FROM {} WHERE path LIKE 'palace/%%' ORDER BY path")
                             .format(schema.qualified("files"))).fetchall()
        fingerprint = state.get_meta(conn, "source_fingerprint")
        target_dsn = dsn or conn.info.dsn
        backup = palace.with_name(f"{palace.name}{BACKUP_INFIX}{_stamp(now)}")
        if backup.exists():
            raise PalacePgError(f"{backup} already exists", "wait a second and retry")
        # the palace_pg palace is made complete beside the Chroma one first: then the cutover is two
        # renames, and a kill between them leaves both folders for the rerun to finish with (see below)
        prepared = _prepared(palace)
        shutil.rmtree(prepared, ignore_errors=True)  # a killed run's: only ever our own small files
        prepared.mkdir()
        for rel, content in files:
            dest = prepared / rel.removeprefix("palace/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(content)
        Marker.for_target(palace_id, target_dsn, source_fingerprint=fingerprint,
                          migrated_at=state.get_meta(conn, "migrated_at"),
                          kg_store=state.get_meta(conn, "kg_store") or "age",
                          extra={"chroma_backup": str(backup)}).write(prepared)
        os.rename(palace, backup)  # atomic on one filesystem; the backup is never deleted
        crash_point("cutover")
        try:
            os.rename(prepared, palace)
        except BaseException:
            os.rename(backup, palace)  # put the Chroma palace back exactly as it was
            raise
        _record_cutover(conn, palace, backup)
    log.info("cut over %s; Chroma palace kept at %s", palace, backup)
    return {"palace": str(palace), "backup": str(backup), "marker": str(palace / MARKER_NAME),
            "files_restored": [f[0] for f in files], "target": label(target_dsn)}


def _prepared(palace: Path) -> Path:
    return palace.with_name(f"{palace.name}{PREPARED_SUFFIX}")


def _record_cutover(conn, palace: Path, backup: Path) -> None:
    with conn.transaction():
        state.set_meta(conn, "cutover", {"at": dt.datetime.now(dt.timezone.utc).isoformat(),
                                         "backup": str(backup), "palace": str(palace)})


def finish_interrupted_cutover(palace: str | os.PathLike, dsn: str | None = None) -> dict | None:
    """A cutover killed between its two renames: the palace folder gone, its Chroma backup and the
    prepared palace_pg folder beside it.  Finish it (the second rename) and return what was done;
    None when there is nothing to finish."""
    palace = Path(palace).expanduser().resolve()
    prepared, backup = _prepared(palace), latest_backup(palace)
    if palace.exists() or not prepared.is_dir() or backup is None:
        return None
    marker = read_marker(prepared)
    if marker.extra.get("chroma_backup") != str(backup):
        raise PalacePgError(f"{prepared} was prepared for another backup than {backup}",
                            f"check the folders next to {palace}; rename the right Chroma backup back to "
                            f"{palace.name} and rerun the cutover")
    os.rename(prepared, palace)
    with connect(dsn or marker.dsn()) as conn:
        _record_cutover(conn, palace, backup)
    log.info("finished the interrupted cutover of %s; Chroma palace kept at %s", palace, backup)
    restored = sorted("palace/" + p.relative_to(palace).as_posix() for p in palace.rglob("*")
                      if p.is_file() and p.name != MARKER_NAME)
    return {"palace": str(palace), "backup": str(backup), "marker": str(palace / MARKER_NAME),
            "files_restored": restored, "target": label(dsn or marker.dsn()), "finished_interrupted_cutover": True,
            # the first rename only ever follows a passed verification of exactly that backup's content
            "sync": {}, "verify": {"differences": 0, "proven_by": "the interrupted cutover, before its first rename"}}


def latest_backup(palace: Path) -> Path | None:
    backups = sorted(palace.parent.glob(f"{palace.name}{BACKUP_INFIX}*"))
    return backups[-1] if backups else None


def rollback(palace: str | os.PathLike, *, with_writes: bool = False, dsn: str | None = None,
             now: dt.datetime | None = None, progress=None) -> dict:
    """Put a Chroma palace back; the PostgreSQL-side folder (and the database) are kept beside it.

    Without ``with_writes`` the pre-cutover backup is renamed back.  With it, the
    palace PostgreSQL holds now is exported and verified next to the palace and
    renamed into place; the pre-cutover backup is left where it is.
    """
    palace = Path(palace).expanduser().resolve()
    if not has_marker(palace):
        raise PalacePgError(f"{palace} holds no {MARKER_NAME}: it is not a cut-over palace",
                            "check the path; rollback only renames folders palace_pg created")
    if with_writes:
        return _rollback_with_writes(palace, dsn, now=now, progress=progress)
    backup = latest_backup(palace)
    if backup is None:
        raise PalacePgError(f"no {palace.name}{BACKUP_INFIX}* folder next to {palace}", "nothing to roll back")
    aside = palace.with_name(f"{palace.name}.postgres-{_stamp(now)}")
    os.rename(palace, aside)
    os.rename(backup, palace)
    return {"palace": str(palace), "restored_from": str(backup), "postgres_folder_kept_at": str(aside)}


EXPORT_INFIX = ".chromadb-export-"


def _rollback_with_writes(palace: Path, dsn: str | None, *, now: dt.datetime | None, progress) -> dict:
    from .export import export_palace
    from .marker import read_marker

    stamp = _stamp(now)
    target = dsn or read_marker(palace).dsn()
    exported = palace.with_name(f"{palace.name}{EXPORT_INFIX}{stamp}")
    aside = palace.with_name(f"{palace.name}.postgres-{stamp}")
    if aside.exists():
        raise PalacePgError(f"{aside} already exists", "wait a second and retry")
    summary = export_palace(target, exported, progress=progress)  # verified before it returns
    os.rename(palace, aside)
    try:
        os.rename(exported, palace)
    except BaseException:
        os.rename(aside, palace)
        raise
    backup = latest_backup(palace)
    log.info("rolled back %s with PostgreSQL's writes; postgres folder kept at %s", palace, aside)
    return {"palace": str(palace), "restored_from": "export of " + label(target),
            "postgres_folder_kept_at": str(aside), "pre_cutover_backup_kept_at": str(backup) if backup else None,
            "export": {k: summary[k] for k in ("collections", "kg", "files_beside", "rejected_rows_not_exported",
                                               "timings")},
            "verification": summary["verification"]}


def cutover_with_sync(options, progress=None) -> dict:
    """The short downtime: with MemPalace's writers stopped, catch up, prove, rename.

    1. snapshot offline: a palace still being written is refused (the writers are not stopped);
    2. the last sync: exactly the rows, KG facts and files written since the previous one;
    3. phase 6 against this final snapshot: counts and id sets from chroma.sqlite3, every stored
       row's document, metadata and vector digest against what was read of it, every KG column
       (recall is left to the online migration's phase 6: the index is the same one, kept valid);
    4. the cutover's renames, after checking every file of the palace against the final manifest:
       a file whose size, mtime, ctime and inode are those it had before the snapshot (and that had
       been still for RACY_SECONDS then) holds the bytes the snapshot hashed; any other is hashed again.
    Returns the cutover's result with ``downtime_seconds`` (1–4, from the call) and its parts.
    """
    import dataclasses
    import time

    from . import engine

    from .source.kg_reader import resolve_kg_path
    from .source.palace import default_work_dir
    from .source.snapshot import remove_stale_snapshots, settled_files

    started = time.monotonic()
    palace = Path(options.palace).expanduser().resolve()
    finished = finish_interrupted_cutover(palace, options.dsn)  # a rerun after a kill between the renames
    if finished is not None:
        return {**finished, "downtime_seconds": round(time.monotonic() - started, 2),
                "downtime_parts": {"rename": round(time.monotonic() - started, 2)}}
    settled = settled_files(palace, resolve_kg_path(palace))  # before the snapshot: what it hashes still holds
    # the snapshot's copy is removed after the renames: deleting a large palace's copy is not downtime
    final = dataclasses.replace(options, online=False, recall_queries=0, keep_snapshot=True)
    try:
        synced = engine.sync(final, progress, verify=True)
        renamed_at = time.monotonic()
        result = cutover(options.palace, options.dsn, settled=settled)
        parts = {**synced["seconds"], "rename": round(time.monotonic() - renamed_at, 2)}
        downtime = round(time.monotonic() - started, 2)
    finally:
        if not options.keep_snapshot:
            remove_stale_snapshots(Path(options.work_dir or default_work_dir(palace)), including_own=True)
    return {**result, "sync": {k: synced.get(k) for k in ("status", "collections", "kg", "carried_files", "parts")},
            "verify": {"differences": synced["verify"]["differences"],
                       "collections": {k: {f: v[f] for f in ("source_rows", "target_rows", "rows_compared",
                                                             "mismatched_fields")}
                                       | {f: v.get(f) for f in ("rows_read_out", "rows_proven_in_postgresql")}
                                       for k, v in synced["verify"]["collections"].items()},
                       "kg": synced["verify"]["kg"]},
            "downtime_seconds": downtime, "downtime_parts": parts}
