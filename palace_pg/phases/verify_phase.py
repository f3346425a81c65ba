"""Phase 6: prove the target equals the source, row by row, bit by bit.

* per collection: counts; id-set equality (the ids in the snapshot's chroma.sqlite3,
  read independently of chromadb, = the rows read = target ids + rejected ids);
  per-row document equality (sha256 of the UTF-8 bytes), typed metadata equality
  (sha256 of a type-strict canonical JSON: 1, 1.0 and true differ), bit-exact
  vectors (sha256 of pgvector's binary form).  The source side of each comparison
  is the digest taken when the row was read, stored with the row in the same
  transaction (``mempalace.source_digests``), so the source is not read twice;
* the KG: every entity and triple column equal, by id;
* recall of the HNSW index (forced, at the backend's ef_search for each k) at k 10 and
  MemPalace's pool of 20, against exact search over the stored vectors (proven
  bit-equal to the source's in the same pass), streamed: memory stays flat.  The
  queries look like real ones (palace_pg.query_sets): held-out questions embedded
  with MiniLM when the palace's vectors are MiniLM's, and off-distribution mixtures
  always.  The report also says which plan the backend runs for an unfiltered
  search of this collection (``exact`` below ``exact_unfiltered_max_rows``).

Any difference fails the phase with the list of differences.  Rejected rows are
not differences (they are kept whole in ``mempalace.rejects``) but are listed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from psycopg import sql

from .. import query_sets
from ..backend.settings import SearchSettings
from ..errors import VerificationFailed
from ..faults import crash_point
from ..metrics import ExactTopK, recall_at_k
from ..source.chroma_reader import sqlite_ro
from ..target_db import row_proofs, schema, state
from ..target_db.compare import diff_rows
from ..target_db.loader import metadata_digest
from .base import Phase, RunContext

log = logging.getLogger(__name__)

MAX_LISTED = 1000
RECALL_K = 10
#: MemPalace's vector pool for its hybrid re-rank (4 × n_results, n = 5).
POOL_K = 20
RECALL_WARN_BELOW = 0.99


def source_ids_from_sqlite(palace, collection_uuid: str) -> set[str]:
    """Every id of a collection, from chroma.sqlite3's metadata segment (not through chromadb)."""
    db = sqlite_ro(palace / "chroma.sqlite3")
    try:
        return {r[0] for r in db.execute(
            "SELECT e.embedding_id FROM embeddings e JOIN segments s ON s.id = e.segment_id "
            "WHERE s.collection = ? AND s.scope = 'METADATA'", [collection_uuid])}
    finally:
        db.close()


class VerifyPhase(Phase):
    name = "verify"
    title = "Verify counts, ids, rows, vectors, the KG and HNSW recall"
    requires = ("schema", "drawers", "collections", "indexes", "kg")

    def plan(self, ctx: RunContext) -> dict:
        return {"compares": ["counts", "id sets", "documents (sha256)", "typed metadata", "vectors (bit-exact)",
                             "KG entities and triples (every column)",
                             f"HNSW recall@{RECALL_K} and @{POOL_K} on up to {ctx.options.recall_queries} "
                             f"queries per kind (held-out MiniLM questions, off-distribution mixtures), "
                             f"ef_search ≥ {ctx.options.ef_search}, growing with k"],
                "rows": ctx.options.verify_rows}

    def apply(self, ctx: RunContext) -> dict:
        conn = ctx.conn
        differences: list[dict] = []
        report: dict = {"collections": {}, "kg": {}, "recall": {}}
        for facts in ctx.source.collections:
            report["collections"][facts.name] = self._collection(ctx, facts, differences)
        report["kg"] = self._kg(ctx, differences)
        report["differences"] = len(differences)
        report["differences_listed"] = differences[:MAX_LISTED]
        if differences:  # kept for the runbooks and `status`; the phase stays pending
            with conn.transaction():
                state.set_meta(conn, "last_verification", {"run_id": str(ctx.run_id), **report})
            raise VerificationFailed(differences)
        with ctx.final_transaction(details=_summary(report)):
            state.set_meta(conn, "last_verification", {"run_id": str(ctx.run_id), **report})
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
        query_list = self._recall_queries(ctx, table, facts) if name == src.drawers_name else []
        # 2. which rows to read out: all of them when recall needs every vector, else only those
        #    without a standing proof (row_proofs: the rest are proven again inside PostgreSQL)
        row_proofs.ensure_column(conn)
        compare_ids = None if query_list else row_proofs.unproven_ids(conn, table, name)
        if compare_ids is not None and len(compare_ids) > total // 2:
            compare_ids = None  # most rows unproven (a target older than proofs): one sequential pass is cheaper
        record_proofs = not query_list or ctx.options.online
        read_ids = {r[0] for r in conn.execute(sql.SQL("SELECT id FROM {} WHERE collection = %s").format(
            schema.qualified("source_digests")), [name])}
        for rid in sorted(source_ids - read_ids)[:MAX_LISTED]:
            differences.append({"kind": "missing", "collection": name, "id": rid, "detail": "never read"})
        for rid in sorted(read_ids - source_ids)[:MAX_LISTED]:
            differences.append({"kind": "extra", "collection": name, "id": rid, "detail": "not in the source"})
        if len(source_ids) != total:
            differences.append({"kind": "count", "collection": name, "detail": "chroma.sqlite3 and chromadb disagree",
                                "sqlite_ids": len(source_ids), "chromadb_count": total})
        # 3. the rows read out, each against its digests; the drawers' vectors feed the exact top-k for recall
        tops = [ExactTopK(qs.vectors, POOL_K) for qs in query_list]
        compared = self._compare_rows(ctx, table, name, total, compare_ids, tops, differences)
        if compare_ids is None:
            unstored = [rid for rid in read_ids if rid not in compared.seen_ids]
            target_rows = len(compared.seen_ids)
        else:
            unstored = row_proofs.digests_without_row(conn, table, name)
            target_rows = row_proofs.stored_count(conn, table)
        for rid in [r for r in unstored if r not in rejected][:MAX_LISTED]:
            differences.append({"kind": "missing", "collection": name, "id": rid, "detail": "read, not stored"})
        if target_rows + len(rejected) != total:
            differences.append({"kind": "count", "collection": name, "source": total, "target": target_rows,
                                "rejected": len(rejected)})
        # 4. proofs for the rows just compared equal in full, for the cutover's verification to stand on
        if record_proofs:
            with conn.transaction():
                if compare_ids is None:
                    row_proofs.record(conn, table, name, except_ids=sorted(compared.unequal_ids))
                else:
                    row_proofs.record(conn, table, name, ids=sorted(compared.seen_ids - compared.unequal_ids))
        ctx.emit(self.name, name, total, total)
        out = {"source_rows": total, "target_rows": target_rows, "rejected": len(rejected),
               "rejected_rows": [{"id": k, "reason": v} for k, v in list(rejected.items())[:100]],
               "rows_compared": target_rows, "mismatched_fields": compared.mismatched,
               "rows_read_out": len(compared.seen_ids),
               "rows_proven_in_postgresql": target_rows - len(compared.seen_ids) if compare_ids is not None else 0}
        if tops:
            out["recall"] = self._recall(ctx, table, query_list, tops, target_rows)
            # recall is a property of the index, not a loss of data: reported loudly, never a difference;
            # only where the backend searches through the index (a small collection is scanned exactly)
            worst = min(out["recall"]["recall_at_10"], out["recall"][f"recall_at_{POOL_K}"])
            if worst < RECALL_WARN_BELOW and out["recall"]["backend_plan"] == "hnsw":
                out["recall"]["warning"] = (f"HNSW recall {worst} is below {RECALL_WARN_BELOW}: raise "
                                            "hnsw.ef_search (ef_per_k) or rebuild with a larger ef_construction")
        return out

    def _compare_rows(self, ctx: RunContext, table: str, name: str, total: int, ids: list[str] | None,
                      tops: list[ExactTopK], differences: list[dict]) -> "_Compared":
        """Every stored row (or those of ``ids``) against the digests of what was read of it."""
        conn = ctx.conn
        out = _Compared()
        where = sql.SQL(" WHERE id = ANY(%s)") if ids is not None else sql.SQL("")
        digest_where = sql.SQL(" AND id = ANY(%s)") if ids is not None else sql.SQL("")
        args = [ids] if ids is not None else []
        digests = {rid: (doc, meta, vec) for rid, doc, meta, vec in conn.execute(sql.SQL(
            "SELECT id, document, metadata, vector FROM {} WHERE collection = %s").format(
                schema.qualified("source_digests")) + digest_where, [name] + args)}
        with conn.transaction(), conn.cursor(name=f"verify_{table}", binary=True) as cur:
            cur.itersize = 2000
            cur.execute(sql.SQL(
                "SELECT id, CASE WHEN document IS NULL THEN NULL ELSE sha256(convert_to(document, 'UTF8')) END, "
                "metadata, sha256(vector_send(embedding)), {} FROM {}").format(
                    sql.SQL("embedding") if tops else sql.SQL("NULL::vector"), schema.qualified(table)) + where, args)
            ids_batch, vec_batch = [], []
            for rid, doc_sha, meta, vec_sha, vec in cur:
                out.seen_ids.add(rid)
                want = digests.get(rid)
                if want is None:
                    differences.append({"kind": "extra", "collection": name, "id": rid})
                    out.unequal_ids.add(rid)
                    continue
                got = (bytes(doc_sha) if doc_sha is not None else None, metadata_digest(meta),
                       bytes(vec_sha))
                for field, a, b in zip(("document", "metadata", "vector"), want, got):
                    if (bytes(a) if a is not None else None) != b:
                        out.mismatched += 1
                        out.unequal_ids.add(rid)
                        diff = {"kind": field, "collection": name, "id": rid}
                        if field == "metadata":
                            diff["target"] = meta
                        differences.append(diff)
                if tops:
                    ids_batch.append(rid)
                    vec_batch.append(vec.to_numpy())
                    if len(ids_batch) >= 5000:
                        for top in tops:
                            top.add(ids_batch, np.stack(vec_batch))
                        ids_batch, vec_batch = [], []
                if len(out.seen_ids) % 5000 == 0:
                    crash_point("verify")
                    ctx.emit(self.name, name, len(out.seen_ids), total)
            if tops and ids_batch:
                for top in tops:
                    top.add(ids_batch, np.stack(vec_batch))
        return out

    def _recall_queries(self, ctx: RunContext, table: str, facts) -> list[query_sets.QuerySet]:
        """Held-out MiniLM questions (if the stored vectors are MiniLM's) and off-distribution mixtures."""
        n = ctx.source.count(facts.name)
        q = min(ctx.options.recall_queries, n)
        if q == 0:
            return []
        seed = int(ctx.source.snapshot.fingerprint[:8], 16)
        seqs = sorted(int(s) for s in np.random.default_rng(seed).choice(n, size=q, replace=False))
        rows = ctx.conn.execute(sql.SQL("SELECT document, embedding FROM {} WHERE seq = ANY(%s) ORDER BY seq")
                                .format(schema.qualified(table)), [seqs]).fetchall()
        if not rows:
            return []
        vectors = np.stack([np.asarray(r[1].to_numpy(), dtype=np.float32) for r in rows])
        return query_sets.for_palace([r[0] for r in rows], vectors, q, seed)

    def _recall(self, ctx: RunContext, table: str, query_list: list[query_sets.QuerySet], tops: list[ExactTopK],
                rows: int) -> dict:
        """HNSW recall per query kind and k, the index forced (enable_seqscan off) at the backend's ef."""
        conn = ctx.conn
        settings = SearchSettings(ef_search=ctx.options.ef_search)
        backend_plan = "exact" if rows <= settings.exact_unfiltered_max_rows else "hnsw"
        measured, plan_text = [], ""
        for qs, top in zip(query_list, tops):
            for k in (RECALL_K, POOL_K):
                ef = settings.ef_for(k, rows=rows)  # the backend's own ef for this k and table size
                stmt = sql.SQL("SELECT embedding <=> %s AS d FROM {} ORDER BY embedding <=> %s LIMIT {}").format(
                    schema.qualified(table), sql.Literal(k))
                with conn.transaction():
                    conn.execute("SELECT set_config('hnsw.ef_search', %s, true), "
                                 "set_config('enable_seqscan', 'off', true)", [str(ef)])
                    plan_text = plan_text or "\n".join(
                        r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + stmt, [qs.vectors[0], qs.vectors[0]]))
                    returned = [[r[0] for r in conn.execute(stmt, [v, v]).fetchall()] for v in qs.vectors]
                recall = recall_at_k(returned, top.truncated(k))
                measured.append({"query_kind": qs.kind, "queries_from": qs.label, "k": k, "ef_search": ef,
                                 "plan": "hnsw" if "hnsw" in plan_text else "exact", "recall": recall,
                                 "queries": len(qs.vectors), "rows_returned": sum(map(len, returned))})
        worst = {k: min(m["recall"] for m in measured if m["k"] == k) for k in (RECALL_K, POOL_K)}
        if worst[RECALL_K] < RECALL_WARN_BELOW and backend_plan == "hnsw":
            log.warning("HNSW recall@10 %.4f below %.2f at ef_search %d", worst[RECALL_K], RECALL_WARN_BELOW,
                        settings.ef_for(RECALL_K, rows=rows))
        # recall_at_10 / _20: the worst query kind, measured through the HNSW index (uses_hnsw says so)
        return {"recall_at_10": worst[RECALL_K], f"recall_at_{POOL_K}": worst[POOL_K],
                "queries": sum(len(qs.vectors) for qs in query_list), "ef_search": settings.ef_for(RECALL_K, rows=rows),
                "query_kinds": [qs.kind for qs in query_list], "uses_hnsw": "hnsw" in plan_text,
                "rows_returned": sum(m["rows_returned"] for m in measured if m["k"] == RECALL_K),
                "backend_plan": backend_plan, "measured": measured}

    # -- KG -------------------------------------------------------------------------------
    def _kg(self, ctx: RunContext, differences: list[dict]) -> dict:
        from ..kg.stores import count_rows, read_entities, read_triples

        src_entities, src_triples = ctx.source.kg()
        proof = ctx.kg_proof
        if proof is not None and (proof.entities, proof.triples) != (len(src_entities), len(src_triples)):
            proof = None  # taken of another read of the source: not this one's
        out = {"proven": "read back the rows the sync wrote; the sync compared every other row in full"
               if proof is not None else "every row read and compared"}
        written = {"entity": set(proof.written_entities), "triple": set(proof.written_triples)} if proof else {}
        held = dict(zip(("entity", "triple"), count_rows(ctx.conn))) if proof else {}
        for kind, source_rows, read in (("entity", src_entities, read_entities), ("triple", src_triples, read_triples)):
            if proof is None:
                target_rows = read(ctx.conn)
                differences += kg_differences(kind, source_rows, target_rows)
                out[f"{kind}_target"] = len(target_rows)
            else:
                ids = sorted(written[kind])
                differences += kg_differences(kind, [r for r in source_rows if r["id"] in written[kind]],
                                              read(ctx.conn, ids=ids))
                if held[kind] != len(source_rows):
                    differences.append({"kind": f"kg_{kind}_count", "source": len(source_rows),
                                        "target": held[kind]})
                out[f"{kind}_target"] = held[kind]
                out[f"{kind}_read_back"] = len(ids)
            out[f"{kind}_source"] = len(source_rows)
        return out


@dataclass
class _Compared:
    seen_ids: set[str] = field(default_factory=set)     # rows read out of the table
    unequal_ids: set[str] = field(default_factory=set)  # of those, rows that differ from their digests
    mismatched: int = 0                                 # fields that differ


def kg_differences(kind: str, want_rows: list[dict], got_rows: list[dict], labels=("source", "target")) -> list[dict]:
    """Every missing, extra or different KG row (every column of ``want_rows``, type-strict), by id."""
    diff = diff_rows(want_rows, got_rows)
    return ([{"kind": f"kg_{kind}_missing", "id": rid} for rid in diff.missing]
            + [{"kind": f"kg_{kind}_extra", "id": rid} for rid in diff.extra]
            + [{"kind": f"kg_{kind}_column", "id": rid, "column": col, labels[0]: a, labels[1]: b}
               for rid, col, a, b in diff.columns])


def _summary(report: dict) -> dict:
    return {"collections": {k: {kk: v[kk] for kk in ("source_rows", "target_rows", "rejected")}
                            | ({"recall_at_10": v["recall"]["recall_at_10"]} if "recall" in v else {})
                            for k, v in report["collections"].items()},
            "kg": report["kg"], "differences": report["differences"]}
