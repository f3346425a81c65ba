"""Phase 6: prove the target equals the source, row by row, bit by bit.

* per collection: counts; id-set equality (target ids + rejected ids = source ids);
  per-row document equality (sha256 of the UTF-8 bytes), typed metadata equality
  (a type-strict canonical JSON: 1, 1.0 and true differ), bit-exact vectors
  (sha256 of pgvector's binary form, computed on both sides);
* the KG: every entity and triple column equal, by id;
* recall@10 of the HNSW index against exact search over the *source* vectors,
  computed in one streaming pass (memory stays flat whatever the palace size).

Any difference fails the phase with the list of differences.  Rejected rows are
not differences (they are kept whole in ``mempalace.rejects``) but are listed.
"""

from __future__ import annotations

import hashlib
import logging
import struct

import numpy as np
from psycopg import sql

from ..errors import VerificationFailed
from ..faults import crash_point
from ..target import jsonfmt, schema, state
from .base import RunContext

log = logging.getLogger(__name__)

MAX_LISTED = 1000
RECALL_K = 10
RECALL_WARN_BELOW = 0.99


def vector_digest(vec: np.ndarray) -> bytes:
    """sha256 of pgvector's binary (vector_send) form: int16 dim, int16 0, float32 big-endian."""
    v = np.asarray(vec, dtype=np.float32)
    return hashlib.sha256(struct.pack(">HH", v.shape[0], 0) + v.astype(">f4").tobytes()).digest()


def document_digest(doc: str | None) -> bytes | None:
    return None if doc is None else hashlib.sha256(doc.encode("utf-8")).digest()


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
        all_d = np.concatenate([self.dist, d], axis=1)
        all_ids = np.concatenate([self.ids, np.broadcast_to(np.array(ids, dtype=object), d.shape)], axis=1)
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
        ctx.emit(self.name, name, 0, total, "reading target")
        rejected = dict(conn.execute(sql.SQL("SELECT id, reason FROM {} WHERE collection = %s")
                                     .format(schema.qualified("rejects")), [name]).fetchall())
        target: dict[str, tuple] = {}
        with conn.transaction(), conn.cursor(name=f"verify_{table}") as cur:
            cur.itersize = 5000
            cur.execute(sql.SQL(
                "SELECT id, CASE WHEN document IS NULL THEN NULL ELSE sha256(convert_to(document, 'UTF8')) END, "
                "metadata, sha256(vector_send(embedding)) FROM {}").format(schema.qualified(table)))
            for rid, doc_sha, meta, vec_sha in cur:
                target[rid] = (bytes(doc_sha) if doc_sha is not None else None,
                               jsonfmt.canonical(meta) if meta is not None else None,
                               bytes(vec_sha) if vec_sha is not None else None)
        queries, query_ids = self._recall_queries(ctx, table, facts) if facts.name == src.drawers_name else (None, [])
        topk = _TopK(queries, RECALL_K) if queries is not None else None
        seen = mismatched = 0
        limit = None if ctx.options.verify_rows == "all" else int(ctx.options.verify_rows)
        for batch in src.reader.batches(name, batch_size=ctx.options.batch_size, stop=total):
            if topk is not None:
                topk.add(batch.ids, batch.embeddings)
            for i, rid in enumerate(batch.ids):
                seen += 1
                if limit is not None and seen > limit and topk is None:
                    break
                if rid in rejected:
                    continue
                got = target.pop(rid, None)
                if got is None:
                    differences.append({"kind": "missing", "collection": name, "id": rid})
                    continue
                want_meta = batch.metadatas[i]
                want = (document_digest(batch.documents[i]),
                        jsonfmt.canonical(want_meta) if want_meta is not None else None,
                        vector_digest(batch.embeddings[i]))
                for field, a, b in zip(("document", "metadata", "vector"), want, got):
                    if a != b:
                        mismatched += 1
                        diff = {"kind": field, "collection": name, "id": rid}
                        if field == "metadata":
                            diff.update(source=a, target=b)
                        differences.append(diff)
            crash_point("verify")
            ctx.emit(self.name, name, batch.offset + len(batch.ids), total)
        if limit is None:
            for rid in target:
                differences.append({"kind": "extra", "collection": name, "id": rid})
        target_rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(schema.qualified(table))).fetchone()[0]
        if target_rows + len(rejected) != total:
            differences.append({"kind": "count", "collection": name, "source": total, "target": target_rows,
                                "rejected": len(rejected)})
        out = {"source_rows": total, "target_rows": target_rows, "rejected": len(rejected),
               "rejected_rows": [{"id": k, "reason": v} for k, v in list(rejected.items())[:100]],
               "rows_compared": seen if limit is None else min(seen, limit), "mismatched_fields": mismatched}
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
            want = {r["id"]: r for r in source_rows}
            got = {r["id"]: r for r in target_rows}
            for rid in want.keys() - got.keys():
                differences.append({"kind": f"kg_{kind}_missing", "id": rid})
            for rid in got.keys() - want.keys():
                differences.append({"kind": f"kg_{kind}_extra", "id": rid})
            for rid in want.keys() & got.keys():
                for col, value in want[rid].items():
                    if jsonfmt.canonical(value) != jsonfmt.canonical(got[rid].get(col)):
                        differences.append({"kind": f"kg_{kind}_column", "id": rid, "column": col,
                                            "source": value, "target": got[rid].get(col)})
            out[f"{kind}_source"] = len(want)
            out[f"{kind}_target"] = len(got)
        return out


def _summary(report: dict) -> dict:
    return {"collections": {k: {kk: v[kk] for kk in ("source_rows", "target_rows", "rejected")}
                            | ({"recall_at_10": v["recall"]["recall_at_10"]} if "recall" in v else {})
                            for k, v in report["collections"].items()},
            "kg": report["kg"], "differences": report["differences"]}
