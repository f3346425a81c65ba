"""One sync: from a fresh snapshot of the palace, write what changed since the target last read it.

Order, and why it is safe to kill anywhere: collections (each batch commits
with its digests) and, beside them on a second connection, the KG (one
transaction), then the small files, then in one last transaction the new
watermarks, fingerprint and manifest.  Until that
last commit the target still says "read up to the old watermark", so a rerun
looks at the same candidates again, finds the rows already written equal to
the source, and writes only the rest.  Nothing changed at all (every file of
the palace hashes as recorded) writes nothing.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg import sql

from ..dsn import connect
from ..errors import PalacePgError
from ..source.palace import SourcePalace
from ..target_db import ddl, schema, state
from .changes import changes_since, watermarks
from .kg import sync_kg
from .rows import sync_rows

log = logging.getLogger(__name__)

def _changed_files(recorded: dict, now: dict) -> set[str]:
    return {rel for rel in recorded.keys() | now.keys()
            if (recorded.get(rel) or {}).get("sha256") != (now.get(rel) or {}).get("sha256")}


def _is_kg_file(rel: str) -> bool:
    return rel.startswith("kg/") or rel.removeprefix("palace/").startswith("knowledge_graph.sqlite3")


def sync_target(conn: psycopg.Connection, src: SourcePalace, *, batch_size: int = 5000, emit=lambda *a: None,
                dsn: str | None = None) -> dict:
    """Apply the palace's changes to ``conn``'s target (autocommit: each block commits whole).

    With ``dsn`` the KG is caught up on a second connection while the collections are: the
    collections' writes keep one server process busy (HNSW inserts), the KG's compare a Python one.
    ``kg_proof`` in the result (a :class:`~palace_pg.sync.kg.KgProof`, not for JSON) when the KG was compared.
    """
    started = time.monotonic()
    manifest = src.snapshot.manifest()["files"]
    changed = _changed_files(state.get_meta(conn, "source_manifest") or {}, manifest)
    out: dict = {"files_changed": sorted(changed), "collections": {}, "kg": {}, "carried_files": 0, "parts": {}}
    if not changed:
        out.update(wrote=False, seconds=round(time.monotonic() - started, 2),
                   message="every file of the palace is as the target last read it: nothing to do")
        return out
    marks = state.get_meta(conn, "chroma_watermarks") or {}
    chroma_changed = any(not _is_kg_file(rel) and not rel.startswith("beside/") and rel.startswith("palace/")
                         and rel != "palace/mempalace_embedder.json" for rel in changed)
    kg_changed = any(_is_kg_file(rel) for rel in changed)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="palace_pg-sync-kg") as pool:
        kg_job = pool.submit(_timed, _kg_on_own_connection, dsn, src) if kg_changed and dsn else None
        t0 = time.monotonic()
        if chroma_changed:
            extra_writer = (lambda: connect(dsn, autocommit=True, application_name="palace_pg sync (rows)")) \
                if dsn else None
            _sync_collections(conn, src, marks, out, batch_size, emit, extra_writer)
            out["parts"]["collections"] = round(time.monotonic() - t0, 2)
        if kg_changed:
            seconds, (out["kg"], out["kg_proof"]) = kg_job.result() if kg_job else _timed(sync_kg, conn, *src.kg())
            out["parts"]["kg" if kg_job is None else "kg (beside the collections)"] = seconds
    t0 = time.monotonic()
    carried, _left = src.carried_files()
    carried_rels = {rel for rel, _ in carried}
    with conn.transaction():
        for rel, path in carried:
            if rel in changed:
                ddl.put_file(conn, rel, path.read_bytes())
                out["carried_files"] += 1
        gone = [rel for rel in changed if rel not in manifest and rel not in carried_rels]
        if gone:
            conn.execute(sql.SQL("DELETE FROM {} WHERE path = ANY(%s)").format(schema.qualified("files")), [gone])
        state.set_meta(conn, "chroma_watermarks", watermarks(src.snapshot.palace, src.collections))
        state.set_meta(conn, "source_fingerprint", src.snapshot.fingerprint)
        state.set_meta(conn, "source_manifest", manifest)
        state.set_meta(conn, "chroma_collection_metadata", {c.name: c.metadata for c in src.collections})
    out["parts"]["files_and_bookkeeping"] = round(time.monotonic() - t0, 2)
    out.update(wrote=True, seconds=round(time.monotonic() - started, 2))
    return out


def _timed(fn, *args):
    t0 = time.monotonic()
    result = fn(*args)
    return round(time.monotonic() - t0, 2), result


def _kg_on_own_connection(dsn: str, src: SourcePalace):
    with connect(dsn, autocommit=True, application_name="palace_pg sync (kg)") as conn:
        return sync_kg(conn, *src.kg())


def _sync_collections(conn: psycopg.Connection, src: SourcePalace, marks: dict, out: dict, batch_size: int,
                      emit, extra_writer=None) -> None:
    held = dict(conn.execute(sql.SQL("SELECT name, table_name FROM {}").format(
        schema.qualified("collections"))).fetchall())
    dropped = sorted(held.keys() - {c.name for c in src.collections})
    if dropped:
        raise PalacePgError(f"the palace no longer has the collection(s) {', '.join(dropped)} the target holds",
                            "if that is intended, rerun `palace-pg migrate --restart`; nothing was changed")
    for facts in src.collections:
        table = held.get(facts.name) or _add_collection(conn, src, facts)
        changes = changes_since(src.snapshot.palace, facts, int(marks.get(facts.name, -1)))
        result = sync_rows(conn, lambda ids, name=facts.name: src.reader.rows(name, ids), facts, table, changes,
                           batch_size=batch_size, emit=lambda unit, done, total: emit(unit, done, total),
                           extra_writer=extra_writer)
        out["collections"][facts.name] = result.as_dict()
        if result.written:
            with conn.transaction():
                ddl.register_collection(conn, facts.name, table, facts.dimension, metadata=facts.metadata,
                                        source_count=src.count(facts.name), drawers_name=src.drawers_name,
                                        refresh=True)


def _add_collection(conn: psycopg.Connection, src: SourcePalace, facts) -> str:
    """A collection MemPalace created after the migration: its table, registry row and indexes."""
    from ..backend import maintenance

    table = schema.table_for_collection(facts.name, src.drawers_name)
    with conn.transaction():
        conn.execute(schema.collection_ddl(table, facts.dimension))
        ddl.register_collection(conn, facts.name, table, facts.dimension, metadata=facts.metadata,
                                drawers_name=src.drawers_name, refresh=True)
        maintenance.create_indexes(conn, table, with_hnsw=facts.dimension is not None)
    log.info("sync: collection %s is new since the migration: table %s created", facts.name, table)
    return table
