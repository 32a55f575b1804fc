// Hugging Face tokenizer.json (+ tokenizer_config.json) -> byte-level BPE tokenizer.
//
// Supported: model.type "BPE" (vocab, merges as "a b" strings or ["a", "b"] pairs, unk_token,
// ignore_merges); normalizer null or NFC (Qwen2; text that may change under NFC is refused at
// encode time, see TokenizerData::nfc); pre_tokenizer ByteLevel, Digits, Split (the GPT-2, Llama-3
// and Qwen2 regexes, behavior "Isolated") and Sequence of those, with a ByteLevel somewhere (the
// vocabulary is GPT-2 byte symbols); added_tokens (special -> matched only when parse_special,
// lstrip/rstrip honoured). Anything else is refused with an Error naming the file and the field,
// rather than tokenized differently from the reference.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "tokenizer_impl.h"
#include "zqat/core/error.h"
#include "zqat/io/mmap.h"

namespace zqat {

namespace {

using nlohmann::json;

struct Reader {
    const std::string& path;

    [[noreturn]] void bad(const std::string& field, std::string_view expected,
                          const json& got) const {
        std::string shown = got.dump();
        if (shown.size() > 80) shown = shown.substr(0, 77) + "...";
        fail("tokenizer", "{}: field '{}' must be {}, got {}", path, field, expected, shown);
    }
    const json& at(const json& obj, const std::string& key, const std::string& field) const {
        if (!obj.is_object()) bad(field, "an object", obj);
        auto it = obj.find(key);
        if (it == obj.end()) fail("tokenizer", "{}: field '{}.{}' is missing", path, field, key);
        return *it;
    }
    std::string str(const json& v, const std::string& field) const {
        if (!v.is_string()) bad(field, "a string", v);
        return v.get<std::string>();
    }
    int64_t integer(const json& v, const std::string& field) const {
        // Checked before conversion: nlohmann turns a float such as 1e30 into int64 with
        // undefined behaviour.
        if (!v.is_number_integer()) bad(field, "an integer", v);
        return v.get<int64_t>();
    }
    bool boolean(const json& obj, const char* key, bool dflt, const std::string& field) const {
        auto it = obj.find(key);
        if (it == obj.end() || it->is_null()) return dflt;
        if (!it->is_boolean()) bad(field + "." + key, "a boolean", *it);
        return it->get<bool>();
    }
    std::string type_of(const json& obj, const std::string& field) const {
        return str(at(obj, "type", field), field + ".type");
    }
};

// Appends the steps of one pre-tokenizer (recursing into Sequence).
void parse_pre(const Reader& r, const json& p, const std::string& field, tok::PreTokenizer& out,
               bool& byte_level) {
    using K = tok::PreStep::Kind;
    const std::string type = r.type_of(p, field);
    if (type == "Sequence") {
        const json& list = r.at(p, "pretokenizers", field);
        if (!list.is_array()) r.bad(field + ".pretokenizers", "an array", list);
        for (size_t i = 0; i < list.size(); ++i)
            parse_pre(r, list[i], fmt::format("{}.pretokenizers[{}]", field, i), out, byte_level);
    } else if (type == "ByteLevel") {
        byte_level = true;
        if (r.boolean(p, "add_prefix_space", true, field)) out.push_back({K::prefix_space});
        if (r.boolean(p, "use_regex", true, field))
            out.push_back({K::split, tok::Pattern::gpt2, false});
    } else if (type == "Digits") {
        out.push_back(
            {K::digits, tok::Pattern::gpt2, r.boolean(p, "individual_digits", false, field)});
    } else if (type == "Split") {
        const json& pat = r.at(p, "pattern", field);
        tok::Pattern pattern{};
        if (!pat.is_object() || !pat.contains("Regex") || !pat["Regex"].is_string() ||
            !tok::pattern_from_regex(pat["Regex"].get<std::string>(), &pattern))
            r.bad(field + ".pattern",
                  "{\"Regex\": the GPT-2, Llama-3 or Qwen2 pre-tokenizer pattern}", pat);
        const std::string behavior = r.str(r.at(p, "behavior", field), field + ".behavior");
        if (behavior != "Isolated") r.bad(field + ".behavior", "\"Isolated\"", behavior);
        if (r.boolean(p, "invert", false, field)) r.bad(field + ".invert", "false", true);
        out.push_back({K::split, pattern, false});
    } else {
        r.bad(field + ".type", "one of Sequence, ByteLevel, Digits, Split", type);
    }
}

void parse_tokenizer_json(const Reader& r, const json& j, TokenizerData& t) {
    if (!j.is_object()) r.bad("(top level)", "an object", j);
    const json& model = r.at(j, "model", "(top level)");
    if (r.type_of(model, "model") != "BPE") r.bad("model.type", "\"BPE\"", model["type"]);
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        auto it = model.find(key);
        if (it != model.end() && !it->is_null() && *it != "")
            r.bad(std::string("model.") + key, "null", *it);
    }
    if (auto it = model.find("dropout"); it != model.end() && !it->is_null() && *it != 0.0)
        r.bad("model.dropout", "null", *it);
    t.ignore_merges = r.boolean(model, "ignore_merges", false, "model");

    const json& vocab = r.at(model, "vocab", "model");
    if (!vocab.is_object()) r.bad("model.vocab", "an object", vocab);
    json no_added = json::array();
    const json& added =
        j.contains("added_tokens") && !j["added_tokens"].is_null() ? j["added_tokens"] : no_added;
    if (!added.is_array()) r.bad("added_tokens", "an array", added);
    // Ids are dense 0..n-1 (added tokens may extend the range); a larger id than there are
    // entries is a broken or hostile file, refused before anything is allocated.
    const size_t entries = vocab.size() + added.size();
    size_t n = 0;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        const int64_t id = r.integer(it.value(), "model.vocab['" + it.key() + "']");
        if (id < 0 || uint64_t(id) >= entries)
            r.bad("model.vocab['" + it.key() + "']", fmt::format("in [0, {})", entries), *it);
        n = std::max(n, size_t(id) + 1);
    }
    for (size_t i = 0; i < added.size(); ++i) {
        const std::string f = fmt::format("added_tokens[{}]", i);
        const int64_t id = r.integer(r.at(added[i], "id", f), f + ".id");
        if (id < 0 || uint64_t(id) >= entries)
            r.bad(f + ".id", fmt::format("in [0, {})", entries), added[i]["id"]);
        n = std::max(n, size_t(id) + 1);
    }
    t.tokens.assign(n, std::string());
    t.types.assign(n, kNormal);
    t.lstrip.assign(n, false);
    t.rstrip.assign(n, false);
    for (auto it = vocab.begin(); it != vocab.end(); ++it)
        t.tokens[size_t(it.value().get<int64_t>())] = it.key();
    for (size_t i = 0; i < added.size(); ++i) {
        const std::string f = fmt::format("added_tokens[{}]", i);
        const size_t id = size_t(added[i]["id"].get<int64_t>());
        t.tokens[id] = r.str(r.at(added[i], "content", f), f + ".content");
        if (t.tokens[id].empty()) r.bad(f + ".content", "a non-empty string", added[i]["content"]);
        t.types[id] = r.boolean(added[i], "special", false, f) ? kControl : kUserDefined;
        t.lstrip[id] = r.boolean(added[i], "lstrip", false, f);
        t.rstrip[id] = r.boolean(added[i], "rstrip", false, f);
    }

    const json& merges = r.at(model, "merges", "model");
    if (!merges.is_array()) r.bad("model.merges", "an array", merges);
    t.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
        const json& m = merges[i];
        const std::string f = fmt::format("model.merges[{}]", i);
        if (m.is_array()) {
            if (m.size() != 2) r.bad(f, "a pair of strings", m);
            t.merges.push_back(r.str(m[0], f + "[0]") + " " + r.str(m[1], f + "[1]"));
        } else {
            t.merges.push_back(r.str(m, f));
            if (t.merges.back().find(' ', 1) == std::string::npos) r.bad(f, "\"left right\"", m);
        }
    }
    if (auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
        const std::string unk = r.str(*it, "model.unk_token");
        auto u = std::find(t.tokens.begin(), t.tokens.end(), unk);
        if (u != t.tokens.end()) t.unk = t.bpe_unk = int32_t(u - t.tokens.begin());
        t.fuse_unk = r.boolean(model, "fuse_unk", false, "model");
    }

    if (auto it = j.find("normalizer"); it != j.end() && !it->is_null()) {
        if (r.type_of(*it, "normalizer") != "NFC")
            r.bad("normalizer.type", "\"NFC\" or a null normalizer", (*it)["type"]);
        t.nfc = true;
    }
    // BOS: a TemplateProcessing post-processor whose single-sequence template starts with a
    // special token (Llama 3) adds it; tokenizer_config.json may override both.
    if (auto it = j.find("post_processor"); it != j.end() && it->is_object()) {
        const json* tp = &*it;
        if (it->value("type", "") == "Sequence" && it->contains("processors") &&
            (*it)["processors"].is_array())
            for (const json& p : (*it)["processors"])
                if (p.is_object() && p.value("type", "") == "TemplateProcessing") tp = &p;
        if (tp->value("type", "") == "TemplateProcessing" && tp->contains("single") &&
            (*tp)["single"].is_array() && !(*tp)["single"].empty()) {
            const json& first = (*tp)["single"][0];
            if (first.is_object() && first.contains("SpecialToken") &&
                first["SpecialToken"].is_object()) {
                t.bos_text = r.str(first["SpecialToken"].value("id", json()),
                                   "post_processor.single[0].SpecialToken.id");
                t.add_bos = true;
            }
        }
    }
    const json& pre = r.at(j, "pre_tokenizer", "(top level)");
    bool byte_level = false;
    if (!pre.is_null()) parse_pre(r, pre, "pre_tokenizer", t.pre, byte_level);
    if (!byte_level)
        r.bad("pre_tokenizer", "a ByteLevel pre-tokenizer (alone or in a Sequence)", pre);
}

}  // namespace

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
    auto impl = std::make_unique<Impl>();
    impl->source = path;
    impl->kind = Impl::Kind::bpe;
    const Reader r{path};
    try {
        const json j = json::parse(text);
        parse_tokenizer_json(r, j, *impl);
    } catch (const json::parse_error& e) {
        fail("tokenizer", "{}: invalid JSON at byte {}: {}", path, e.byte, e.what());
    } catch (const json::exception& e) {  // e.g. a number out of range
        fail("tokenizer", "{}: malformed tokenizer.json: {}", path, e.what());
    }
    impl->finish();
    if (!impl->bos_text.empty()) {
        auto it = impl->token_to_id.find(impl->bos_text);
        impl->bos = it == impl->token_to_id.end() ? -1 : it->second;
    }
    if (!config_text.empty()) {
        const Reader c{config_path};
        try {
            const json cfg = json::parse(config_text);
            if (!cfg.is_object()) c.bad("(top level)", "an object", cfg);
            auto token_id = [&](const char* key) -> int32_t {
                auto it = cfg.find(key);
                if (it == cfg.end() || it->is_null()) return -2;  // absent
                std::string s;
                if (it->is_object() && it->contains("content"))
                    s = c.str((*it)["content"], std::string(key) + ".content");
                else
                    s = c.str(*it, key);
                auto t = impl->token_to_id.find(s);
                return t == impl->token_to_id.end() ? -1 : t->second;
            };
            if (const int32_t bos = token_id("bos_token"); bos != -2) impl->bos = bos;
            impl->eos = std::max(token_id("eos_token"), -1);
            if (const int32_t unk = token_id("unk_token"); unk >= 0) impl->unk = unk;
            impl->add_bos = c.boolean(cfg, "add_bos_token", impl->add_bos, "(top level)");
        } catch (const json::parse_error& e) {
            fail("tokenizer", "{}: invalid JSON at byte {}: {}", config_path, e.byte, e.what());
        } catch (const json::exception& e) {
            fail("tokenizer", "{}: malformed tokenizer_config.json: {}", config_path, e.what());
        }
    }
    return Tokenizer(std::move(impl));
}

}  // namespace zqat
