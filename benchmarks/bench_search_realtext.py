"""Search benchmark on a real-text palace: real MiniLM vectors of local text, real held-out questions.

    HOME=<folder with ~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx> \
    python benchmarks/bench_search_realtext.py --palace /tmp/rt/palace [--queries 40] [--rounds 3] \
        [--out benchmarks/bench_search_realtext.json]

The palace comes from ``palace-pg make-palace OUT --text local`` (palace_pg.realtext).
Its drawers (ids, documents, metadata, stored vectors) are loaded into a fresh
database as bench_search.py loads its synthetic set, and into a fresh Chroma
collection, and queried through ``PostgresBackend`` and chromadb with the same
cases, measured by bench_search's own ``measure`` (recall@k against exact
cosine top-k, latency percentiles, CPU per query).  Query kinds, on every row:

* ``text``: held-out questions (palace_pg.realtext.questions), embedded with
  MemPalace's own MiniLM function, as a user's search is: the figure issue 14
  asks for;
* ``mixture``: off-distribution mixtures of stored vectors plus noise
  (palace_pg.query_sets.mixtures), the synthetic hard case, for comparison.

Wing filters use the palace's own wings (largest, smallest).  The synthetic
160K figures stay in bench_search_160k.json; this script prints its palace's
size beside each table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_search
from bench_search import POOL_K, Case

from palace_pg import query_sets
from palace_pg.testing import backend as pg_testing

log = logging.getLogger("bench_search_realtext")
TEXT, MIXTURE = query_sets.TEXT, query_sets.MIXTURE


def read_palace(palace: Path, page: int = 5000) -> pg_testing.SyntheticSet:
    """The drawers of a Chroma palace, paged (one ``get`` of everything fails above ~32K rows)."""
    import chromadb

    col = chromadb.PersistentClient(path=str(palace)).get_collection("mempalace_drawers")
    ids, docs, metas, vecs = [], [], [], []
    total = col.count()
    for offset in range(0, total, page):
        got = col.get(include=["documents", "metadatas", "embeddings"], limit=page, offset=offset)
        ids += got["ids"]
        docs += got["documents"]
        metas += got["metadatas"]
        vecs.append(np.asarray(got["embeddings"], dtype=np.float32))
    return pg_testing.SyntheticSet(ids, docs, metas, np.concatenate(vecs), queries=np.zeros((0, 384), np.float32))


def query_vectors(data: pg_testing.SyntheticSet, n: int, seed: int = 11) -> dict[str, np.ndarray]:
    from palace_pg.realtext.questions import QUESTIONS
    from palace_pg.source import minilm

    if not minilm.model_available():
        raise SystemExit(f"MiniLM is not in {minilm.model_dir()}: set HOME to a folder that has it")
    text = minilm.embed(list(QUESTIONS[:n]))
    return {TEXT: text, MIXTURE: query_sets.mixtures(data.embeddings, n, np.random.default_rng(seed)).vectors}


def cases(wings: dict[str, int], k: int) -> list[Case]:
    exact_off = (("exact_unfiltered_max_rows", 0),)
    out = [Case("unfiltered text", k=k, kind=TEXT), Case(f"unfiltered text k={POOL_K}", k=POOL_K, kind=TEXT),
           Case("unfiltered hnsw text", k=k, kind=TEXT, options=exact_off),
           Case(f"unfiltered hnsw text k={POOL_K}", k=POOL_K, kind=TEXT, options=exact_off),
           Case("unfiltered mixture", k=k), Case("unfiltered hnsw mixture", k=k, options=exact_off)]
    ordered = sorted(wings, key=wings.get, reverse=True)
    for wing in dict.fromkeys([ordered[0], ordered[-1]]):
        out.append(Case(f"wing {wing} ({wings[wing] / sum(wings.values()):.0%}) text", wing=wing, k=k, kind=TEXT))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--palace", required=True, type=Path, help="a palace from make-palace --text local")
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-chroma", action="store_true")
    ap.add_argument("--out", default="bench_search_realtext.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from palace_pg.server import EmbeddedServer

    server = EmbeddedServer.from_env()
    db = f"bench_realtext_{os.getpid()}"
    dsn = server.create_database(db)
    scratch = Path(tempfile.mkdtemp(prefix="bench_rt_palace_"))
    try:
        data = read_palace(args.palace)
        wings: dict[str, int] = {}
        for m in data.metadatas:
            wings[m["wing"]] = wings.get(m["wing"], 0) + 1
        queries = query_vectors(data, args.queries)
        case_list = cases(wings, args.k)
        truths = {c.label: bench_search.ground_truth(data, queries[c.kind], c.k, c.wing) for c in case_list}
        result = {"palace": str(args.palace), "rows": len(data.ids), "wings": wings, "k": args.k,
                  "queries": {kind: len(q) for kind, q in queries.items()},
                  "query_kinds": {TEXT: "held-out questions, MemPalace's MiniLM", MIXTURE: "mixtures + noise"},
                  "mean_top1_cosine": {kind: round(float(1 - bench_search.ground_truth(data, q, 1, None).kth.mean()), 4)
                                       for kind, q in queries.items()},
                  "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                              "load_average_start": [round(x, 2) for x in os.getloadavg()]}}
        facts = args.palace.parent / "facts.json"
        if facts.is_file():
            result["palace_facts"] = {k: v for k, v in json.loads(facts.read_text()).items()
                                      if k in ("embedding", "collections", "files", "wings", "timings", "stopped_by")}
        result["postgres_load"] = bench_search.load_postgres(dsn, data, scratch, compact=True)
        result["postgres"] = bench_search.run_postgres(scratch, queries, truths, case_list, rounds=args.rounds)
        if not args.skip_chroma:
            result["chroma"] = bench_search.run_chroma(data, queries, truths, case_list)
        result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        server.drop_database(db)

    print(f"\nreal-text palace: {len(data.ids)} drawers ({', '.join(f'{w} {n}' for w, n in wings.items())}), "
          f"k={args.k}, load {result['machine']['load_average_start'][0]}")
    bench_search.print_table(result, width=34)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
