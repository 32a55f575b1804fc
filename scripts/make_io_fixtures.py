#!/usr/bin/env python3
"""Writes tests/data/io/smollm2_golden.json: what the Python `gguf` package (gguf-py, the
reference reader maintained with llama.cpp) reads from the real SmolLM2-135M-Instruct Q4_1 GGUF,
so tests/test_io_gguf.cpp can check zeroqat's reader and dequantizers against it.

For a few tensors (the Q8_0 token embedding, Q4_1 projections, an F32 norm) it records dtype,
shape in PyTorch order (outermost first), absolute data offset and byte size, a handful of
dequantized values at spread-out flat indices, and float64 sum / sum of |x| over the whole
dequantized tensor (so every block is checked, not just the sampled ones). It also records some
metadata (scalars, string arrays, int arrays) with their types.

Usage (from the repository root; needs the PyPI packages gguf and numpy, only to make the file):
    python3 scripts/make_io_fixtures.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
The default path is $ZQAT_MODEL."""
import json
import os
import sys

import gguf
import numpy as np

model = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ZQAT_MODEL")
if not model:
    sys.exit("usage: make_io_fixtures.py MODEL.gguf (or set ZQAT_MODEL)")
out = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "io", "smollm2_golden.json")

r = gguf.GGUFReader(model)
golden = {"file_size": os.path.getsize(model), "version": int(r.fields["GGUF.version"].contents()),
          "n_tensors": len(r.tensors), "n_kv": int(r.fields["GGUF.kv_count"].contents()),
          "metadata": {}, "tensors": {}}

for key in ("general.architecture", "llama.block_count", "llama.context_length",
            "llama.embedding_length", "llama.attention.head_count_kv", "llama.rope.freq_base",
            "llama.attention.layer_norm_rms_epsilon", "tokenizer.ggml.add_bos_token",
            "general.languages", "general.quantization_version"):
    f = r.fields[key]
    golden["metadata"][key] = {"type": [gguf.GGUFValueType(t).name for t in f.types],
                               "value": f.contents()}
# Large arrays: their length and a few elements (first, middle, last).
for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges", "tokenizer.ggml.token_type"):
    f = r.fields[key]
    v = f.contents()
    n = len(v)
    golden["metadata"][key] = {"type": [gguf.GGUFValueType(t).name for t in f.types],
                               "length": n,
                               "samples": [[i, v[i]] for i in (0, 1, 2, n // 2, n - 1)]}

for name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.29.ffn_down.weight",
             "blk.0.attn_norm.weight", "output_norm.weight"):
    t = next(t for t in r.tensors if t.name == name)
    x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(-1)
    n = x.size
    # First and last blocks, a block straddling the middle, and a prime stride through the rest.
    idx = sorted({0, 1, 15, 16, 17, 31, 32, 33, n // 2 - 1, n // 2, n - 33, n - 17, n - 1,
                  *range(12345 % n, n, max(1, n // 7))})
    golden["tensors"][name] = {
        "dtype": t.tensor_type.name,
        "shape": [int(d) for d in reversed(t.shape)],
        "offset": int(t.data_offset),
        "nbytes": int(t.n_bytes),
        "sum": float(x.astype(np.float64).sum()),
        "abs_sum": float(np.abs(x.astype(np.float64)).sum()),
        "samples": [[int(i), float(x[i])] for i in idx],
    }

with open(out, "w") as fh:
    json.dump(golden, fh, indent=1, ensure_ascii=False)
    fh.write("\n")
print("wrote", os.path.normpath(out))
