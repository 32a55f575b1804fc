#!/usr/bin/env python3
"""Tiny random-weight models and Hugging Face transformers' float32 logits for them: the golden
files of tests/test_model_golden.cpp.

For each model <name> it writes, under tests/data/synthetic/<name>/:
  config.json, model.safetensors   save_pretrained(safe_serialization=True), float32
  ids.i32                          input ids [B=2, T=11], int32 little-endian, row-major
  logits.f32                       HF logits [2, 11, 256], float32 little-endian, row-major
  golden.json                      shapes, dtypes, versions, max |logit|
and GGUF F32 files written with the `gguf` package the way llama.cpp's convert_hf_to_gguf.py does:
  llama.gguf     the llama model, q/k rows permuted (LlamaModel.permute), untied output.weight
  qwen2.gguf     the qwen2 model, arch "qwen2": q/k/v biases, no permutation, no output.weight (tied)
  llama_hd.gguf  the llama_hd model: attention.key_length/value_length != n_embd / n_head, tied
                 (no output.weight), q/k permuted
A GGUF uses the golden files of the folder of the same name. No tokenizer anywhere: the loaders
leave Model::tokenizer empty then.

Models (all 256-token vocabularies, max_position_embeddings 128, eager attention):
  llama       LlamaForCausalLM, 2 layers, hidden 64, 4 heads, 2 kv heads, ff 96, untied
  qwen2       Qwen2ForCausalLM, same sizes, q/k/v biases, tied, rope_theta 1e6, eps 1e-6
  opt         OPTForCausalLM, 2 layers, hidden 64, 4 heads, ffn 128, pre-LN
  opt_proj    as opt, word_embed_proj_dim 32 (project_in / project_out)
  opt_postln  as opt, do_layer_norm_before False (OPT-350m style: post-LN, no final norm)
  llama_hd    1 layer, hidden 48, 4 heads of head_dim 16 (q width 64 != 48), 1 kv head (MQA),
              rope_theta 5e5, eps 1e-6, tied: shapes a hidden/heads assumption would get wrong
  opt_nobias  as opt, enable_bias False and layer_norm_elementwise_affine False (no biases, no
              LayerNorm weights)
Every parameter is random, norm weights (1 + N(0, 0.2^2)) and biases too; linears are N(0, 1/in),
so hidden states stay O(1) and logits come out O(1..10) (golden.json records max |logit|).

Needs torch, transformers, gguf, numpy (PyPI); CPU only; deterministic (fixed seeds).
Run from anywhere: python3 scripts/make_synthetic_models.py"""
import json
import os

import gguf
import numpy as np
import torch
import transformers as tf

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "synthetic")
B, T, VOCAB = 2, 11, 256

BASE = dict(vocab_size=VOCAB, max_position_embeddings=128)
LLAMA = dict(BASE, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, intermediate_size=96, rms_norm_eps=1e-5)
OPT = dict(BASE, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, ffn_dim=128,
           do_layer_norm_before=True, word_embed_proj_dim=64)


def rope(theta):
    # transformers >= 5 reads rope_parameters; 4.x reads rope_theta. Give both.
    return dict(rope_theta=theta, rope_parameters={"rope_type": "default", "rope_theta": theta})


MODELS = {
    "llama": (tf.LlamaConfig, tf.LlamaForCausalLM,
              dict(LLAMA, tie_word_embeddings=False, **rope(10000.0))),
    "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM,
              dict(LLAMA, rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
                   **rope(1e6))),
    "opt": (tf.OPTConfig, tf.OPTForCausalLM, dict(OPT)),
    "opt_proj": (tf.OPTConfig, tf.OPTForCausalLM, dict(OPT, word_embed_proj_dim=32)),
    "opt_postln": (tf.OPTConfig, tf.OPTForCausalLM, dict(OPT, do_layer_norm_before=False)),
    "llama_hd": (tf.LlamaConfig, tf.LlamaForCausalLM,
                 dict(BASE, hidden_size=48, num_hidden_layers=1, num_attention_heads=4,
                      num_key_value_heads=1, head_dim=16, intermediate_size=80, rms_norm_eps=1e-6,
                      tie_word_embeddings=True, **rope(5e5))),
    # Appended last so the seeds (7000 + index) of the models above stay the same.
    "opt_nobias": (tf.OPTConfig, tf.OPTForCausalLM,
                   dict(OPT, enable_bias=False, layer_norm_elementwise_affine=False)),
}


def randomize(model, seed):
    """Every parameter random, including norms and biases, scaled so logits are O(1..10)."""
    g = torch.Generator().manual_seed(seed)
    # A tied table is also the LM head: smaller entries keep those logits O(1..10) too.
    embd = 0.25 if model.config.tie_word_embeddings else 1.0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                is_norm_w = "norm" in name and name.endswith("weight")
                p.copy_((1.0 if is_norm_w else 0.0) + 0.2 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in name or "embed_positions" in name:
                p.copy_(torch.randn(p.shape, generator=g) * (0.5 if "positions" in name else embd))
            else:
                gain = 2.0 if name.startswith("lm_head") else 1.0
                p.copy_(torch.randn(p.shape, generator=g) * gain / np.sqrt(p.shape[-1]))


def permute(w, n_head):
    # convert_hf_to_gguf.py LlamaModel.permute: HF rotate_half rows -> interleaved-pair rows.
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


GGUF_NAMES = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj",
              "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
              "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
              "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def write_gguf(model, cfg, arch, path):
    """F32 GGUF of a Llama/Qwen2 model with the keys and tensor names llama.cpp's converter uses."""
    w = gguf.GGUFWriter(path, arch)
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
    w.add_name("synthetic-" + os.path.basename(path).removesuffix(".gguf"))
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    if head_dim != cfg.hidden_size // n_head:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)

    sd = {k: v.numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        w.add_tensor("output.weight", sd["lm_head.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        for g_name, hf in GGUF_NAMES.items():
            x = sd[p + hf + ".weight"]
            if arch == "llama" and g_name == "attn_q":
                x = permute(x, n_head)
            elif arch == "llama" and g_name == "attn_k":
                x = permute(x, n_kv)
            w.add_tensor(f"blk.{i}.{g_name}.weight", np.ascontiguousarray(x))
            if g_name in ("attn_q", "attn_k", "attn_v") and p + hf + ".bias" in sd:
                w.add_tensor(f"blk.{i}.{g_name}.bias", sd[p + hf + ".bias"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    torch.manual_seed(20240601)
    ids = torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(4321))
    ids[0, 0], ids[1, T - 1] = 0, VOCAB - 1  # the first and last rows of the embedding table
    os.makedirs(OUT, exist_ok=True)
    for seed, (name, (cfg_cls, model_cls, kw)) in enumerate(MODELS.items()):
        cfg = cfg_cls(**kw, attn_implementation="eager")
        model = model_cls(cfg).float().eval()
        randomize(model, 7000 + seed)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        gen_cfg = os.path.join(d, "generation_config.json")
        if os.path.exists(gen_cfg):  # not read by zqat; keep the test data minimal
            os.remove(gen_cfg)
        with torch.no_grad():
            logits = model(input_ids=ids).logits.numpy().astype("<f4")
        assert logits.shape == (B, T, VOCAB), logits.shape
        ids.numpy().astype("<i4").tofile(os.path.join(d, "ids.i32"))
        logits.tofile(os.path.join(d, "logits.f32"))
        meta = {"ids": {"file": "ids.i32", "dtype": "int32", "shape": [B, T]},
                "logits": {"file": "logits.f32", "dtype": "float32", "shape": [B, T, VOCAB]},
                "model": model_cls.__name__, "transformers": tf.__version__,
                "torch": torch.__version__, "max_abs_logit": float(np.abs(logits).max())}
        with open(os.path.join(d, "golden.json"), "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        if name in ("llama", "llama_hd"):
            write_gguf(model, cfg, "llama", os.path.join(OUT, name + ".gguf"))
        elif name == "qwen2":
            write_gguf(model, cfg, "qwen2", os.path.join(OUT, name + ".gguf"))
        print(f"{name:11s} max |logit| {np.abs(logits).max():7.3f}  "
              f"std {logits.std():6.3f}")


if __name__ == "__main__":
    main()
