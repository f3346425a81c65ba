"""Phase 6: prove the target equals the source, row by row, bit by bit.

* per collection: counts; id-set equality (the ids in the snapshot's chroma.sqlite3,
  read independently of chromadb, = the rows read = target ids + rejected ids);
  per-row document equality (sha256 of the UTF-8 bytes), typed metadata equality
  (sha256 of a type-strict canonical JSON: 1, 1.0 and true differ), bit-exact
  vectors (sha256 of pgvector's binary form).  The source side of each comparison
  is the digest taken when the row was read, stored with the row in the same
  transaction (``mempalace.source_digests``), so the source is not read twice;
* the KG: every entity and triple column equal, by id;
* recall@10 of the HNSW index against exact search over the stored vectors (proven
  bit-equal to the source's in the same pass), streamed: memory stays flat.

Any difference fails the phase with the list of differences.  Rejected rows are
not differences (they are kept whole in ``mempalace.rejects``) but are listed.
"""

from __future__ import annotations

import logging

import numpy as np
from psycopg import sql

from ..errors import VerificationFailed
from ..faults import crash_point
from ..source.chroma_reader import sqlite_ro
from ..target_db import jsonfmt, schema, state
from ..target_db.loader import metadata_digest
from .base import RunContext

log = logging.getLogger(__name__)

MAX_LISTED = 1000
RECALL_K = 10
RECALL_WARN_BELOW = 0.99
_SCALARS = (str, int, float, bool, bytes, type(None))


def source_ids_from_sqlite(palace, collection_uuid: str) -> set[str]:
    """Every id of a collection, from chroma.sqlite3's metadata segment (not through chromadb)."""
    db = sqlite_ro(palace / "chroma.sqlite3")
    try:
        return {r[0] for r in db.execute(
            "SELECT e.embedding_id FROM embeddings e JOIN segments s ON s.id = e.segment_id "
            "WHERE s.collection = ? AND s.scope = 'METADATA'", [collection_uuid])}
    finally:
        db.close()


class _TopK:
    """Running exact top-k (cosine distance) for a set of queries over streamed batches."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        norms = np.linalg.norm(queries, axis=1, keepdims=True)
        self.q = queries / np.where(norms == 0, 1, norms)
        self.k = k
        self.dist = np.full((len(queries), 0), np.inf, dtype=np.float64)
        self.ids = np.empty((len(queries), 0), dtype=object)

    def add(self, ids: list[str], vectors: np.ndarray) -> None:
        if not len(ids) or not len(self.q):
            return
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        d = 1.0 - (self.q.astype(np.float64) @ (vectors / np.where(norms == 0, 1, norms)).astype(np.float64).T)
        # only each query's k best of this batch can enter its running top-k
        if d.shape[1] > self.k:
            part = np.argpartition(d, self.k - 1, axis=1)[:, : self.k]
            d = np.take_along_axis(d, part, axis=1)
            batch_ids = np.array(ids, dtype=object)[part]
        else:
            batch_ids = np.broadcast_to(np.array(ids, dtype=object), d.shape)
        all_d = np.concatenate([self.dist, d], axis=1)
        all_ids = np.concatenate([self.ids, batch_ids], axis=1)
        keep = np.argsort(all_d, axis=1, kind="stable")[:, : self.k]
        self.dist = np.take_along_axis(all_d, keep, axis=1)
        self.ids = np.take_along_axis(all_ids, keep, axis=1)


class VerifyPhase:
    name = "verify"
    title = "Verify counts, ids, rows, vectors, the KG and HNSW recall"

    def describe(self, ctx: RunContext) -> dict:
        return {"compares": ["counts", "id sets", "documents (sha256)", "typed metadata", "vectors (bit-exact)",
                             "KG entities and triples (every column)",
                             f"recall@{RECALL_K} on {ctx.options.recall_queries} sampled queries, "
                             f"ef_search {ctx.options.ef_search}"],
                "rows": ctx.options.verify_rows}

    def run(self, ctx: RunContext) -> dict:
        conn = ctx.conn
        with conn.transaction():
            state.start_unit(conn, ctx.run_id, self.name)
        differences: list[dict] = []
        report: dict = {"collections": {}, "kg": {}, "recall": {}}
        for facts in ctx.source.collections:
            report["collections"][facts.name] = self._collection(ctx, facts, differences)
        report["kg"] = self._kg(ctx, differences)
        report["differences"] = len(differences)
        report["differences_listed"] = differences[:MAX_LISTED]
        with conn.transaction():
            state.set_meta(conn, "last_verification", {"run_id": str(ctx.run_id), **report})
            if differences:
                state.advance(conn, self.name, "", rows_done=0, cursor={"failed": True})
            else:
                state.finish_unit(conn, self.name, details=_summary(report))
        if differences:
            raise VerificationFailed(differences)
        return report

    # -- collections ----------------------------------------------------------------------
    def _collection(self, ctx: RunContext, facts, differences: list[dict]) -> dict:
        conn, src = ctx.conn, ctx.source
        name = facts.name
        table = schema.table_for_collection(name, src.drawers_name)
        total = src.count(name)
        ctx.emit(self.name, name, 0, total, "comparing")
        # 1. the id set, read independently of chromadb straight from the snapshot's chroma.sqlite3
        source_ids = source_ids_from_sqlite(src.snapshot.palace, facts.uuid)
        rejected = dict(conn.execute(sql.SQL("SELECT id, reason FROM {} WHERE collection = %s")
                                     .format(schema.qualified("rejects")), [name]).fetchall())
        # 2. what the load read, per row (written in the same transaction as each row)
        digests = {rid: (doc, meta, vec) for rid, doc, meta, vec in conn.execute(sql.SQL(
            "SELECT id, document, metadata, vector FROM {} WHERE collection = %s")
            .format(schema.qualified("source_digests")), [name])}
        for rid in sorted(source_ids - digests.keys())[:MAX_LISTED]:
            differences.append({"kind": "missing", "collection": name, "id": rid, "detail": "never read"})
        for rid in sorted(digests.keys() - source_ids)[:MAX_LISTED]:
            differences.append({"kind": "extra", "collection": name, "id": rid, "detail": "not in the source"})
        if len(source_ids) != total:
            differences.append({"kind": "count", "collection": name, "detail": "chroma.sqlite3 and chromadb disagree",
                                "sqlite_ids": len(source_ids), "chromadb_count": total})
        # 3. every stored row against its digest; the drawers' vectors feed the exact top-k for recall
        queries, query_ids = self._recall_queries(ctx, table, facts) if name == src.drawers_name else (None, [])
        topk = _TopK(queries, RECALL_K) if queries is not None else None
        seen = mismatched = 0
        with conn.transaction(), conn.cursor(name=f"verify_{table}", binary=True) as cur:
            cur.itersize = 2000
            cur.execute(sql.SQL(
                "SELECT id, CASE WHEN document IS NULL THEN NULL ELSE sha256(convert_to(document, 'UTF8')) END, "
                "metadata, sha256(vector_send(embedding)), {} FROM {}").format(
                    sql.SQL("embedding") if topk is not None else sql.SQL("NULL::vector"), schema.qualified(table)))
            ids_batch, vec_batch = [], []
            for rid, doc_sha, meta, vec_sha, vec in cur:
                seen += 1
                want = digests.pop(rid, None)
                if want is None:
                    differences.append({"kind": "extra", "collection": name, "id": rid})
                    continue
                got = (bytes(doc_sha) if doc_sha is not None else None, metadata_digest(meta),
                       bytes(vec_sha))
                for field, a, b in zip(("document", "metadata", "vector"), want, got):
                    if (bytes(a) if a is not None else None) != b:
                        mismatched += 1
                        diff = {"kind": field, "collection": name, "id": rid}
                        if field == "metadata":
                            diff["target"] = meta
                        differences.append(diff)
                if topk is not None:
                    ids_batch.append(rid)
                    vec_batch.append(vec.to_numpy())
                    if len(ids_batch) >= 5000:
                        topk.add(ids_batch, np.stack(vec_batch))
                        ids_batch, vec_batch = [], []
                if seen % 5000 == 0:
                    crash_point("verify")
                    ctx.emit(self.name, name, seen, total)
            if topk is not None and ids_batch:
                topk.add(ids_batch, np.stack(vec_batch))
        for rid in list(digests)[:MAX_LISTED]:
            if rid not in rejected:
                differences.append({"kind": "missing", "collection": name, "id": rid, "detail": "read, not stored"})
        target_rows = seen
        if target_rows + len(rejected) != total:
            differences.append({"kind": "count", "collection": name, "source": total, "target": target_rows,
                                "rejected": len(rejected)})
        ctx.emit(self.name, name, total, total)
        out = {"source_rows": total, "target_rows": target_rows, "rejected": len(rejected),
               "rejected_rows": [{"id": k, "reason": v} for k, v in list(rejected.items())[:100]],
               "rows_compared": seen, "mismatched_fields": mismatched}
        if topk is not None:
            out["recall"] = self._recall(ctx, table, queries, query_ids, topk)
            # recall is a property of the index, not a loss of data: reported loudly, never a difference
            if out["recall"]["recall_at_10"] < RECALL_WARN_BELOW:
                out["recall"]["warning"] = (f"recall@10 {out['recall']['recall_at_10']} is below "
                                            f"{RECALL_WARN_BELOW}: raise hnsw.ef_search or rebuild with a larger "
                                            "ef_construction (uniformly random vectors are the worst case)")
        return out

    def _recall_queries(self, ctx: RunContext, table: str, facts):
        n = ctx.source.count(facts.name)
        q = min(ctx.options.recall_queries, n)
        if q == 0:
            return None, []
        rng = np.random.default_rng(int(ctx.source.snapshot.fingerprint[:8], 16))
        seqs = sorted(int(s) for s in rng.choice(n, size=q, replace=False))
        rows = ctx.conn.execute(sql.SQL("SELECT id, embedding FROM {} WHERE seq = ANY(%s) ORDER BY seq")
                                .format(schema.qualified(table)), [seqs]).fetchall()
        if not rows:
            return None, []
        vectors = np.stack([np.asarray(r[1].to_numpy(), dtype=np.float32) for r in rows])
        # nudge each query off its own row, as a real query would be
        noise = rng.normal(0, 0.02, size=vectors.shape).astype(np.float32)
        return vectors + noise, [r[0] for r in rows]

    def _recall(self, ctx: RunContext, table: str, queries: np.ndarray, query_ids: list[str], topk: _TopK) -> dict:
        conn = ctx.conn
        stmt = sql.SQL("SELECT id, embedding <=> %s AS d FROM {} ORDER BY embedding <=> %s LIMIT {}").format(
            schema.qualified(table), sql.Literal(RECALL_K))
        hits = 0
        returned = 0
        with conn.transaction():
            conn.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ctx.options.ef_search)))
            plan = "\n".join(r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + stmt, [queries[0], queries[0]]))
            for qi, qv in enumerate(queries):
                rows = conn.execute(stmt, [qv, qv]).fetchall()
                returned += len(rows)
                kth = topk.dist[qi, min(RECALL_K, topk.dist.shape[1]) - 1]
                # a tie at the k-th distance counts as a hit (duplicate vectors)
                hits += sum(1 for _, d in rows if d <= kth + 1e-6)
        expected = len(queries) * min(RECALL_K, topk.dist.shape[1])
        recall = hits / expected if expected else 1.0
        if recall < RECALL_WARN_BELOW:
            log.warning("recall@10 %.4f below %.2f at ef_search %d", recall, RECALL_WARN_BELOW, ctx.options.ef_search)
        return {"recall_at_10": round(recall, 4), "queries": len(queries), "ef_search": ctx.options.ef_search,
                "rows_returned": returned, "uses_hnsw": "hnsw" in plan}

    # -- KG -------------------------------------------------------------------------------
    def _kg(self, ctx: RunContext, differences: list[dict]) -> dict:
        from ..kg.age_store import read_entities, read_triples

        src_entities, src_triples = ctx.source.kg()
        out = {}
        for kind, source_rows, target_rows in (("entity", src_entities, read_entities(ctx.conn)),
                                               ("triple", src_triples, read_triples(ctx.conn))):
            differences += kg_differences(kind, source_rows, target_rows)
            out[f"{kind}_source"] = len(source_rows)
            out[f"{kind}_target"] = len(target_rows)
        return out


def kg_differences(kind: str, want_rows: list[dict], got_rows: list[dict], labels=("source", "target")) -> list[dict]:
    """Every missing, extra or different KG row (every column of ``want_rows``, type-strict), by id."""
    want = {r["id"]: r for r in want_rows}
    got = {r["id"]: r for r in got_rows}
    out = [{"kind": f"kg_{kind}_missing", "id": rid} for rid in want.keys() - got.keys()]
    out += [{"kind": f"kg_{kind}_extra", "id": rid} for rid in got.keys() - want.keys()]
    for rid in want.keys() & got.keys():
        for col, value in want[rid].items():
            if not _same(value, got[rid].get(col)):
                out.append({"kind": f"kg_{kind}_column", "id": rid, "column": col,
                            labels[0]: value, labels[1]: got[rid].get(col)})
    return out


def _same(a, b) -> bool:
    """Type-strict equality: 1, 1.0 and True differ (the canonical form only where types differ or NaN)."""
    if type(a) is type(b) and type(a) in _SCALARS and a == b:  # not containers: {"x": 1} == {"x": True}
        return True
    return jsonfmt.canonical(a) == jsonfmt.canonical(b)


def _summary(report: dict) -> dict:
    return {"collections": {k: {kk: v[kk] for kk in ("source_rows", "target_rows", "rejected")}
                            | ({"recall_at_10": v["recall"]["recall_at_10"]} if "recall" in v else {})
                            for k, v in report["collections"].items()},
            "kg": report["kg"], "differences": report["differences"]}
