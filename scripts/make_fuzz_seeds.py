#!/usr/bin/env python3
"""Writes the tiny seed inputs of the libFuzzer targets into tests/data/io/corpus_<target>/:
a GGUF with one tensor of each dequantizable type and every metadata type, a safetensors file
with F32/F16/BF16 tensors, and a small byte-level BPE tokenizer.json.
Needs the PyPI packages gguf and numpy (for making seeds only). Run from the repository root."""
import json
import os
import struct

import gguf
import numpy as np

root = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "io")


def out(target, name):
    d = os.path.join(root, f"corpus_{target}")
    os.makedirs(d, exist_ok=True)
    return os.path.join(d, name)


# GGUF: metadata of every type, tensors F32, F16, Q8_0, Q4_0, Q4_1.
w = gguf.GGUFWriter(out("fuzz_gguf", "tiny.gguf"), "llama")
w.add_uint32("test.u32", 7)
w.add_int32("test.i32", -7)
w.add_float32("test.f32", 0.5)
w.add_bool("test.bool", True)
w.add_string("test.str", "héllo")
w.add_array("test.arr_str", ["a", "bc"])
w.add_array("test.arr_int", [1, 2, 3])
w.add_uint64("test.u64", 1 << 40)
rng = np.random.default_rng(0)
w.add_tensor("f32", rng.standard_normal((2, 32)).astype(np.float32))
w.add_tensor("f16", rng.standard_normal((1, 32)).astype(np.float16))
expected = {}
for qt in (gguf.GGMLQuantizationType.Q8_0, gguf.GGMLQuantizationType.Q4_0,
           gguf.GGMLQuantizationType.Q4_1):
    data = gguf.quants.quantize(rng.standard_normal((2, 32)).astype(np.float32), qt)
    w.add_tensor(qt.name.lower(), data, raw_dtype=qt)
    expected[qt.name.lower()] = gguf.quants.dequantize(data, qt)
# K-quants: gguf-py can only dequantize them, so the blocks are random bytes with sane fp16 scales.
for qt, scale_offsets in ((gguf.GGMLQuantizationType.Q4_K, (0, 2)),
                          (gguf.GGMLQuantizationType.Q6_K, (208,))):
    block = gguf.GGML_QUANT_SIZES[qt][1]
    data = rng.integers(0, 256, size=(1, block), dtype=np.uint8)
    for off in scale_offsets:
        data[0, off:off + 2] = np.frombuffer(np.float16(rng.uniform(0.01, 0.1)).tobytes(), np.uint8)
    w.add_tensor(qt.name.lower(), data, raw_dtype=qt)
    expected[qt.name.lower()] = gguf.quants.dequantize(data, qt)
# What gguf-py's reference dequantization gives, for tests/test_io_corrupt.cpp.
with open(os.path.join(root, "dequant_expected.json"), "w") as f:
    json.dump({k: [float(x) for x in v.reshape(-1)] for k, v in expected.items()}, f)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()

# safetensors: three dtypes and metadata.
tensors = {"a": (np.arange(6, dtype=np.float32).reshape(2, 3), "F32"),
           "b": (np.arange(4, dtype=np.float16), "F16"),
           "c": ((np.arange(4, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16), "BF16")}
header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
for name, (arr, dt) in tensors.items():
    b = arr.tobytes()
    header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
h = json.dumps(header).encode()
with open(out("fuzz_safetensors", "tiny.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

# tokenizer.json: byte-level BPE over a few merges, GPT-2 and SmolLM-style pre-tokenizers.
byte_chars = [chr(c) for c in range(0x21, 0x7F)]
vocab = {c: i for i, c in enumerate(byte_chars + ["Ġ", "Ġt", "he", "Ġthe"])}
for pre_name, pre in (("gpt2", {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}),
                      ("digits", {"type": "Sequence", "pretokenizers": [
                          {"type": "Digits", "individual_digits": True},
                          {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]})):
    tok = {"version": "1.0",
           "added_tokens": [{"id": len(vocab), "content": "<|endoftext|>", "special": True}],
           "pre_tokenizer": pre,
           "model": {"type": "BPE", "vocab": vocab, "merges": ["Ġ t", "h e", "Ġt he"]}}
    with open(out("fuzz_tokenizer_json", f"{pre_name}.json"), "w") as f:
        json.dump(tok, f)
print("wrote seeds under", os.path.normpath(root))
