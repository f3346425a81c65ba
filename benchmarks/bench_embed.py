"""Embedding rate for real-text palaces: length-batched ONNX (palace_pg.realtext) against MemPalace's own function.

    HOME=<folder with the MiniLM in ~/.cache/chroma> python benchmarks/bench_embed.py [--chunks 256] [--threads 2]

Chunks are real drawers: the first files of each corpus wing, chunked by
MemPalace's ``chunk_text``.  Prints chunks/s for both embedders on the same
chunks, their mean token count, the least cosine between the two sets of
vectors, and the load average before and after (the machine is shared: the
rate is only meaningful beside the load it was measured at).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from palace_pg.realtext import corpus
from palace_pg.realtext.embedder import LengthBatchedMiniLM
from palace_pg.source import minilm


def sample_chunks(n: int, seed: int = 0) -> list[str]:
    from mempalace.miner import chunk_text

    per_wing = -(-n // len(corpus.SOURCES))
    chunks: list[str] = []
    for source in corpus.SOURCES:
        taken: list[str] = []
        for item, text in itertools.islice(corpus.shuffled(source, seed), 200):
            taken += [c["content"] for c in chunk_text(text, str(item.path))]
            if len(taken) >= per_wing:
                break
        chunks += taken[:per_wing]
    return chunks[:n]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="ONNX intra-op threads for the length-batched run")
    ap.add_argument("--out", default=None, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    chunks = sample_chunks(args.chunks)
    load_before = os.getloadavg()
    batched = LengthBatchedMiniLM(threads=args.threads)
    batched(chunks[:8])  # warm-up: session arenas
    t = time.perf_counter()
    mine = batched(chunks)
    batched_s = time.perf_counter() - t
    function = minilm.embedding_function()
    minilm.embed(chunks[:8], function)
    t = time.perf_counter()
    theirs = minilm.embed(chunks, function)
    theirs_s = time.perf_counter() - t
    tokens = [len(e.ids) for e in batched.tokenizer.encode_batch(chunks)]
    result = {
        "chunks": len(chunks), "mean_tokens": round(float(np.mean(tokens)), 1),
        "length_batched_chunks_per_s": round(len(chunks) / batched_s, 2),
        "mempalace_function_chunks_per_s": round(len(chunks) / theirs_s, 2),
        "speedup": round(theirs_s / batched_s, 2),
        "min_cosine": round(float(np.min((mine * theirs).sum(axis=1))), 7),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
