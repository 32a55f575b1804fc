#!/usr/bin/env python3
"""Golden token ids for tests/test_io_tokenizer.cpp, from reference tokenizers.

SmolLM2 (byte-level BPE, GGUF pre-tokenizer "smollm"): SmolLM2's own tokenizer.json is not
available offline, so the reference is Hugging Face `tokenizers` built from the GGUF's own vocab
and merges with SmolLM2's published pre-tokenizer, Sequence[Digits(individual_digits=True),
ByteLevel(add_prefix_space=False, use_regex=True)], its control tokens as added special tokens.
(llama.cpp's llama-tokenize on the same GGUF gives identical ids on all of wiki.test.raw and on
the adversarial set: a second, independent check made while writing this script.) This equals
the real thing: a copy of SmolLM2-135M-Instruct's tokenizer.json as saved by HF `tokenizers`
(found in a public repository, not redistributed here) has exactly the GGUF's 49152 tokens and
48900 merges, this pre-tokenizer, the 17 control tokens as special added tokens, and a BPE model
with unk_token null, fuse_unk false, byte_fallback false.

Where the references part: bytes the vocabulary cannot spell (SmolLM2 has no symbol for 0x04,
0x06, 0x13, 0x14, 0x16, 0x1D, 0xF1, 0xF2: lead bytes of U+40000..U+BFFFF) are dropped by both,
but HF then merges their neighbours ("!\x04!" -> "!!") and llama.cpp does not (-> "!", "!").
zeroqat follows HF, the reference. HF's regexes classify \p{L}/\p{N} by Unicode 16.0 and its
Digits pre-tokenizer by Rust's char::is_numeric (Unicode 17.0 in tokenizers 0.23.3): see
scripts/gen_unicode_tables.py; the adversarial set holds characters new in 15.0-17.0.

SentencePiece BPE (GGUF tokenizer.ggml.model "llama"): no real Llama-vocabulary GGUF is here, so
a small BPE model is trained with `sentencepiece` on WikiText-2 *valid* (never the test text),
written as a vocab-only GGUF the way llama.cpp's converter does, and sentencepiece's own encode is
the reference.

Option (i) of the plan, a tokenizer.json shipped in the PyPI package `fiveattn`, does not exist:
its wheel (0.1.1) only downloads "HuggingFaceTB/SmolLM-135M" from the Hub at run time.

Pre-tokenizers (pretok.json): the words HF `tokenizers` splits the adversarial strings into, for
ByteLevel (GPT-2 regex, with and without add_prefix_space), Sequence[Digits, ByteLevel] (smollm),
Split with the Llama-3 and Qwen2 regexes, and Digits alone -- the oracle for tokenizer_pre.cpp.

tokenizer.json (hf_llama3/): a small byte-level BPE trained here with HF `tokenizers` on
WikiText-2 valid, pre-tokenizer Sequence[Split(Llama-3 regex), ByteLevel(use_regex=False)],
ignore_merges, special and non-special added tokens (one with lstrip/rstrip), and its
tokenizer_config.json; golden ids from HF for the adversarial set and some wiki.test.raw.

Writes tests/data/tokenizer/: wiki_test.smollm2.i32 (ids of all of wiki.test.raw, int32 LE),
adversarial.smollm2.json, spm.gguf, spm.golden.json, pretok.json, hf_llama3/{tokenizer.json,
tokenizer_config.json,golden.json}. Needs gguf, tokenizers, sentencepiece (PyPI, for goldens
only). Usage: python3 scripts/make_tokenizer_golden.py MODEL.gguf [PART...]
(PART: smollm2 spm pretok hf seeds; all by default)"""
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
    "'\u017f '\u212a HELLO'S WE'LL I'M", "x\r\n\r\n  y", "a \n\t b", "  \n", "12345678",
    "\u00a0\u00a0x", "\u0661\u0662\u0663\u0664", "tab\t\tx", "end \n", "a1b22c333d4444",
    "!!!\n\nfoo", "...\r\n", " \u00e9t\u00e9 ", "\u3000\u3000\u65e5", "x\u2028\u2028y",
    # bytes SmolLM2 cannot spell, between symbols that merge (HF drops them and merges across)
    "!\x04!", "==\x13==", "a\x06\x14\x16\x1db", "x\U00050000y \U000a1234!", "..\U0004ffff..",
    # letters/digits new in Unicode 15.0 (U+31350 CJK ext H, U+11F04 Kawi), 16.0 (U+105C0 Todhri,
    # U+16D43 Kirat Rai), 17.0 (U+11DE0.. digits: numeric for Digits only, not for \p{N})
    "\U00031350's \U00011f04'll \U000105c0're \U00016d43've",
    "a\U00011de2's \U00011de9x7\U00016ff4",
    "\U00011de0\U00011de1\U00011de2 x\U00016ff5y", "\U0001e4d0\U0001e5d0 \U00011f50\U00016d70",
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
    for a in adv:  # bytes the vocabulary cannot spell are dropped: no round trip
        if tok.decode(a["ids"], skip_special_tokens=False) != a["text"]:
            a["lossy"] = True
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


LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def byte_decoder():
    bs = (list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100)))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def pretok():
    from tokenizers import Regex, pre_tokenizers as pt

    dec = byte_decoder()
    unmap = lambda w: bytes(dec[ch] for ch in w).decode("utf-8")
    bl = lambda aps: pt.ByteLevel(add_prefix_space=aps, use_regex=True)
    cases = {  # name -> (pre-tokenizer, whether its words are byte-level mapped)
        "gpt2": (bl(False), True),
        "gpt2_prefix": (bl(True), True),
        "smollm": (pt.Sequence([pt.Digits(individual_digits=True), bl(False)]), True),
        "llama3": (pt.Split(Regex(LLAMA3), behavior="isolated"), False),
        "qwen2": (pt.Split(Regex(QWEN2), behavior="isolated"), False),
        "gpt2_split": (pt.Split(Regex(GPT2), behavior="isolated"), False),
        "digits": (pt.Digits(individual_digits=False), False),
    }
    texts = [s for s in ADVERSARIAL if len(s) < 1000]
    gold = {"texts": texts}
    for name, (p, mapped) in cases.items():
        gold[name] = [[unmap(w) if mapped else w for w, _ in p.pre_tokenize_str(s)] for s in texts]
    with open(os.path.join(OUT, "pretok.json"), "w", encoding="utf-8") as fo:
        json.dump(gold, fo, ensure_ascii=True, separators=(",", ":"))
    print(f"pretok: {len(texts)} strings x {len(cases)} pre-tokenizers")


def hf_llama3():
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, trainers
    from tokenizers import pre_tokenizers as pt

    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pt.Sequence([pt.Split(Regex(LLAMA3), behavior="isolated"),
                                     pt.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, initial_alphabet=pt.ByteLevel.alphabet(),
                                  special_tokens=["<|begin|>", "<|end|>"], show_progress=False)
    tok.train([os.path.join(SHARED, "wikitext-2", "valid.txt")], trainer)
    tok.add_tokens([AddedToken("<tool>", lstrip=True, rstrip=True, special=False,
                               normalized=False),
                    AddedToken("[[x]]", special=False, normalized=False)])
    d = os.path.join(OUT, "hf_llama3")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as fo:
        json.dump({"bos_token": "<|begin|>", "eos_token": {"content": "<|end|>"},
                   "add_bos_token": True}, fo, indent=1)
    wiki = open(os.path.join(SHARED, "wikitext-2-raw", "wiki.test.raw"),
                encoding="utf-8").read()[:30000]
    extra = ["<|begin|>hi<|end|>", "a <tool> b", "a  <tool>  b", "x[[x]]y", "<|end|><tool>"]
    gold = [{"text": s, "ids": tok.encode(s, add_special_tokens=False).ids}
            for s in ADVERSARIAL + extra + [wiki]]
    with open(os.path.join(d, "golden.json"), "w", encoding="utf-8") as fo:
        json.dump(gold, fo, ensure_ascii=True, separators=(",", ":"))
    print(f"hf_llama3: vocab {tok.get_vocab_size()}, {len(gold)} golden strings")


def fuzz_seeds():
    """Small tokenizer.json seeds for tests/fuzz/fuzz_tokenizer_json.cpp that reach the Split,
    ignore_merges and added-token (lstrip/rstrip) paths."""
    d = os.path.join(ROOT, "tests", "data", "io", "corpus_fuzz_tokenizer_json")
    dec = byte_decoder()
    vocab = {ch: i for i, ch in enumerate(sorted(dec, key=lambda c: dec[c]))}
    for t in ["\u0120t", "he", "\u0120the", "12"]:
        vocab[t] = len(vocab)
    seed = {
        "added_tokens": [
            {"id": len(vocab), "content": "<|eot|>", "special": True},
            {"id": len(vocab) + 1, "content": "<x>", "special": False, "lstrip": True,
             "rstrip": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3}, "behavior": "Isolated",
             "invert": False},
            {"type": "Digits", "individual_digits": False},
            {"type": "ByteLevel", "add_prefix_space": True, "use_regex": False}]},
        "model": {"type": "BPE", "ignore_merges": True, "unk_token": None, "vocab": vocab,
                  "merges": [["\u0120", "t"], ["h", "e"], ["\u0120t", "he"], ["1", "2"]]}}
    with open(os.path.join(d, "split_llama3.json"), "w", encoding="utf-8") as fo:
        json.dump(seed, fo, ensure_ascii=False)
    seed["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": QWEN2},
                             "behavior": "Isolated"}
    seed["model"]["ignore_merges"] = False
    with open(os.path.join(d, "split_qwen2_no_bytelevel.json"), "w", encoding="utf-8") as fo:
        json.dump(seed, fo, ensure_ascii=False)
    print("fuzz seeds written")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    parts = sys.argv[2:] or ["smollm2", "spm", "pretok", "hf", "seeds"]
    os.makedirs(OUT, exist_ok=True)
    if "smollm2" in parts:
        smollm2(sys.argv[1])
    if "spm" in parts:
        spm()
    if "pretok" in parts:
        pretok()
    if "hf" in parts:
        hf_llama3()
    if "seeds" in parts:
        fuzz_seeds()
