"""Phases 2 and 3: stream each collection from the snapshot into its table with binary COPY.

Each batch and its checkpoint commit in one transaction.  The checkpoint's
``rows_done`` is the source offset of the next row, so a crash anywhere
resumes at exactly the next batch: no duplicate (and the primary key would
refuse one loudly) and no gap.
"""

from __future__ import annotations

import logging

from psycopg import sql

from ..faults import crash_point
from ..source.chroma_reader import CollectionFacts
from ..source.prefetch import prefetched
from ..target_db import schema, state
from ..target_db.loader import copy_batch
from .base import Phase, RunContext

log = logging.getLogger(__name__)


class CollectionsPhase(Phase):
    def __init__(self, name: str, title: str, which: str, requires: tuple[str, ...]) -> None:
        self.name = name
        self.title = title
        self.requires = requires
        self._which = which  # "drawers" or "others"

    def collections(self, ctx: RunContext) -> list[CollectionFacts]:
        src = ctx.source
        if self._which == "drawers":
            return [src.drawers] if src.drawers else []
        return src.other_collections

    def plan(self, ctx: RunContext) -> dict:
        out = []
        for facts in self.collections(ctx):
            table = schema.table_for_collection(facts.name, ctx.source.drawers_name)
            cp = state.checkpoint(ctx.conn, self.name, facts.name) if state.schema_exists(ctx.conn) else None
            n = ctx.source.count(facts.name)
            out.append({
                "collection": facts.name, "table": f"{schema.SCHEMA}.{table}", "rows": n,
                "dimension": facts.dimension, "batches": -(-n // ctx.options.batch_size) if n else 0,
                "resume_at": (cp or {}).get("rows_done", 0),
                "statement": sql.SQL("COPY {} (id, document, metadata, embedding, seq) FROM STDIN WITH (FORMAT BINARY)")
                .format(schema.qualified(table)).as_string(ctx.conn),
            })
        return {"collections": out}

    def apply(self, ctx: RunContext) -> dict:
        collections = self.collections(ctx)
        return {facts.name: self._load(ctx, facts, last=i == len(collections) - 1)
                for i, facts in enumerate(collections)}

    def _load(self, ctx: RunContext, facts: CollectionFacts, *, last: bool) -> dict:
        conn, src, opts = ctx.conn, ctx.source, ctx.options
        unit = facts.name
        table = schema.table_for_collection(facts.name, src.drawers_name)
        total = src.count(facts.name)
        with conn.transaction():
            cp = state.start_unit(conn, ctx.run_id, self.name, unit)
        if cp["state"] == "done":
            return {"skipped": "already loaded", "rows": cp["rows_done"]}
        offset = cp["rows_done"]
        loaded = rejected = 0
        ctx.emit(self.name, unit, offset, total, "resuming" if offset else "")
        batches = src.reader.batches(facts.name, batch_size=opts.batch_size, start=offset, stop=total)
        for batch in prefetched(batches):
            with conn.transaction():
                result = copy_batch(conn, table, facts.name, ids=batch.ids, documents=batch.documents,
                                    metadatas=batch.metadatas, embeddings=batch.embeddings,
                                    first_seq=batch.offset, dimension=facts.dimension)
                crash_point("copied")
                offset = batch.offset + len(batch.ids)
                state.advance(conn, self.name, unit, rows_done=offset, cursor={"offset": offset})
            crash_point("committed")
            loaded += result.loaded
            rejected += len(result.rejected)
            for rej in result.rejected:
                log.warning("rejected %s/%s: %s", facts.name, rej["id"], rej["reason"])
            ctx.emit(self.name, unit, offset, total)
        with ctx.final_transaction() if last else conn.transaction():
            state.finish_unit(conn, self.name, unit, {"rows": offset, "loaded_this_run": loaded,
                                                      "rejected_this_run": rejected})
        return {"rows": offset, "loaded": loaded, "rejected": rejected}


DRAWERS = CollectionsPhase("drawers", "Load the drawers collection", "drawers", requires=("schema",))
OTHERS = CollectionsPhase("collections", "Load closets and every other collection", "others",
                          requires=("schema", "drawers"))
