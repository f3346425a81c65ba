"""The migration engine: preflight, plan, run (checkpointed, resumable), status.

This is the library API the CLI and the runbooks call::

    report = preflight(palace, dsn)          # read-only checks
    p = plan(MigrationOptions(palace, dsn))  # what each phase will do
    summary = migrate(MigrationOptions(palace, dsn), progress=callback)
    status(dsn)                              # the checkpoint table, runs, meta
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import contextmanager

import psycopg
from psycopg import sql

from . import __version__
from .dsn import connect, shown
from .errors import MigrationLocked, PalacePgError, PreflightRefused, SourceChanged, VerificationFailed
from .phases.base import MigrationOptions, ProgressEvent, ProgressFn, RunContext
from .phases.collections_phase import DRAWERS, OTHERS
from .phases.done_phase import DonePhase
from .phases.indexes_phase import IndexesPhase
from .phases.kg_phase import KGPhase
from .phases.preflight import PreflightReport, run_preflight
from .phases.runner import PhaseRunner
from .phases.schema_phase import SchemaPhase
from .phases.verify_phase import VerifyPhase
from .source.palace import SourcePalace
from .target_db import schema, state

log = logging.getLogger(__name__)

VERIFY = VerifyPhase()
PHASES = [SchemaPhase(), DRAWERS, OTHERS, IndexesPhase(), KGPhase(), VERIFY, DonePhase()]
PHASE_NAMES = ["preflight"] + [p.name for p in PHASES]
# the seed spec's spellings
PHASE_ALIASES = {"closets": "collections", "kg_age": "kg", "age": "kg", "index": "indexes"}


def _phase_selection(only: list[str] | None) -> list:
    if not only:
        return PHASES
    wanted = {PHASE_ALIASES.get(n, n) for n in only}
    unknown = wanted - set(PHASE_NAMES)
    if unknown:
        raise PalacePgError(f"unknown phase(s): {', '.join(sorted(unknown))}", f"use one of {', '.join(PHASE_NAMES)}")
    return [p for p in PHASES if p.name in wanted]


def phase_range(start: str | None, stop: str | None) -> list[str] | None:
    """--from/--to as a phase list (inclusive)."""
    if not start and not stop:
        return None
    names = [p.name for p in PHASES]
    start = PHASE_ALIASES.get(start, start) if start else names[0]
    stop = PHASE_ALIASES.get(stop, stop) if stop else names[-1]
    for n in (start, stop):
        if n not in names:
            raise PalacePgError(f"unknown phase {n!r}", f"use one of {', '.join(names)}")
    return names[names.index(start): names.index(stop) + 1]


def preflight(palace, dsn: str | None = None, *, work_dir=None, restart: bool = False,
              daemon_url: str | None = None, kg_store: str = "auto", online: bool = False) -> PreflightReport:
    """Phase 0 on its own: read-only on both sides (``online``: MemPalace may be writing meanwhile)."""
    src = _open_source(palace, work_dir, online=online)
    try:
        with connect(dsn) as conn:
            return run_preflight(conn, src, restart=restart, daemon_url=daemon_url, kg_store=kg_store, online=online)
    finally:
        src.close()


def _open_source(palace, work_dir, progress: ProgressFn | None = None, online: bool = False) -> SourcePalace:
    """The source's snapshot, reported as the `snapshot` phase in bytes when a progress callback is given."""
    if progress is None:
        return SourcePalace.open(palace, work_dir, online=online)
    _emit(progress, "snapshot", "", 0, 1, "Copy and hash the source palace")
    src = SourcePalace.open(palace, work_dir, lambda done, total: _emit(progress, "snapshot", "", done, total),
                            online=online)
    _emit(progress, "snapshot", "", 1, 1, "done")
    return src


def _emit(progress: ProgressFn, *event) -> None:
    """RunContext.emit before there is a context: a broken display never breaks a migration."""
    try:
        progress(ProgressEvent(*event))
    except Exception:
        log.exception("progress callback failed")


def plan(options: MigrationOptions) -> dict:
    """Preflight plus what every phase will do.  Changes nothing (the --dry-run)."""
    src = _open_source(options.palace, options.work_dir, online=options.online)
    try:
        with connect(options.dsn) as conn:
            report = run_preflight(conn, src, restart=options.restart, daemon_url=options.daemon_url,
                                   online=options.online,
                                   kg_store=options.kg_store)
            ctx = RunContext(options, conn, src, uuid.uuid4())
            phases = []
            applied = set() if options.restart else state.applied(conn)
            for phase in _phase_selection(options.only):
                entry = {"phase": phase.name, "title": phase.title,
                         "state": "done" if phase.name in applied else "pending"}
                if report.ok:
                    entry["plan"] = phase.plan(ctx)
                phases.append(entry)
            conn.rollback()
        return {"preflight": report.as_dict(), "phases": phases, "estimate_seconds": report.estimate_seconds,
                "source_fingerprint": src.snapshot.fingerprint}
    finally:
        src.close()


def _clear_target(conn: psycopg.Connection) -> None:
    """--restart: drop palace_pg's schema and graph (only ever palace_pg's own objects)."""
    from .kg import stores

    with conn.transaction():
        stores.drop(conn, "age")  # a no-op without the extension (the tables go with the schema)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema.SCHEMA)))


@contextmanager
def _exclusive(options: MigrationOptions, what: str, *, online: bool, progress: ProgressFn | None = None):
    """The target's migration lock, the source snapshot and a connection in autocommit, for one run.

    autocommit: every `conn.transaction()` block is then a real transaction that commits at its
    end (not a savepoint inside an implicit one a later rollback would undo).
    """
    lock_conn = connect(options.dsn, autocommit=True, application_name=f"palace_pg {what} (lock)")
    try:
        if not state.try_lock(lock_conn):
            holder = state.lock_holder(lock_conn) or {}
            raise MigrationLocked(f"another migrator is running on this target (pid {holder.get('pid')})",
                                  "wait for it to finish; never run two migrators (or syncs) on one target")
        src = _open_source(options.palace, options.work_dir, progress, online)
        try:
            with connect(options.dsn, autocommit=True, application_name=f"palace_pg {what}") as conn:
                yield conn, src, lock_conn.info.backend_pid
        finally:
            src.close(remove_snapshot=not options.keep_snapshot)
    finally:
        lock_conn.close()


def migrate(options: MigrationOptions, progress: ProgressFn | None = None) -> dict:
    """Run every pending phase; resume from the checkpoints; refuse what preflight refuses."""
    started = time.monotonic()
    with _exclusive(options, "migrate", online=options.online, progress=progress) as (conn, src, lock_pid):
        return _run(conn, src, options, progress or (lambda e: None), started, lock_pid)


def sync(options: MigrationOptions, progress: ProgressFn | None = None, *, verify: bool = False) -> dict:
    """Catch a migrated target up with its palace as it is now (``options.online``: MemPalace may run).

    With ``verify``, phase 6 runs again afterwards against this snapshot (the cutover's proof).
    Each part is timed; the summary says what was added, updated and deleted per collection.
    """
    from .sync.run import sync_target

    started = time.monotonic()
    emit = progress or (lambda e: None)
    with _exclusive(options, "sync", online=options.online, progress=progress) as (conn, src, _pid):
        snapshot_seconds = round(time.monotonic() - started, 2)
        if "done" not in state.applied(conn):
            raise PalacePgError("the target holds no complete migration to catch up",
                                "run `palace-pg migrate` (with --online while MemPalace runs) to the end first")
        held = state.get_meta(conn, "palace") or {}
        if held.get("collections") and not set(held["collections"].items()) <= set(src.identity()["collections"].items()):
            raise PalacePgError(f"the target holds another palace ({held.get('source_path')}), not {src.path}",
                                "pass the --dsn of the database this palace was migrated into")
        ctx = RunContext(options, conn, src, uuid.uuid4(), emit)
        ctx.emit("sync", "", 0, 1, "catching up")
        result = sync_target(conn, src, batch_size=options.batch_size, dsn=options.dsn,
                             emit=lambda unit, done, total: ctx.emit("sync", unit, done, total))
        ctx.kg_proof = result.pop("kg_proof", None)  # lets phase 6 read back only the KG rows written
        ctx.emit("sync", "", 1, 1, "done")
        summary = {"status": "synced" if result["wrote"] else "unchanged", "run_id": str(ctx.run_id),
                   "source_fingerprint": src.snapshot.fingerprint, "snapshot_passes": src.snapshot.passes,
                   **result, "seconds": {"snapshot": snapshot_seconds, "sync": result["seconds"]},
                   "target": shown(conn)}
        if verify:
            t0 = time.monotonic()
            summary["verify"] = PhaseRunner(ctx, PHASES).apply(VERIFY)
            summary["seconds"]["verify"] = round(time.monotonic() - t0, 2)
        summary["elapsed_seconds"] = round(time.monotonic() - started, 2)
        if options.keep_snapshot:
            summary["snapshot_kept_at"] = str(src.snapshot.root)
        if result["wrote"] or verify:
            _record(conn, ctx.run_id, src, summary["status"], summary)
        return summary


def _run(conn: psycopg.Connection, src: SourcePalace, options: MigrationOptions, progress: ProgressFn,
         started: float, lock_pid: int) -> dict:
    # conn is in autocommit: each `conn.transaction()` commits or rolls back whole, nothing is left open
    _emit(progress, "preflight", "", 0, 1, "Read-only checks of source and target")
    report = run_preflight(conn, src, restart=options.restart, daemon_url=options.daemon_url, lock_pid=lock_pid,
                           online=options.online,
                           kg_store=options.kg_store)
    _emit(progress, "preflight", "", 1, 1, "done" if report.ok else "refused: see the checks")
    if not report.ok:
        raise PreflightRefused(report.checks)
    if options.restart and state.schema_exists(conn):
        _clear_target(conn)
    applied = state.applied(conn)
    if "done" in applied and not options.only:
        return {"status": "already-done", "wrote": "nothing", "preflight": report.as_dict(),
                "rejected": state.rejected_rows(conn),
                "message": "this palace was already migrated completely; nothing was written"
                + ("; what MemPalace wrote since is caught up by `palace-pg sync`"
                   if state.get_meta(conn, "source_fingerprint") != src.snapshot.fingerprint else ""),
                "elapsed_seconds": round(time.monotonic() - started, 2)}
    run_id = uuid.uuid4()
    runner = PhaseRunner(RunContext(options, conn, src, run_id, progress), PHASES)
    # the snapshot and the preflight come before phase 1: downtime too, so they are reported
    preflight_seconds = round(time.monotonic() - started, 2)

    def after_phase(phase) -> None:
        if phase.name == OTHERS.name:
            src.release_reader()  # chromadb holds every HNSW segment in memory; nothing later reads it

    try:
        results = runner.run(_phase_selection(options.only), after_phase=after_phase)
    except VerificationFailed as exc:
        _record(conn, run_id, src, "verify-failed", {"differences": len(exc.differences)})
        raise
    except BaseException:
        if state.schema_exists(conn):
            _record(conn, run_id, src, "interrupted", {"phase": next(
                (p.name for p in _phase_selection(options.only) if p.name not in runner.done), None)})
        raise
    summary = {"status": "done" if "done" in runner.done else "partial", "run_id": str(run_id),
               "resumed": bool(applied), "source_fingerprint": src.snapshot.fingerprint,
               "phase_seconds": {"preflight": preflight_seconds, **runner.seconds},
               "elapsed_seconds": round(time.monotonic() - started, 2),
               "peak_rss_mb": runner.peak_rss_mb, "rejected": state.rejected_rows(conn),
               "preflight": report.as_dict(), "results": results, "target": shown(conn)}
    _record(conn, run_id, src, summary["status"], {k: v for k, v in summary.items() if k != "preflight"})
    return summary


def _record(conn: psycopg.Connection, run_id, src: SourcePalace, status_: str, summary: dict) -> None:
    try:
        with conn.transaction():
            state.record_run(conn, run_id, status=status_, tool_version=__version__,
                             fingerprint=src.snapshot.fingerprint, summary=_jsonable(summary),
                             finished=status_ not in ("interrupted", "partial"))
    except psycopg.Error:
        log.exception("could not record the run")


def _jsonable(value):
    import json

    return json.loads(json.dumps(value, default=str))


def status(dsn: str | None = None) -> dict:
    """The checkpoint table, the runs and backend_meta (manifests trimmed): what 02_migrate shows first."""
    with connect(dsn) as conn:
        meta = state.all_meta(conn)
        meta.pop("source_manifest", None)
        verification = meta.pop("last_verification", None)
        return {"target": shown(conn), "checkpoints": state.checkpoint_table(conn), "runs": state.runs(conn),
                "meta": meta, "verification": verification,
                "complete": "done" in state.applied(conn)}


def verify(options: MigrationOptions, progress: ProgressFn | None = None) -> dict:
    """Phase 6 again, on demand (e.g. from 03_verify), whatever the checkpoints say.

    Raises VerificationFailed on any difference; returns the full report otherwise.
    """
    src = _open_source(options.palace, options.work_dir, progress)
    try:
        with connect(options.dsn, autocommit=True, application_name="palace_pg verify") as conn:
            if "kg" not in state.applied(conn):
                raise PalacePgError("the target holds no complete load to verify",
                                    "run `palace-pg migrate` first (it verifies as phase 6)")
            stored = state.get_meta(conn, "source_fingerprint")
            if stored != src.snapshot.fingerprint:
                raise SourceChanged("the source palace changed since it was migrated",
                                    "rerun `palace-pg migrate --restart`, then verify")
            ctx = RunContext(options, conn, src, uuid.uuid4(), progress or (lambda e: None))
            return PhaseRunner(ctx, PHASES).apply(VERIFY)
    finally:
        src.close()
