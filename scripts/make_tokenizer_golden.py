#!/usr/bin/env python3
"""Golden token ids for tests/test_io_tokenizer.cpp, from reference tokenizers.

SmolLM2 (byte-level BPE, GGUF pre-tokenizer "smollm"): SmolLM2's own tokenizer.json is not
available offline, so the reference is Hugging Face `tokenizers` built from the GGUF's own vocab
and merges with SmolLM2's published pre-tokenizer, Sequence[Digits(individual_digits=True),
ByteLevel(add_prefix_space=False, use_regex=True)], its control tokens as added special tokens.
(llama.cpp's llama-tokenize on the same GGUF gives identical ids on all of wiki.test.raw: a
second, independent check made while writing this script.)

SentencePiece BPE (GGUF tokenizer.ggml.model "llama"): no real Llama-vocabulary GGUF is here, so
a small BPE model is trained with `sentencepiece` on WikiText-2 *valid* (never the test text),
written as a vocab-only GGUF the way llama.cpp's converter does, and sentencepiece's own encode is
the reference.

Writes tests/data/tokenizer/: wiki_test.smollm2.i32 (ids of all of wiki.test.raw, int32 LE),
adversarial.smollm2.json, spm.gguf, spm.golden.json. Needs gguf, tokenizers, sentencepiece
(PyPI, for goldens only). Usage: python3 scripts/make_tokenizer_golden.py MODEL.gguf"""
import json
import os
import sys
import tempfile

import gguf
import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")
SHARED = os.path.join(ROOT, "..", "shared", "data")

ADVERSARIAL = [
    "", " ", "  ", "\t", "\n", "\n\n\n", " \n ", "\r\n", "a\r\nb", "trailing   ", "   leading",
    "Hello world", "Hello  world", "Hello\tworld", "Hello\u00a0world", "wide\u3000space",
    "It's I'M we'LL they're you've he'd she's 'tis ''quoted'' rock'n'roll",
    "don't DON'T Don't", "'s's's", "'", "''", "' s",
    "1234567890", "3.14159", "1,000,000", " 42", "x2y3z4", "\u0663\u0664\u0665 Arabic digits",
    "superscript x\u00b2 and \u00bd", "\u2160\u2161 roman numerals", "Ⅻ", "①②③",
    "日本語のテキスト", "中文文本，标点。", "한국어 텍스트", "Ελληνικά κείμενο", "Русский текст",
    "العربية نص", "हिन्दी पाठ", "ภาษาไทย", "עברית", "Tiếng Việt có dấu",
    "e\u0301 combining acute", "Z\u0351\u0352\u0353algo", "ﬁ ligature", "\u200b zero width",
    "emoji 😀😃 👍🏽 👨‍👩‍👧‍👦 🇫🇷🇯🇵 ❤️", "🤖", "🏳️‍🌈",
    "ctrl \x01\x02\x1b[31m red\x7f", "bell\x07", "nul?", "\u2028line sep\u2029para",
    "<|im_start|>user\nhi<|im_end|>\n", "<|endoftext|>", "a<|im_start|>b", "<|im_start",
    "@-@ , . ; : ! ? ( ) [ ] { } \" ' ` ~ # $ % ^ & * _ + = | \\ / < >",
    "https://example.com/path?q=1&r=2#frag", "user@example.com", "snake_case camelCase",
    "def f(x):\n    return x ** 2  # comment\n", "    indented\n\tTabbed",
    "x" * 5000, "ab " * 300, "9" * 100,
]
# Invalid UTF-8 cannot be a Python/Rust string: the reference encodes
# bytes.decode("utf-8", errors="replace"), which is what zeroqat defines for such input.
INVALID = [b"\xff", b"a\xc3", b"\xc3\x28 x", b"\xed\xa0\x80 surrogate", b"\xf4\x90\x80\x80",
           b"ok \xe2\x82 cut", b"\xc0\xaf overlong", b"\x00nul", b"\xe0\x80\x80", b"\x80\x80 lone",
           b"mixed \xf0\x9f\x98 \xf0\x9f\x98\x80"]


def smollm2(model_path):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    r = gguf.GGUFReader(model_path)

    def field(name):
        return r.fields[name]

    def strings(name):
        f = field(name)
        return [bytes(f.parts[i]).decode("utf-8") for i in f.data]

    tokens = strings("tokenizer.ggml.tokens")
    merges = strings("tokenizer.ggml.merges")
    f = field("tokenizer.ggml.token_type")
    types = [int(f.parts[i][0]) for i in f.data]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges],
                               fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])

    text = open(os.path.join(SHARED, "wikitext-2-raw", "wiki.test.raw"), encoding="utf-8").read()
    ids = tok.encode(text, add_special_tokens=False).ids
    np.asarray(ids, dtype="<i4").tofile(os.path.join(OUT, "wiki_test.smollm2.i32"))
    adv = [{"text": s, "ids": tok.encode(s, add_special_tokens=False).ids} for s in ADVERSARIAL]
    for b in INVALID:
        text = b.decode("utf-8", errors="replace")
        adv.append({"bytes_hex": b.hex(), "text": text,
                    "ids": tok.encode(text, add_special_tokens=False).ids})
    with open(os.path.join(OUT, "adversarial.smollm2.json"), "w", encoding="utf-8") as fo:
        json.dump(adv, fo, ensure_ascii=True, indent=0)
    print(f"smollm2: wiki.test.raw -> {len(ids)} ids; {len(adv)} adversarial strings")


def spm():
    import sentencepiece as spm_lib

    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "spm")
        spm_lib.SentencePieceTrainer.train(
            input=os.path.join(SHARED, "wikitext-2", "valid.txt"), model_prefix=prefix,
            model_type="bpe", vocab_size=1000, byte_fallback=True, character_coverage=0.9995,
            normalization_rule_name="identity", add_dummy_prefix=True,
            remove_extra_whitespaces=False, split_digits=False, bos_id=1, eos_id=2, unk_id=0,
            minloglevel=2, num_threads=1)
        sp = spm_lib.SentencePieceProcessor(model_file=prefix + ".model")
    w = gguf.GGUFWriter(os.path.join(OUT, "spm.gguf"), "llama")
    tokens, scores, types = [], [], []
    for i in range(sp.get_piece_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        # llama.cpp convert: 1 normal, 2 unknown, 3 control, 6 byte
        types.append(2 if sp.is_unknown(i) else 3 if sp.is_control(i) else
                     6 if sp.is_byte(i) else 1)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    wiki = open(os.path.join(SHARED, "wikitext-2-raw", "wiki.test.raw"),
                encoding="utf-8").read()[:50000]
    texts = [s for s in ADVERSARIAL if "<|" not in s] + [wiki]
    gold = [{"text": s, "ids": sp.encode(s)} for s in texts]
    with open(os.path.join(OUT, "spm.golden.json"), "w", encoding="utf-8") as fo:
        json.dump(gold, fo, ensure_ascii=True, indent=0)
    print(f"spm: vocab {len(tokens)}, {len(gold)} golden strings")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    os.makedirs(OUT, exist_ok=True)
    smollm2(sys.argv[1])
    spm()
