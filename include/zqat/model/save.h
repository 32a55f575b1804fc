// Saving a (quantized or full-precision) model as a GGUF file of the llama architecture family,
// readable by Model::load. The layout is in docs/FORMAT.md; in short:
//   metadata   every key of the source GGUF (tokenizer, architecture, general.*), except zqat.*
//              and general.alignment (the output is 32-aligned), general.file_type set to 0 (F32),
//              plus zqat.quant.qspec (string), zqat.quant.method (string), zqat.quant.version
//              (u32 1) and, when any weight is packed, zqat.quant.weight_bits (u32).
//   tensors    GGUF names (token_embd.weight, blk.N.attn_q.weight, ...); full precision as F32;
//              a packed linear W as the triplet W.qcodes (I8 [rows, row_bytes], the raw packed
//              bytes), W.qscales and W.qzeros (F16 [rows, cols / group], raw fp16 bits).
//              Optional: blk.N.{attn_q,attn_k,attn_v,attn_output,ffn_gate,ffn_up,ffn_down}.bias,
//              blk.N.attn_shift, blk.N.ffn_shift (F32 [n_embd]).
//   llama (not qwen2) q/k rows, their scales/zeros and biases are stored in llama.cpp's permuted
//   RoPE order, as the source file had them, so load(save(m)) is bit-exact.
#pragma once

#include <cstdint>
#include <string>

#include "zqat/model/model.h"

namespace zqat {

// Writes m to out_path through a temporary file in the same folder renamed into place. Throws
// Error("[model] ...") when m did not come from a GGUF file (its tokenizer and metadata are
// copied from there), is not of the llama family, or holds tensors of unexpected shapes.
void save_gguf(const Model& m, const std::string& out_path);

// llama.cpp's converter stores Llama q/k rows permuted for interleaved-pair RoPE:
//   gguf row h*D + 2i + s  <->  HF row h*D + s*D/2 + i     (s in {0,1}, i < D/2, D = rows/n_head)
// Moves whole rows of `row_bytes` bytes from src to dst (distinct buffers of rows * row_bytes):
// to_gguf = true applies the permutation (HF -> GGUF), false undoes it (GGUF -> HF).
void rope_permute_rows(const void* src, void* dst, int64_t rows, int64_t row_bytes, int64_t n_head,
                       bool to_gguf);

}  // namespace zqat
