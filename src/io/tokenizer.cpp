// Tokenizers: byte-level BPE (GPT-2 family) and SentencePiece-style BPE with byte fallback.
//
// Byte-level BPE, as Hugging Face `tokenizers` and llama.cpp do it:
//   1. special tokens in the text are cut out first (parse_special);
//   2. the pre-tokenizer splits the rest into words: for "smollm" (= HF
//   Sequence[Digits(individual),
//      ByteLevel]) every \p{N} is isolated first, then the GPT-2 pattern
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      is matched left to right (a hand-written matcher, below);
//   3. each word's bytes are mapped to the GPT-2 printable byte alphabet and merged by rank;
//      the final symbols are vocabulary tokens.
// Invalid UTF-8 (which the Rust/Python references cannot take as text) is first replaced the
// way Python's bytes.decode("utf-8", errors="replace") does -- each maximal invalid subpart
// becomes U+FFFD -- and the result is tokenized. (llama.cpp also substitutes U+FFFD.) So
// decode(encode(x)) == x for valid UTF-8, and the replaced text otherwise.
#include "zqat/io/tokenizer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <mutex>
#include <queue>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "unicode.h"
#include "zqat/core/error.h"
#include "zqat/io/gguf.h"
#include "zqat/io/mmap.h"

namespace zqat {

namespace {

using unicode::Cpt;

enum class Pre { gpt2, digits_gpt2 };

// GPT-2's reversible map from bytes to printable code points (bytes_to_unicode in
// openai/gpt-2 encoder.py): printable Latin-1 bytes map to themselves, the rest to 256 + n.
std::array<uint32_t, 256> gpt2_byte_map() {
    std::array<uint32_t, 256> m{};
    int n = 0;
    for (int b = 0; b < 256; ++b) {
        const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        m[size_t(b)] = keep ? uint32_t(b) : uint32_t(256 + n++);
    }
    return m;
}

// Splits [begin, end) of cpts into GPT-2 pattern matches; appends (begin, end) index pairs.
void split_gpt2(const std::vector<Cpt>& c, size_t begin, size_t end,
                std::vector<std::pair<size_t, size_t>>& out) {
    using namespace unicode;
    auto cp = [&](size_t i) { return i < end ? c[i].cp : 0u; };
    auto L = [&](size_t i) { return i < end && c[i].cp != kInvalid && is_letter(c[i].cp); };
    auto N = [&](size_t i) { return i < end && c[i].cp != kInvalid && is_number(c[i].cp); };
    auto S = [&](size_t i) { return i < end && c[i].cp != kInvalid && is_whitespace(c[i].cp); };
    auto O = [&](size_t i) { return i < end && !L(i) && !N(i) && !S(i); };  // [^\s\p{L}\p{N}]
    size_t i = begin;
    while (i < end) {
        const size_t start = i;
        // 's 't 're 've 'm 'll 'd
        if (cp(i) == '\'' && i + 1 < end) {
            const uint32_t a = cp(i + 1), b = i + 2 < end ? cp(i + 2) : 0;
            if (a == 's' || a == 't' || a == 'm' || a == 'd') {
                out.emplace_back(start, i + 2);
                i += 2;
                continue;
            }
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
                out.emplace_back(start, i + 3);
                i += 3;
                continue;
            }
        }
        const size_t j = cp(i) == ' ' ? i + 1 : i;  // optional leading space
        if (L(j)) {                                 //  ?\p{L}+
            i = j;
            while (L(i)) ++i;
            out.emplace_back(start, i);
            continue;
        }
        if (N(j)) {  //  ?\p{N}+
            i = j;
            while (N(i)) ++i;
            out.emplace_back(start, i);
            continue;
        }
        if (O(j)) {  //  ?[^\s\p{L}\p{N}]+
            i = j;
            while (O(i)) ++i;
            out.emplace_back(start, i);
            continue;
        }
        // \s+(?!\S) | \s+ : a whitespace run; when a non-space follows, its last character is
        // left to start the next word (as ' ?\p{L}+' etc.), unless the run is a single character.
        size_t k = i;
        while (S(k)) ++k;
        if (k > i + 1 && k < end) --k;
        if (k == i) k = i + 1;  // unreachable for valid input; guarantees progress
        out.emplace_back(start, k);
        i = k;
    }
}

}  // namespace

struct Tokenizer::Impl {
    enum class Kind { bpe, spm } kind = Kind::bpe;
    Pre pre = Pre::gpt2;
    std::vector<std::string> tokens;  // as stored: byte-level encoded (bpe) or with U+2581 (spm)
    std::vector<float> scores;        // spm
    std::vector<bool> is_special;     // control / user-defined / added tokens
    std::unordered_map<std::string, int32_t> token_to_id;
    std::unordered_map<std::string, int32_t> merge_rank;    // "left right" -> rank (bpe)
    std::vector<std::pair<std::string, int32_t>> specials;  // matched in text, longest first
    std::array<int32_t, 256> byte_token{};                  // spm byte fallback <0xXX>
    int32_t bos = -1, eos = -1, unk = -1;
    bool add_bos = false, add_space_prefix = true;
    std::array<uint32_t, 256> byte_to_cp = gpt2_byte_map();
    std::unordered_map<uint32_t, uint8_t> cp_to_byte;
    mutable std::mutex cache_mu;
    mutable std::unordered_map<std::string, std::vector<int32_t>> cache;  // word -> ids

    void finish(const std::string& source) {
        token_to_id.reserve(tokens.size());
        for (size_t i = 0; i < tokens.size(); ++i) token_to_id.emplace(tokens[i], int32_t(i));
        for (int b = 0; b < 256; ++b) cp_to_byte[byte_to_cp[size_t(b)]] = uint8_t(b);
        for (size_t i = 0; i < tokens.size(); ++i)
            if (is_special[i] && !tokens[i].empty()) specials.emplace_back(tokens[i], int32_t(i));
        std::stable_sort(specials.begin(), specials.end(),
                         [](auto& a, auto& b) { return a.first.size() > b.first.size(); });
        for (int32_t* id : {&bos, &eos, &unk})
            if (*id >= int32_t(tokens.size()))
                fail("tokenizer", "{}: special token id {} is outside the vocabulary of {}", source,
                     *id, tokens.size());
        if (kind == Kind::spm) {
            for (int b = 0; b < 256; ++b) {
                char name[8];
                std::snprintf(name, sizeof name, "<0x%02X>", b);
                auto it = token_to_id.find(name);
                byte_token[size_t(b)] = it == token_to_id.end() ? unk : it->second;
            }
        }
    }

    // ---- byte-level BPE --------------------------------------------------------------------
    void bpe_word(std::string_view word, std::vector<int32_t>& out) const {
        {
            std::lock_guard<std::mutex> lock(cache_mu);
            auto it = cache.find(std::string(word));
            if (it != cache.end()) {
                out.insert(out.end(), it->second.begin(), it->second.end());
                return;
            }
        }
        std::vector<std::string> sym;
        sym.reserve(word.size());
        for (unsigned char b : word) {
            std::string s;
            unicode::append_utf8(s, byte_to_cp[b]);
            sym.push_back(std::move(s));
        }
        // Merge the lowest-ranked adjacent pair (leftmost on ties) until none is in the table.
        std::string key;
        for (;;) {
            int32_t best = std::numeric_limits<int32_t>::max();
            size_t at = 0;
            for (size_t i = 0; i + 1 < sym.size(); ++i) {
                key.assign(sym[i]).append(" ").append(sym[i + 1]);
                auto it = merge_rank.find(key);
                if (it != merge_rank.end() && it->second < best) best = it->second, at = i;
            }
            if (best == std::numeric_limits<int32_t>::max()) break;
            sym[at] += sym[at + 1];
            sym.erase(sym.begin() + std::ptrdiff_t(at) + 1);
        }
        std::vector<int32_t> ids;
        for (const std::string& s : sym) {
            auto it = token_to_id.find(s);
            if (it != token_to_id.end()) {
                ids.push_back(it->second);
                continue;
            }
            // A symbol outside the vocabulary (an incomplete vocabulary): fall back to the
            // single-byte symbols it is made of, or unk.
            for (const Cpt& c : unicode::decode_utf8(s)) {
                std::string one;
                unicode::append_utf8(one, c.cp);
                auto b = token_to_id.find(one);
                ids.push_back(b != token_to_id.end() ? b->second : unk);
            }
        }
        out.insert(out.end(), ids.begin(), ids.end());
        std::lock_guard<std::mutex> lock(cache_mu);
        if (cache.size() > 200000) cache.clear();
        cache.emplace(std::string(word), std::move(ids));
    }

    void bpe_segment(std::string_view text, std::vector<int32_t>& out) const {
        const std::vector<Cpt> c = unicode::decode_utf8(text);
        std::vector<std::pair<size_t, size_t>> words;
        if (pre == Pre::digits_gpt2) {
            // Isolate every \p{N}, then run the GPT-2 pattern on the stretches between them.
            size_t run = 0;
            for (size_t i = 0; i <= c.size(); ++i) {
                const bool digit =
                    i < c.size() && c[i].cp != unicode::kInvalid && unicode::is_number(c[i].cp);
                if (i == c.size() || digit) {
                    if (i > run) split_gpt2(c, run, i, words);
                    if (digit) words.emplace_back(i, i + 1);
                    run = i + 1;
                }
            }
        } else {
            split_gpt2(c, 0, c.size(), words);
        }
        for (auto [b, e] : words) {
            const size_t off = c[b].offset, end = c[e - 1].offset + c[e - 1].len;
            bpe_word(text.substr(off, end - off), out);
        }
    }

    // ---- SentencePiece-style BPE (llama.cpp llm_tokenizer_spm) ------------------------------
    void spm_segment(std::string_view text, bool first, std::vector<int32_t>& out) const {
        std::string s;
        if (first && add_space_prefix) s = "\xE2\x96\x81";
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
        for (const Cpt& c : unicode::decode_utf8(s))
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
        auto try_add = [&](int l, int r) {
            if (l < 0 || r < 0) return;
            auto it = token_to_id.find(
                s.substr(sym[size_t(l)].off, sym[size_t(l)].len + sym[size_t(r)].len));
            if (it == token_to_id.end()) return;
            q.push({l, r, scores[size_t(it->second)], sym[size_t(l)].len + sym[size_t(r)].len});
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
            const std::string piece = s.substr(sym[size_t(i)].off, sym[size_t(i)].len);
            auto it = token_to_id.find(piece);
            if (it != token_to_id.end()) {
                out.push_back(it->second);
            } else {
                for (unsigned char b : piece) out.push_back(byte_token[b]);
            }
        }
    }

    std::string piece_bytes(int32_t id) const {
        const std::string& t = tokens[size_t(id)];
        if (kind == Kind::spm) {
            if (t.size() == 6 && t.starts_with("<0x") && t.back() == '>')
                return std::string(1, char(std::stoi(t.substr(3, 2), nullptr, 16)));
            std::string out;
            for (size_t i = 0; i < t.size();) {
                if (t.compare(i, 3, "\xE2\x96\x81") == 0) {
                    out += ' ';
                    i += 3;
                } else {
                    out += t[i++];
                }
            }
            return out;
        }
        if (is_special[size_t(id)]) return t;
        std::string out;
        for (const Cpt& c : unicode::decode_utf8(t)) {
            auto it = cp_to_byte.find(c.cp);
            if (it != cp_to_byte.end())
                out += char(it->second);
            else
                unicode::append_utf8(out, c.cp);
        }
        return out;
    }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::from_gguf(const gguf::File& f) {
    auto impl = std::make_unique<Impl>();
    const std::string& model = f.get_string("tokenizer.ggml.model");
    impl->tokens = f.get_string_array("tokenizer.ggml.tokens");
    const size_t n = impl->tokens.size();
    if (n == 0) fail("tokenizer", "{}: tokenizer.ggml.tokens is empty", f.path());
    impl->is_special.assign(n, false);
    if (f.has("tokenizer.ggml.token_type")) {
        const auto& types = f.get_int_array("tokenizer.ggml.token_type");
        if (types.size() != n)
            fail("tokenizer", "{}: tokenizer.ggml.token_type has {} entries for {} tokens",
                 f.path(), types.size(), n);
        for (size_t i = 0; i < n; ++i) impl->is_special[i] = types[i] == 3 || types[i] == 4;
    }
    if (model == "gpt2") {
        impl->kind = Impl::Kind::bpe;
        const std::string pre = f.get_string_or("tokenizer.ggml.pre", "default");
        if (pre == "default" || pre == "gpt-2" || pre == "gpt2")
            impl->pre = Pre::gpt2;
        else if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "codeshell")
            impl->pre = Pre::digits_gpt2;
        else
            fail("tokenizer",
                 "{}: tokenizer.ggml.pre = '{}' is not supported (default, gpt2, "
                 "smollm, starcoder, refact, codeshell)",
                 f.path(), pre);
        const auto& merges = f.get_string_array("tokenizer.ggml.merges");
        impl->merge_rank.reserve(merges.size());
        for (size_t i = 0; i < merges.size(); ++i) impl->merge_rank.emplace(merges[i], int32_t(i));
        impl->add_space_prefix = false;
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
    auto id = [&](const char* key) { return f.has(key) ? int32_t(f.get_uint(key)) : -1; };
    impl->bos = id("tokenizer.ggml.bos_token_id");
    impl->eos = id("tokenizer.ggml.eos_token_id");
    impl->unk = id("tokenizer.ggml.unknown_token_id");
    impl->add_bos = f.get_bool_or("tokenizer.ggml.add_bos_token", impl->add_bos);
    impl->finish(f.path());
    return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_hf_json(const std::string& path) {
    // bos/eos and add_bos_token come from tokenizer_config.json beside it, when present.
    const std::string cfg_path =
        path.substr(0, path.find_last_of('/') + 1) + "tokenizer_config.json";
    std::string cfg_text;
    try {
        cfg_text = read_file(cfg_path);
    } catch (const Error&) {
    }
    return from_hf_json_string(read_file(path), path, cfg_text, cfg_path);
}

Tokenizer Tokenizer::from_hf_json_string(std::string_view text, const std::string& path,
                                         std::string_view config_text,
                                         const std::string& config_path) {
    using nlohmann::json;
    json j;
    try {
        j = json::parse(text);
    } catch (const json::parse_error& e) {
        fail("tokenizer", "{}: invalid JSON at byte {}: {}", path, e.byte, e.what());
    } catch (const json::exception& e) {  // e.g. a number out of range
        fail("tokenizer", "{}: invalid JSON: {}", path, e.what());
    }
    auto impl = std::make_unique<Impl>();
    // Integer fields are checked before conversion: nlohmann converts a float such as 1e30 to
    // int64 with undefined behaviour.
    auto as_id = [&](const json& v, const char* what) -> int64_t {
        if (!v.is_number_integer())
            fail("tokenizer", "{}: {} must be an integer, got {}", path, what, v.dump());
        return v.get<int64_t>();
    };
    try {
        const json& model = j.at("model");
        if (model.value("type", std::string()) != "BPE")
            fail("tokenizer", "{}: model.type must be \"BPE\"", path);
        const json& vocab = model.at("vocab");
        if (!vocab.is_object()) fail("tokenizer", "{}: model.vocab must be an object", path);
        // Ids must be dense 0..n-1 (with added tokens possibly extending the range).
        size_t n = vocab.size();
        for (const json& t : j.value("added_tokens", json::array()))
            n = std::max(n, size_t(as_id(t.at("id"), "added_tokens id")) + 1);
        // Ids must be dense: a larger id than there are entries is a broken (or hostile) file.
        const size_t entries = vocab.size() + j.value("added_tokens", json::array()).size();
        if (n > entries)
            fail("tokenizer", "{}: token ids reach {} but there are only {} entries", path, n - 1,
                 entries);
        impl->tokens.assign(n, std::string());
        impl->is_special.assign(n, false);
        for (auto it = vocab.begin(); it != vocab.end(); ++it) {
            const int64_t id = as_id(it.value(), "model.vocab value");
            if (id < 0 || size_t(id) >= n)
                fail("tokenizer", "{}: model.vocab['{}'] = {} is out of range", path, it.key(), id);
            impl->tokens[size_t(id)] = it.key();
        }
        for (const json& t : j.value("added_tokens", json::array())) {
            const int64_t id = as_id(t.at("id"), "added_tokens id");
            if (id < 0) fail("tokenizer", "{}: added_tokens id {} is negative", path, id);
            impl->tokens[size_t(id)] = t.at("content").get<std::string>();
            impl->is_special[size_t(id)] = true;
        }
        const json& merges = model.at("merges");
        if (!merges.is_array()) fail("tokenizer", "{}: model.merges must be an array", path);
        for (size_t i = 0; i < merges.size(); ++i) {
            const json& m = merges[i];
            std::string key = m.is_array()
                                  ? m.at(0).get<std::string>() + " " + m.at(1).get<std::string>()
                                  : m.get<std::string>();
            impl->merge_rank.emplace(std::move(key), int32_t(i));
        }
        // Pre-tokenizer: ByteLevel alone (GPT-2) or Sequence[Digits(individual), ByteLevel].
        const json& pt = j.at("pre_tokenizer");
        auto is_byte_level = [](const json& p) {
            return p.value("type", std::string()) == "ByteLevel" && p.value("use_regex", true) &&
                   !p.value("add_prefix_space", false);
        };
        if (is_byte_level(pt)) {
            impl->pre = Pre::gpt2;
        } else if (pt.value("type", std::string()) == "Sequence" &&
                   pt.at("pretokenizers").size() == 2 &&
                   pt.at("pretokenizers")[0].value("type", std::string()) == "Digits" &&
                   pt.at("pretokenizers")[0].value("individual_digits", false) &&
                   is_byte_level(pt.at("pretokenizers")[1])) {
            impl->pre = Pre::digits_gpt2;
        } else {
            fail("tokenizer",
                 "{}: pre_tokenizer {} is not supported (ByteLevel, or Sequence of "
                 "Digits(individual_digits) and ByteLevel)",
                 path, pt.dump().substr(0, 200));
        }
    } catch (const json::exception& e) {
        fail("tokenizer", "{}: malformed tokenizer.json: {}", path, e.what());
    }
    impl->kind = Impl::Kind::bpe;
    impl->add_space_prefix = false;
    if (!config_text.empty()) {
        const json cfg = json::parse(config_text, nullptr, false);
        if (cfg.is_discarded() || !cfg.is_object())
            fail("tokenizer", "{}: not a JSON object", config_path);
        auto token_id = [&](const char* key) -> int32_t {
            if (!cfg.contains(key) || cfg[key].is_null()) return -1;
            const json& v = cfg[key];
            std::string s;
            if (v.is_string())
                s = v.get<std::string>();
            else if (v.is_object() && v.contains("content") && v["content"].is_string())
                s = v["content"].get<std::string>();
            else
                fail("tokenizer", "{}: field '{}' must be a string or {{\"content\": string}}",
                     config_path, key);
            for (size_t i = 0; i < impl->tokens.size(); ++i)
                if (impl->tokens[i] == s) return int32_t(i);
            return -1;
        };
        impl->bos = token_id("bos_token");
        impl->eos = token_id("eos_token");
        impl->unk = token_id("unk_token");
        if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean())
            impl->add_bos = cfg["add_bos_token"].get<bool>();
    }
    impl->finish(path);
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
    bool first = true;
    auto segment = [&](std::string_view s) {
        if (s.empty()) return;
        if (t.kind == Impl::Kind::bpe)
            t.bpe_segment(s, out);
        else
            t.spm_segment(s, first, out);
        first = false;
    };
    size_t start = 0;
    if (parse_special && !t.specials.empty()) {
        for (size_t i = 0; i < text.size();) {
            const std::pair<std::string, int32_t>* hit = nullptr;
            for (const auto& sp : t.specials)
                if (text.compare(i, sp.first.size(), sp.first) == 0) {
                    hit = &sp;
                    break;
                }
            if (!hit) {
                ++i;
                continue;
            }
            segment(text.substr(start, i - start));
            out.push_back(hit->second);
            first = false;
            i += hit->first.size();
            start = i;
        }
    }
    segment(text.substr(start));
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
        fail("tokenizer", "token id {} is outside the vocabulary of {}", id, impl_->tokens.size());
    return impl_->piece_bytes(id);
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
