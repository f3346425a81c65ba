"""all-MiniLM-L6-v2 at each text's own length: MemPalace's vectors, several times faster for bulk builds.

chromadb's ``ONNXMiniLM_L6_V2`` (MemPalace's embedder) pads every text to 256
tokens and runs 32 at a time, so a 40-token closet costs as much as a full
drawer.  Here the same ``model.onnx`` and ``tokenizer.json`` (truncation at 256,
as chromadb sets it) run on batches of texts of similar token length, padded
only to the longest in the batch.  Padding is masked out of BERT's attention
and out of the mean pooling, so the vectors are the same up to float rounding:
:meth:`LengthBatchedMiniLM.check_against` measures that against MemPalace's own
function on a sample.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import PalacePgError

log = logging.getLogger(__name__)

MAX_TOKENS = 256  # chromadb's truncation (sentence-transformers' max_seq_length for this model)
#: Tokens per ONNX run (batch × padded length): large enough to amortise a run, small enough for the cache.
BATCH_TOKENS = 8192


class EmbeddingMismatch(PalacePgError):
    """The length-batched vectors differ from MemPalace's own on the sample."""

    def __init__(self, min_cosine: float, threshold: float) -> None:
        self.min_cosine, self.threshold = min_cosine, threshold
        super().__init__(f"length-batched MiniLM vectors match MemPalace's own only to cosine {min_cosine:.6f} "
                         f"(< {threshold})", "check that model.onnx and tokenizer.json are chromadb's all-MiniLM-L6-v2")


class LengthBatchedMiniLM:
    """Embed texts as MemPalace's MiniLM does (mean pooling, L2 norm), in batches of similar token length."""

    def __init__(self, folder: Path | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from ..source import minilm

        if folder is None:
            missing = minilm.missing_files()
            if missing:
                raise minilm.MiniLMUnavailable(
                    f"all-MiniLM-L6-v2 is incomplete in {minilm.model_dir()} (missing: {', '.join(missing)})")
            folder = minilm.model_dir()
        self.folder = Path(folder)
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.no_padding()
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or min(os.cpu_count() or 1, 4)
        self.session = ort.InferenceSession(str(self.folder / "model.onnx"), sess_options=options,
                                            providers=["CPUExecutionProvider"])
        self.tokens_seen = 0

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """384-d float32 unit rows, in the order of ``texts``."""
        encodings = self.tokenizer.encode_batch(list(texts))
        lengths = np.array([len(e.ids) for e in encodings])
        out = np.empty((len(texts), 384), dtype=np.float32)
        order = np.argsort(lengths, kind="stable")
        start = 0
        while start < len(order):
            longest = lengths[order[min(len(order) - 1, start)]]
            # sorted ascending: a batch's last (longest) member fixes its padding; grow while it fits the budget
            stop = start + 1
            while stop < len(order) and (stop - start + 1) * lengths[order[stop]] <= BATCH_TOKENS:
                stop += 1
            batch = order[start:stop]
            longest = int(lengths[batch[-1]])
            ids = np.zeros((len(batch), longest), dtype=np.int64)
            mask = np.zeros_like(ids)
            for row, index in enumerate(batch):
                n = lengths[index]
                ids[row, :n] = encodings[index].ids
                mask[row, :n] = 1
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": np.zeros_like(ids)})[0]
            pooled = (hidden * mask[:, :, None]).sum(axis=1) / np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1)
            norms[norms == 0] = 1e-12
            out[batch] = (pooled / norms[:, None]).astype(np.float32)
            self.tokens_seen += int(lengths[batch].sum())
            start = stop
        return out

    def check_against(self, texts: Sequence[str], function=None, threshold: float = 0.9999) -> float:
        """The least cosine between these vectors and MemPalace's own function's on ``texts``; raises below ``threshold``."""
        from ..source import minilm

        reference = minilm.embed(texts, function)
        mine = self(texts)
        cosines = (reference * mine).sum(axis=1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(mine, axis=1))
        least = float(cosines.min())
        log.info("length-batched MiniLM against MemPalace's function on %d texts: min cosine %.7f", len(texts), least)
        if least < threshold:
            raise EmbeddingMismatch(least, threshold)
        return least
