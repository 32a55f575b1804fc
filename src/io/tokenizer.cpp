// Tokenizers: byte-level BPE (GPT-2 family) and SentencePiece-style BPE with byte fallback.
//
// encode(text):
//   0. Invalid UTF-8 (which the Rust/Python references cannot take as text) is first replaced
//      the way Python's bytes.decode("utf-8", errors="replace") does: each maximal invalid
//      subpart becomes U+FFFD. llama.cpp substitutes U+FFFD as well (per byte). So
//      decode(encode(x)) == x for valid UTF-8, and is the replaced text otherwise.
//   1. Special tokens are cut out of the text (leftmost, then longest, as HF's added-token
//      matcher): user-defined ones always, control ones only when parse_special.
//   2. byte-level BPE: each stretch of text is split into words by the pre-tokenizer
//      (tokenizer_pre.h); each word's bytes become GPT-2's printable byte symbols, and adjacent
//      symbols are merged lowest rank first (leftmost on ties) until no pair is in the merge
//      table, as HF `tokenizers` and llama.cpp do. Words are cached (word -> ids).
//      SPM-BPE (llama.cpp llm_tokenizer_spm): spaces become U+2581, "▁" is prepended when
//      add_space_prefix (to the first stretch and to each stretch after a special token, as
//      llama.cpp does), and adjacent symbols are merged highest score first while the merged
//      string is a token; characters left outside the vocabulary become <0xXX> byte tokens.
#include "zqat/io/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <queue>

#include "tokenizer_impl.h"
#include "unicode.h"
#include "zqat/core/error.h"
#include "zqat/io/gguf.h"

namespace zqat {

namespace {

// GPT-2's reversible map from bytes to printable code points (bytes_to_unicode in
// openai/gpt-2 encoder.py): printable Latin-1 bytes map to themselves, the rest to 256 + n.
const std::array<uint32_t, 256>& gpt2_byte_map() {
    static const std::array<uint32_t, 256> m = [] {
        std::array<uint32_t, 256> r{};
        uint32_t n = 0;
        for (int b = 0; b < 256; ++b) {
            const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
            r[size_t(b)] = keep ? uint32_t(b) : 256 + n++;
        }
        return r;
    }();
    return m;
}

std::string byte_level(std::string_view bytes) {
    std::string s;
    s.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) unicode::append_utf8(s, gpt2_byte_map()[b]);
    return s;
}

bool is_space_at(std::string_view s, size_t i) {  // the character starting at byte i
    const std::vector<unicode::Cpt> c = unicode::decode_utf8(s.substr(i, 4));
    return !c.empty() && c[0].cp != unicode::kInvalid && unicode::is_whitespace(c[0].cp);
}

}  // namespace

// ---- tables -----------------------------------------------------------------------------------

void TokenizerData::finish() {
    const size_t n = tokens.size();
    if (types.size() != n) types.assign(n, kNormal);
    token_to_id.clear();
    token_to_id.reserve(n);
    for (size_t i = 0; i < n; ++i) token_to_id[tokens[i]] = int32_t(i);  // last wins (llama.cpp)
    for (auto [id, what] : {std::pair{&bos, "bos"}, {&eos, "eos"}, {&unk, "unknown"}})
        if (*id < -1 || *id >= int32_t(n))
            fail("tokenizer", "{}: {} token id {} is outside the vocabulary of {}", source, what,
                 *id, n);

    specials.clear();
    for (size_t i = 0; i < n; ++i) {
        const uint8_t t = types[i];
        if (tokens[i].empty() || (t != kControl && t != kUserDefined && t != kUnknown)) continue;
        specials.push_back({tokens[i], int32_t(i), t != kUserDefined,
                            i < lstrip.size() && lstrip[i], i < rstrip.size() && rstrip[i]});
    }
    for (auto& v : special_by_byte) v.clear();
    for (size_t k = 0; k < specials.size(); ++k)
        special_by_byte[uint8_t(specials[k].text[0])].push_back(uint32_t(k));
    for (auto& v : special_by_byte)
        std::stable_sort(v.begin(), v.end(), [&](uint32_t a, uint32_t b) {
            return specials[a].text.size() > specials[b].text.size();
        });

    auto find = [&](std::string_view s) {
        auto it = token_to_id.find(std::string(s));
        return it == token_to_id.end() ? -1 : it->second;
    };
    pieces.assign(n, std::string());
    if (kind == Kind::bpe) {
        std::array<int16_t, 512> cp_to_byte;
        cp_to_byte.fill(-1);
        for (int b = 0; b < 256; ++b) {
            cp_to_byte[gpt2_byte_map()[size_t(b)]] = int16_t(b);
            std::string sym;
            unicode::append_utf8(sym, gpt2_byte_map()[size_t(b)]);
            byte_symbol[size_t(b)] = find(sym);
        }
        merge_of.clear();
        merge_of.reserve(merges.size());
        for (size_t r = 0; r < merges.size(); ++r) {
            const std::string& m = merges[r];
            const size_t sp = m.find(' ', 1);
            if (sp == std::string::npos) continue;
            const int32_t a = find(std::string_view(m).substr(0, sp));
            const int32_t b = find(std::string_view(m).substr(sp + 1));
            const int32_t ab = find(m.substr(0, sp) + m.substr(sp + 1));
            // A merge whose parts or result are not tokens cannot contribute (HF refuses such
            // a file; llama.cpp would fall back to bytes): it is left out.
            if (a < 0 || b < 0 || ab < 0) continue;
            merge_of.emplace((uint64_t(uint32_t(a)) << 32) | uint32_t(b), Merge{int32_t(r), ab});
        }
        merges.clear();
        merges.shrink_to_fit();
        for (size_t i = 0; i < n; ++i) {
            if (types[i] == kControl || types[i] == kUserDefined) {
                pieces[i] = tokens[i];
                continue;
            }
            for (const unicode::Cpt& c : unicode::decode_utf8(tokens[i])) {
                if (c.cp < cp_to_byte.size() && cp_to_byte[c.cp] >= 0)
                    pieces[i] += char(cp_to_byte[c.cp]);
                else  // not a byte-level symbol: its own bytes (as HF's ByteLevel decoder)
                    pieces[i] += tokens[i].substr(c.offset, c.len);
            }
        }
    } else {
        if (scores.size() != n)
            fail("tokenizer", "{}: {} scores for {} tokens", source, scores.size(), n);
        for (int b = 0; b < 256; ++b) {
            char name[8];
            std::snprintf(name, sizeof name, "<0x%02X>", b);
            const int32_t id = find(name);
            byte_token[size_t(b)] = id >= 0 ? id : unk;
        }
        for (size_t i = 0; i < n; ++i) {
            const std::string& t = tokens[i];
            if (types[i] == kControl) continue;  // decodes to nothing, as in sentencepiece
            if (types[i] == kByte && t.size() == 6 && t.starts_with("<0x") && t.back() == '>') {
                pieces[i] = char(std::strtol(t.substr(3, 2).c_str(), nullptr, 16));
                continue;
            }
            for (size_t k = 0; k < t.size();) {
                if (t.compare(k, 3, "\xE2\x96\x81") == 0) {
                    pieces[i] += ' ';
                    k += 3;
                } else {
                    pieces[i] += t[k++];
                }
            }
        }
    }
}

// ---- byte-level BPE ---------------------------------------------------------------------------

void TokenizerData::bpe_word(const std::string& word, std::vector<int32_t>& out) const {
    {
        std::lock_guard<std::mutex> lock(cache_mu);
        auto it = cache.find(word);
        if (it != cache.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    std::vector<int32_t> ids;
    int32_t whole = -1;
    if (ignore_merges) {
        auto it = token_to_id.find(byte_level(word));
        if (it != token_to_id.end()) whole = it->second;
    }
    if (whole >= 0) {
        ids.push_back(whole);
    } else {
        // Symbols in a linked list; candidate merges in a min-heap by (rank, position). An
        // entry is stale when either side has changed since it was pushed.
        struct Sym {
            int32_t id, prev, next;
        };
        struct Cand {
            int32_t rank, left, right, lid, rid, merged;
            bool operator>(const Cand& o) const {
                return rank != o.rank ? rank > o.rank : left > o.left;
            }
        };
        std::vector<Sym> sym;
        sym.reserve(word.size());
        bool prev_unknown = false;
        for (const char ch : word) {
            int32_t id = byte_symbol[uint8_t(ch)];
            if (id < 0) {  // not in the vocabulary: see bpe_unk
                if (bpe_unk < 0 || (fuse_unk && prev_unknown)) continue;
                id = bpe_unk;
            }
            prev_unknown = byte_symbol[uint8_t(ch)] < 0;
            const int32_t i = int32_t(sym.size());
            sym.push_back({id, i - 1, i + 1});
        }
        const int32_t n = int32_t(sym.size());
        if (n > 0) sym.back().next = -1;
        std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
        auto push = [&](int32_t l, int32_t r) {
            if (l < 0 || r < 0) return;
            const int32_t a = sym[size_t(l)].id, b = sym[size_t(r)].id;
            if (a < 0 || b < 0) return;
            auto it = merge_of.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
            if (it != merge_of.end()) heap.push({it->second.rank, l, r, a, b, it->second.id});
        };
        for (int32_t i = 0; i + 1 < n; ++i) push(i, i + 1);
        while (!heap.empty()) {
            const Cand c = heap.top();
            heap.pop();
            Sym& l = sym[size_t(c.left)];
            Sym& r = sym[size_t(c.right)];
            if (l.id != c.lid || r.id != c.rid || l.next != c.right) continue;  // stale
            l.id = c.merged;
            l.next = r.next;
            if (r.next >= 0) sym[size_t(r.next)].prev = c.left;
            r.id = -2;  // dead
            r.next = r.prev = -1;
            push(l.prev, c.left);
            push(c.left, l.next);
        }
        for (int32_t i = n > 0 ? 0 : -1; i >= 0; i = sym[size_t(i)].next) {
            ids.push_back(sym[size_t(i)].id);
        }
    }
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard<std::mutex> lock(cache_mu);
    if (cache.size() > 100000) cache.clear();
    cache.emplace(word, std::move(ids));
}

// ---- SentencePiece-style BPE ------------------------------------------------------------------

void TokenizerData::spm_text(std::string_view text, bool prefix, std::vector<int32_t>& out) const {
    std::string s;
    s.reserve(text.size() * 2 + 3);
    if (prefix) s = "\xE2\x96\x81";
    for (char ch : text) {
        if (ch == ' ')
            s += "\xE2\x96\x81";  // U+2581
        else
            s += ch;
    }
    struct Sym {
        int prev, next;
        size_t off, len;
    };
    std::vector<Sym> sym;
    for (const unicode::Cpt& c : unicode::decode_utf8(s))
        sym.push_back({int(sym.size()) - 1, int(sym.size()) + 1, c.offset, c.len});
    if (sym.empty()) return;
    sym.back().next = -1;
    struct Bigram {
        int left, right;
        float score;
        size_t len;
        bool operator<(const Bigram& o) const {  // max-heap: higher score, then leftmost
            return score < o.score || (score == o.score && left > o.left);
        }
    };
    std::priority_queue<Bigram> q;
    std::string key;
    auto try_add = [&](int l, int r) {
        if (l < 0 || r < 0) return;
        const size_t len = sym[size_t(l)].len + sym[size_t(r)].len;
        key.assign(s, sym[size_t(l)].off, len);
        auto it = token_to_id.find(key);
        if (it == token_to_id.end()) return;
        q.push({l, r, scores[size_t(it->second)], len});
    };
    for (size_t i = 1; i < sym.size(); ++i) try_add(int(i) - 1, int(i));
    while (!q.empty()) {
        const Bigram b = q.top();
        q.pop();
        Sym& l = sym[size_t(b.left)];
        Sym& r = sym[size_t(b.right)];
        if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale
        l.len += r.len;
        r.len = 0;
        l.next = r.next;
        if (r.next >= 0) sym[size_t(r.next)].prev = b.left;
        try_add(l.prev, b.left);
        try_add(b.left, l.next);
    }
    for (int i = 0; i >= 0; i = sym[size_t(i)].next) {
        key.assign(s, sym[size_t(i)].off, sym[size_t(i)].len);
        auto it = token_to_id.find(key);
        if (it != token_to_id.end()) {
            out.push_back(it->second);
        } else {
            for (unsigned char b : key)
                if (byte_token[b] >= 0) out.push_back(byte_token[b]);
        }
    }
}

void TokenizerData::encode_text(std::string_view text, bool after_special,
                                std::vector<int32_t>& out) const {
    if (text.empty()) return;
    if (nfc && !unicode::is_nfc_quick(text))
        fail("tokenizer",
             "{}: the text is not certainly in Unicode NFC, which this tokenizer's normalizer "
             "(NFC) would produce; NFC is not implemented: normalize the text first",
             source);
    if (kind == Kind::spm) {
        spm_text(text, add_space_prefix && after_special, out);
        return;
    }
    std::vector<std::string> words;
    words.reserve(text.size() / 4 + 1);
    tok::pre_tokenize(pre, text, words);
    for (const std::string& w : words) bpe_word(w, out);
}

// ---- public -----------------------------------------------------------------------------------

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_gguf(const gguf::File& f) {
    auto impl = std::make_unique<Impl>();
    impl->source = f.path();
    const std::string& model = f.get_string("tokenizer.ggml.model");
    impl->tokens = f.get_string_array("tokenizer.ggml.tokens");
    const size_t n = impl->tokens.size();
    if (n == 0) fail("tokenizer", "{}: tokenizer.ggml.tokens is empty", f.path());
    if (n > size_t(std::numeric_limits<int32_t>::max()))
        fail("tokenizer", "{}: tokenizer.ggml.tokens has {} entries", f.path(), n);
    impl->types.assign(n, kNormal);
    if (f.has("tokenizer.ggml.token_type")) {
        const auto& types = f.get_int_array("tokenizer.ggml.token_type");
        if (types.size() != n)
            fail("tokenizer", "{}: tokenizer.ggml.token_type has {} entries for {} tokens",
                 f.path(), types.size(), n);
        for (size_t i = 0; i < n; ++i)
            impl->types[i] = types[i] >= 1 && types[i] <= 6 ? uint8_t(types[i]) : uint8_t(kNormal);
    }
    if (model == "gpt2") {
        impl->kind = Impl::Kind::bpe;
        // llama.cpp's names (llama-vocab.cpp) -> the HF pre-tokenizer they stand for.
        const std::string pre = f.get_string_or("tokenizer.ggml.pre", "default");
        using tok::Pattern;
        using K = tok::PreStep::Kind;
        if (pre == "default" || pre == "gpt-2" || pre == "gpt2") {
            // llama.cpp's "default" is a legacy multi-regex fallback; GGUF files written for
            // GPT-2 tokenizers mean the GPT-2 pattern, which is what HF runs.
            impl->pre = {{K::split, Pattern::gpt2, false}};
        } else if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "codeshell") {
            impl->pre = {{K::digits, Pattern::gpt2, true}, {K::split, Pattern::gpt2, false}};
        } else if (pre == "llama3" || pre == "llama-bpe" || pre == "llama-v3") {
            impl->pre = {{K::split, Pattern::llama3, false}};
            impl->ignore_merges = true;
            impl->add_bos = true;
        } else if (pre == "qwen2") {
            impl->pre = {{K::split, Pattern::qwen2, false}};
        } else {
            fail("tokenizer",
                 "{}: tokenizer.ggml.pre = '{}' is not supported (default, gpt2, smollm, "
                 "starcoder, refact, codeshell, llama3, llama-bpe, qwen2)",
                 f.path(), pre);
        }
        impl->merges = f.get_string_array("tokenizer.ggml.merges");
    } else if (model == "llama") {
        impl->kind = Impl::Kind::spm;
        const auto& scores = f.get_float_array("tokenizer.ggml.scores");
        if (scores.size() != n)
            fail("tokenizer", "{}: tokenizer.ggml.scores has {} entries for {} tokens", f.path(),
                 scores.size(), n);
        impl->scores.assign(scores.begin(), scores.end());
        impl->add_space_prefix = f.get_bool_or("tokenizer.ggml.add_space_prefix", true);
        impl->add_bos = true;  // llama.cpp's default for SPM vocabularies
    } else {
        fail("tokenizer", "{}: tokenizer.ggml.model = '{}' is not supported (gpt2, llama)",
             f.path(), model);
    }
    auto id = [&](const char* key) -> int32_t {
        if (!f.has(key)) return -1;
        const uint64_t v = f.get_uint(key);
        if (v >= n)
            fail("tokenizer", "{}: {} = {} is outside the vocabulary of {}", f.path(), key, v, n);
        return int32_t(v);
    };
    impl->bos = id("tokenizer.ggml.bos_token_id");
    impl->eos = id("tokenizer.ggml.eos_token_id");
    impl->unk = id("tokenizer.ggml.unknown_token_id");
    impl->add_bos = f.get_bool_or("tokenizer.ggml.add_bos_token", impl->add_bos);
    impl->finish();
    return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text_in, bool add_bos,
                                       bool parse_special) const {
    const Impl& t = *impl_;
    const std::string clean = unicode::replace_invalid_utf8(text_in);
    const std::string_view text = clean;
    std::vector<int32_t> out;
    out.reserve(text.size() / 3 + 2);
    if (add_bos && t.add_bos && t.bos >= 0) out.push_back(t.bos);
    bool after_special = true;  // the first stretch counts as following one (spm prefix)
    size_t start = 0;
    if (!t.specials.empty()) {
        for (size_t i = 0; i < text.size();) {
            const Impl::Special* hit = nullptr;
            for (uint32_t k : t.special_by_byte[uint8_t(text[i])]) {
                const Impl::Special& sp = t.specials[k];
                if ((parse_special || !sp.control) &&
                    text.compare(i, sp.text.size(), sp.text) == 0) {
                    hit = &sp;
                    break;
                }
            }
            if (!hit) {
                ++i;
                continue;
            }
            size_t end = i;  // of the text before the token
            if (hit->lstrip) {
                for (size_t p = end; p > start;) {
                    size_t q = p - 1;
                    while (q > start && (uint8_t(text[q]) & 0xC0) == 0x80) --q;
                    if (!is_space_at(text, q)) break;
                    end = p = q;
                }
            }
            if (end > start) {
                t.encode_text(text.substr(start, end - start), after_special, out);
                after_special = false;
            }
            out.push_back(hit->id);
            after_special = true;
            i += hit->text.size();
            if (hit->rstrip)
                while (i < text.size() && is_space_at(text, i))
                    i += unicode::decode_utf8(text.substr(i, 4))[0].len;
            start = i;
        }
    }
    t.encode_text(text.substr(start), after_special, out);
    return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
    std::string out;
    for (int32_t id : ids) out += token_bytes(id);
    if (impl_->kind == Impl::Kind::spm && impl_->add_space_prefix && !out.empty() && out[0] == ' ')
        out.erase(0, 1);
    return out;
}

std::string Tokenizer::token_bytes(int32_t id) const {
    if (id < 0 || size_t(id) >= impl_->tokens.size())
        fail("tokenizer", "{}: token id {} is outside the vocabulary of {}", impl_->source, id,
             impl_->tokens.size());
    return impl_->pieces[size_t(id)];
}

int32_t Tokenizer::n_vocab() const {
    return int32_t(impl_->tokens.size());
}
int32_t Tokenizer::bos_id() const {
    return impl_->bos;
}
int32_t Tokenizer::eos_id() const {
    return impl_->eos;
}
bool Tokenizer::add_bos() const {
    return impl_->add_bos;
}
std::string_view Tokenizer::kind() const {
    return impl_->kind == Impl::Kind::bpe ? "bpe-byte-level" : "spm-bpe";
}

}  // namespace zqat
