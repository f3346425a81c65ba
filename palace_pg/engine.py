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
from .phases.schema_phase import SchemaPhase
from .phases.verify_phase import VerifyPhase
from .source.palace import SourcePalace
from .target_db import schema, state

log = logging.getLogger(__name__)

PHASES = [SchemaPhase(), DRAWERS, OTHERS, IndexesPhase(), KGPhase(), VerifyPhase(), DonePhase()]
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
              daemon_url: str | None = None) -> PreflightReport:
    """Phase 0 on its own: read-only on both sides."""
    src = _open_source(palace, work_dir)
    try:
        with connect(dsn) as conn:
            return run_preflight(conn, src, restart=restart, daemon_url=daemon_url)
    finally:
        src.close()


def _open_source(palace, work_dir, progress: ProgressFn | None = None) -> SourcePalace:
    """The source's snapshot, reported as the `snapshot` phase in bytes when a progress callback is given."""
    if progress is None:
        return SourcePalace.open(palace, work_dir)
    _emit(progress, "snapshot", "", 0, 1, "Copy and hash the source palace")
    src = SourcePalace.open(palace, work_dir, lambda done, total: _emit(progress, "snapshot", "", done, total))
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
    src = _open_source(options.palace, options.work_dir)
    try:
        with connect(options.dsn) as conn:
            report = run_preflight(conn, src, restart=options.restart, daemon_url=options.daemon_url)
            ctx = RunContext(options, conn, src, uuid.uuid4())
            phases = []
            exists = state.schema_exists(conn) and not options.restart
            for phase in _phase_selection(options.only):
                entry = {"phase": phase.name, "title": phase.title,
                         "state": "done" if exists and state.is_done(conn, phase.name) else "pending"}
                if report.ok:
                    entry["plan"] = phase.describe(ctx)
                phases.append(entry)
            conn.rollback()
        return {"preflight": report.as_dict(), "phases": phases, "estimate_seconds": report.estimate_seconds,
                "source_fingerprint": src.snapshot.fingerprint}
    finally:
        src.close()


def _clear_target(conn: psycopg.Connection) -> None:
    """--restart: drop palace_pg's schema and graph (only ever palace_pg's own objects)."""
    with conn.transaction():
        if conn.execute("SELECT 1 FROM ag_catalog.ag_graph WHERE name = %s", [schema.GRAPH]).fetchone():
            conn.execute("SELECT ag_catalog.drop_graph(%s, true)", [schema.GRAPH])
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema.SCHEMA)))


def migrate(options: MigrationOptions, progress: ProgressFn | None = None) -> dict:
    """Run every pending phase; resume from the checkpoints; refuse what preflight refuses."""
    started = time.monotonic()
    lock_conn = connect(options.dsn, autocommit=True, application_name="palace_pg migrate (lock)")
    try:
        if not state.try_lock(lock_conn):
            holder = state.lock_holder(lock_conn) or {}
            raise MigrationLocked(f"another migrator is running on this target (pid {holder.get('pid')})",
                                  "wait for it to finish; never run two migrators on one target")
        src = _open_source(options.palace, options.work_dir, progress)
        try:
            # autocommit: every `conn.transaction()` block is then a real transaction that commits
            # at its end (not a savepoint inside an implicit one a later rollback would undo)
            with connect(options.dsn, autocommit=True, application_name="palace_pg migrate") as conn:
                return _run(conn, src, options, progress or (lambda e: None), started, lock_conn.info.backend_pid)
        finally:
            src.close(remove_snapshot=not options.keep_snapshot)
    finally:
        lock_conn.close()


def _run(conn: psycopg.Connection, src: SourcePalace, options: MigrationOptions, progress: ProgressFn,
         started: float, lock_pid: int) -> dict:
    # conn is in autocommit: each `conn.transaction()` commits or rolls back whole, nothing is left open
    _emit(progress, "preflight", "", 0, 1, "Read-only checks of source and target")
    report = run_preflight(conn, src, restart=options.restart, daemon_url=options.daemon_url, lock_pid=lock_pid)
    _emit(progress, "preflight", "", 1, 1, "done" if report.ok else "refused: see the checks")
    if not report.ok:
        raise PreflightRefused(report.checks)
    if options.restart and state.schema_exists(conn):
        _clear_target(conn)
    if state.schema_exists(conn) and state.is_done(conn, "done") and not options.only:
        return {"status": "already-done", "wrote": "nothing", "preflight": report.as_dict(),
                "rejected": state.rejected_rows(conn),
                "message": "this palace was already migrated completely; nothing was written",
                "elapsed_seconds": round(time.monotonic() - started, 2)}
    run_id = uuid.uuid4()
    ctx = RunContext(options, conn, src, run_id, progress)
    # the snapshot and the preflight come before phase 1: downtime too, so they are reported
    timings: dict[str, float] = {"preflight": round(time.monotonic() - started, 2)}
    peak_rss_mb: dict[str, int] = {}  # the process's peak so far, at the end of each phase
    results: dict[str, dict] = {}
    selected = _phase_selection(options.only)
    resumed = state.schema_exists(conn)
    for phase in selected:
        if state.schema_exists(conn) and state.is_done(conn, phase.name):
            results[phase.name] = {"skipped": "done in an earlier run"}
            continue
        _require_prerequisites(conn, phase)
        t0 = time.monotonic()
        progress_start(ctx, phase)
        try:
            details = phase.run(ctx)
        except VerificationFailed as exc:
            _record(conn, run_id, src, "verify-failed", {"differences": len(exc.differences)})
            raise
        except BaseException:
            if state.schema_exists(conn):
                _record(conn, run_id, src, "interrupted", {"phase": phase.name})
            raise
        with conn.transaction():
            if phase.name == "schema":
                state.set_meta(conn, "palace_id", state.get_meta(conn, "palace_id") or str(uuid.uuid4()))
            state.start_unit(conn, run_id, phase.name)
            state.finish_unit(conn, phase.name, details={"seconds": round(time.monotonic() - t0, 2)})
        timings[phase.name] = round(time.monotonic() - t0, 2)
        peak_rss_mb[phase.name] = _peak_rss_mb()
        results[phase.name] = details
        if phase.name == OTHERS.name:
            src.release_reader()  # chromadb holds every HNSW segment in memory; nothing later reads it
        ctx.emit(phase.name, "", 1, 1, "done")
    summary = {"status": "done" if state.is_done(conn, "done") else "partial", "run_id": str(run_id),
               "resumed": resumed, "source_fingerprint": src.snapshot.fingerprint,
               "phase_seconds": timings, "elapsed_seconds": round(time.monotonic() - started, 2),
               "peak_rss_mb": peak_rss_mb, "rejected": state.rejected_rows(conn),
               "preflight": report.as_dict(), "results": results, "target": shown(conn)}
    _record(conn, run_id, src, summary["status"], {k: v for k, v in summary.items() if k != "preflight"})
    return summary


def progress_start(ctx: RunContext, phase) -> None:
    ctx.emit(phase.name, "", 0, 1, phase.title)


def _require_prerequisites(conn: psycopg.Connection, phase) -> None:
    names = [p.name for p in PHASES]
    before = names[: names.index(phase.name)]
    missing = [n for n in before if not (state.schema_exists(conn) and state.is_done(conn, n))]
    if missing:
        raise PalacePgError(f"phase {phase.name!r} needs {', '.join(missing)} done first",
                            "run `palace-pg migrate` without --phase (it resumes), or run those phases first")


def _record(conn: psycopg.Connection, run_id, src: SourcePalace, status_: str, summary: dict) -> None:
    try:
        with conn.transaction():
            state.record_run(conn, run_id, status=status_, tool_version=__version__,
                             fingerprint=src.snapshot.fingerprint, summary=_jsonable(summary),
                             finished=status_ in ("done", "verify-failed"))
    except psycopg.Error:
        log.exception("could not record the run")


def _peak_rss_mb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux


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
                "complete": state.schema_exists(conn) and state.is_done(conn, "done")}


def verify(options: MigrationOptions, progress: ProgressFn | None = None) -> dict:
    """Phase 6 again, on demand (e.g. from 03_verify), whatever the checkpoints say.

    Raises VerificationFailed on any difference; returns the full report otherwise.
    """
    src = _open_source(options.palace, options.work_dir, progress)
    try:
        with connect(options.dsn, autocommit=True, application_name="palace_pg verify") as conn:
            if not (state.schema_exists(conn) and state.is_done(conn, "kg")):
                raise PalacePgError("the target holds no complete load to verify",
                                    "run `palace-pg migrate` first (it verifies as phase 6)")
            stored = state.get_meta(conn, "source_fingerprint")
            if stored != src.snapshot.fingerprint:
                raise SourceChanged("the source palace changed since it was migrated",
                                    "rerun `palace-pg migrate --restart`, then verify")
            ctx = RunContext(options, conn, src, uuid.uuid4(), progress or (lambda e: None))
            return VerifyPhase().run(ctx)
    finally:
        src.close()
