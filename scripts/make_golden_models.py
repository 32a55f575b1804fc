#!/usr/bin/env python3
"""Writes tiny random-weight models and Hugging Face transformers' logits for them, the golden
files of tests/test_model_hf.cpp:

  tests/data/golden/<name>/config.json, model.safetensors   (save_pretrained, float32)
  tests/data/golden/llama.gguf                              (the llama model as llama.cpp's
                                                             converter writes it: q/k permuted)
  tests/data/golden/<name>/ids.i32, logits.f32              (ids [2, 11], logits [2, 11, vocab])

Needs torch, transformers, gguf, numpy (PyPI; for making goldens only, never at run time).
Run from anywhere: python3 scripts/make_golden_models.py"""
import json
import os

import numpy as np
import torch
import transformers as tf

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "golden")
B, T, VOCAB = 2, 11, 256

COMMON = dict(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
              max_position_embeddings=128)
MODELS = {
    "llama": (tf.LlamaConfig, tf.LlamaForCausalLM,
              dict(COMMON, num_key_value_heads=2, intermediate_size=96,
                   rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                   rms_norm_eps=1e-5, tie_word_embeddings=False)),
    "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM,
              dict(COMMON, num_key_value_heads=2, intermediate_size=96,
                   rope_parameters={"rope_type": "default", "rope_theta": 50000.0},
                   rms_norm_eps=1e-6, tie_word_embeddings=True)),
    "opt": (tf.OPTConfig, tf.OPTForCausalLM,
            dict(COMMON, ffn_dim=128, do_layer_norm_before=True, word_embed_proj_dim=64)),
    "opt_proj": (tf.OPTConfig, tf.OPTForCausalLM,
                 dict(COMMON, ffn_dim=128, do_layer_norm_before=True, word_embed_proj_dim=32)),
    "opt_postln": (tf.OPTConfig, tf.OPTForCausalLM,
                   dict(COMMON, ffn_dim=128, do_layer_norm_before=False, word_embed_proj_dim=64)),
}


def randomize(model, seed):
    """Every parameter random (norm weights and biases too), scaled so logits are O(1..10)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                base = 1.0 if "norm" in name and name.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / np.sqrt(p.shape[-1]))


def write_gguf(model, cfg, path):
    import gguf
    w = gguf.GGUFWriter(path, "llama")
    n_head, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // n_head)

    def permute(x, heads):  # llama.cpp convert_hf_to_gguf.py LlamaModel.permute
        return (x.reshape(heads, 2, x.shape[0] // heads // 2, *x.shape[1:])
                .swapaxes(1, 2).reshape(x.shape))

    sd = {k: v.numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        names = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj",
                 "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
                 "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
                 "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
        for g_name, hf in names.items():
            x = sd[p + hf + ".weight"]
            if g_name == "attn_q":
                x = permute(x, n_head)
            elif g_name == "attn_k":
                x = permute(x, n_kv)
            w.add_tensor(f"blk.{i}.{g_name}.weight", np.ascontiguousarray(x))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    torch.manual_seed(0)
    ids = torch.randint(0, VOCAB, (B, T), generator=torch.Generator().manual_seed(1234))
    for seed, (name, (cfg_cls, model_cls, kw)) in enumerate(MODELS.items()):
        cfg = cfg_cls(**kw)
        cfg._attn_implementation = "eager"
        model = model_cls(cfg).float().eval()
        randomize(model, 100 + seed)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        with torch.no_grad():
            logits = model(input_ids=ids).logits.numpy().astype("<f4")
        ids.numpy().astype("<i4").tofile(os.path.join(d, "ids.i32"))
        logits.tofile(os.path.join(d, "logits.f32"))
        with open(os.path.join(d, "golden.json"), "w") as f:
            json.dump({"batch": B, "ctx": T, "vocab": VOCAB, "transformers": tf.__version__,
                       "torch": torch.__version__, "max_abs_logit": float(np.abs(logits).max())},
                      f, indent=1)
        if os.path.exists(os.path.join(d, "generation_config.json")):
            os.remove(os.path.join(d, "generation_config.json"))
        if name == "llama":
            write_gguf(model, cfg, os.path.join(OUT, "llama.gguf"))
        print(f"{name}: max |logit| {np.abs(logits).max():.3f}")


if __name__ == "__main__":
    main()
