// Task readers and prompts: see include/zqat/eval/tasks.h.
#include "zqat/eval/tasks.h"

#include <fmt/ranges.h>
#include <algorithm>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "zqat/core/error.h"
#include "zqat/io/mmap.h"

namespace zqat {

namespace {

using json = nlohmann::json;

std::string read_task_file(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) fail("tasks", "{}: no such file", path);
    return read_file(path);
}

// Where a record came from, for error messages: a line of a line-oriented file, or a JSON path.
struct Where {
    const std::string& path;
    std::string at;  // "line 3 (byte offset 120)" or "data[0].paragraphs[1]"
    template <class... Args>
    [[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) const {
        zqat::fail("tasks", "{}: {}: {}", path, at, fmt::format(f, std::forward<Args>(args)...));
    }
};

// Calls fn(line, where) for every non-blank line of a text file.
void for_each_line(const std::string& path,
                   const std::function<void(std::string_view, const Where&)>& fn) {
    const std::string bytes = read_task_file(path);
    size_t pos = 0;
    int64_t line_no = 0;
    while (pos < bytes.size()) {
        size_t end = bytes.find('\n', pos);
        if (end == std::string::npos) end = bytes.size();
        ++line_no;
        std::string_view line(bytes.data() + pos, end - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        const Where w{path, fmt::format("line {} (byte offset {})", line_no, pos)};
        pos = end + 1;
        if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
        fn(line, w);
    }
}

// Calls fn(object, where) for every non-blank line of a JSON-lines file.
void for_each_jsonl(const std::string& path,
                    const std::function<void(const json&, const Where&)>& fn) {
    for_each_line(path, [&](std::string_view line, const Where& w) {
        json j;
        try {
            j = json::parse(line);
        } catch (const json::exception& e) {
            w.fail("not valid JSON: {}", e.what());
        }
        if (!j.is_object()) w.fail("expected a JSON object, got {}", j.type_name());
        fn(j, w);
    });
}

// J: json, or ordered_json to keep object keys in file order.
template <class J = json>
J parse_json_file(const std::string& path) {
    const std::string bytes = read_task_file(path);
    try {
        return J::parse(bytes);
    } catch (const json::parse_error& e) {
        // e.byte is 1-based: the offset of the character after the one that failed.
        const size_t off = e.byte > 0 ? std::min<size_t>(e.byte - 1, bytes.size()) : 0;
        const auto line = 1 + std::count(bytes.begin(), bytes.begin() + std::ptrdiff_t(off), '\n');
        fail("tasks", "{}: line {} (byte offset {}): not valid JSON: {}", path, line, off,
             e.what());
    } catch (const json::exception& e) {  // e.g. a number out of range (out_of_range.406)
        fail("tasks", "{}: not valid JSON: {}", path, e.what());
    }
}

const json& field(const json& j, const char* name, const Where& w) {
    const auto it = j.find(name);
    if (it == j.end()) w.fail("no field '{}'", name);
    return *it;
}

std::string str_field(const json& j, const char* name, const Where& w) {
    const json& v = field(j, name, w);
    if (!v.is_string()) w.fail("field '{}' is a {}, expected a string", name, v.type_name());
    return v.get<std::string>();
}

int64_t int_field(const json& j, const char* name, const Where& w) {
    const json& v = field(j, name, w);
    if (!v.is_number_integer())
        w.fail("field '{}' is a {}, expected an integer", name, v.type_name());
    return v.get<int64_t>();
}

std::vector<std::string> str_array(const json& j, const char* name, const Where& w) {
    const json& v = field(j, name, w);
    if (!v.is_array()) w.fail("field '{}' is a {}, expected an array", name, v.type_name());
    std::vector<std::string> out;
    for (size_t i = 0; i < v.size(); ++i) {
        if (!v[i].is_string())
            w.fail("field '{}[{}]' is a {}, expected a string", name, i, v[i].type_name());
        out.push_back(v[i].get<std::string>());
    }
    return out;
}

std::string_view strip(std::string_view s) {
    const size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string_view::npos) return {};
    const size_t e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

// One context, one continuation per choice: context + " " + choice, acc_norm over the choice.
ChoiceDoc shared_context(std::string context, const std::vector<std::string>& choices, int64_t gold,
                         std::string_view delim, const Where& w) {
    if (choices.size() < 2) w.fail("{} choices, expected at least 2", choices.size());
    if (gold < 0 || gold >= int64_t(choices.size()))
        w.fail("gold answer {} is not a choice index (0..{})", gold, choices.size() - 1);
    ChoiceDoc d;
    d.gold = int(gold);
    for (const auto& c : choices)
        d.options.push_back(
            {context, std::string(delim) + c, std::max<int64_t>(1, utf8_length(c))});
    return d;
}

template <class T>
void keep_first(std::vector<T>& v, int64_t limit) {
    if (limit >= 0 && limit < int64_t(v.size())) v.resize(size_t(limit));
}

}  // namespace

int64_t utf8_length(std::string_view s) {
    int64_t n = 0;
    for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
}

std::string hellaswag_preprocess(std::string_view text) {
    // lm-eval: text.strip(); .replace(" [title]", ". "); re.sub("\\[.*?\\]", "", text);
    // .replace("  ", " ") -- each a single left-to-right pass, as Python's.
    const std::string_view s = strip(text);
    std::string a;
    for (size_t i = 0; i < s.size();) {
        if (s.substr(i, 8) == " [title]") {
            a += ". ";
            i += 8;
        } else {
            a += s[i++];
        }
    }
    std::string b;
    for (size_t i = 0; i < a.size(); ++i) {
        const size_t close = a[i] == '[' ? a.find(']', i) : std::string::npos;
        if (close != std::string::npos)
            i = close;
        else
            b += a[i];
    }
    std::string out;
    for (size_t i = 0; i < b.size(); ++i) {
        out += b[i];
        if (b[i] == ' ' && i + 1 < b.size() && b[i + 1] == ' ') ++i;
    }
    return out;
}

std::vector<ChoiceDoc> read_piqa(const std::string& jsonl, const std::string& labels) {
    std::vector<int64_t> gold;
    for_each_line(labels, [&](std::string_view line, const Where& w) {
        const std::string_view s = strip(line);
        if (s != "0" && s != "1") w.fail("expected a label 0 or 1, got '{}'", s);
        gold.push_back(s[0] - '0');
    });
    std::vector<ChoiceDoc> docs;
    for_each_jsonl(jsonl, [&](const json& j, const Where& w) {
        if (docs.size() >= gold.size())
            w.fail("more questions than labels in {} ({})", labels, gold.size());
        // Fields are read one statement each so that errors name the first bad field.
        const std::string goal = str_field(j, "goal", w);
        std::vector<std::string> sols{str_field(j, "sol1", w)};
        sols.push_back(str_field(j, "sol2", w));
        docs.push_back(
            shared_context("Question: " + goal + "\nAnswer:", sols, gold[docs.size()], " ", w));
    });
    if (docs.size() != gold.size())
        fail("tasks", "{}: {} questions but {} has {} labels", jsonl, docs.size(), labels,
             gold.size());
    return docs;
}

std::vector<ChoiceDoc> read_arc_icl(const std::string& jsonl) {
    std::vector<ChoiceDoc> docs;
    for_each_jsonl(jsonl, [&](const json& j, const Where& w) {
        const std::string query = str_field(j, "query", w);
        if (!query.starts_with("Question: "))
            w.fail("field 'query' does not start with \"Question: \"");
        const std::vector<std::string> choices = str_array(j, "choices", w);
        const int64_t gold = int_field(j, "gold", w);
        docs.push_back(shared_context(query + "\nAnswer:", choices, gold, " ", w));
    });
    return docs;
}

std::vector<ChoiceDoc> read_hellaswag_txt(const std::string& txt) {
    // llama.cpp's layout: 6 lines per task (context, gold label, 4 endings); no blank lines.
    const std::string bytes = read_task_file(txt);
    std::vector<std::string_view> lines;
    std::vector<size_t> offsets;
    for (size_t pos = 0; pos < bytes.size();) {
        size_t end = bytes.find('\n', pos);
        if (end == std::string::npos) end = bytes.size();
        lines.emplace_back(bytes.data() + pos, end - pos);
        offsets.push_back(pos);
        pos = end + 1;
    }
    if (lines.size() % 6 != 0)
        fail("tasks",
             "{}: {} lines, expected 6 per task (context, label, 4 endings); the last task "
             "starts at line {}",
             txt, lines.size(), lines.size() / 6 * 6 + 1);
    std::vector<ChoiceDoc> docs;
    for (size_t i = 0; i < lines.size(); i += 6) {
        const Where w{txt, fmt::format("line {} (byte offset {})", i + 2, offsets[i + 1])};
        const std::string_view label = strip(lines[i + 1]);
        if (label.size() != 1 || label[0] < '0' || label[0] > '3')
            w.fail("expected a gold label 0-3, got '{}'", label);
        std::vector<std::string> endings;
        for (size_t k = 0; k < 4; ++k) endings.push_back(hellaswag_preprocess(lines[i + 2 + k]));
        docs.push_back(
            shared_context(hellaswag_preprocess(lines[i]), endings, label[0] - '0', " ", w));
    }
    return docs;
}

std::vector<ChoiceDoc> read_winogrande_icl(const std::string& jsonl) {
    std::vector<ChoiceDoc> docs;
    for_each_jsonl(jsonl, [&](const json& j, const Where& w) {
        const std::vector<std::string> ctx = str_array(j, "context_options", w);
        if (ctx.size() != 2) w.fail("{} context_options, expected 2", ctx.size());
        const int64_t gold = int_field(j, "gold", w);
        if (gold != 0 && gold != 1) w.fail("gold {} is not 0 or 1", gold);
        // Partial scoring (lm-eval): the same target " {rest}" after each filled-in context.
        std::string cont = " ";
        cont += strip(str_field(j, "continuation", w));
        ChoiceDoc d;
        d.gold = int(gold);
        // Options share one continuation, so length normalisation cannot change the pick.
        for (const auto& c : ctx)
            d.options.push_back({c, cont, std::max<int64_t>(1, utf8_length(cont) - 1)});
        docs.push_back(std::move(d));
    });
    return docs;
}

std::vector<ChoiceDoc> read_sst2_tsv(const std::string& tsv) {
    std::vector<ChoiceDoc> docs;
    bool header = true;
    for_each_line(tsv, [&](std::string_view line, const Where& w) {
        const size_t tab = line.rfind('\t');
        if (tab == std::string_view::npos) w.fail("expected 'text<TAB>label'");
        const std::string_view label = strip(line.substr(tab + 1));
        if (header) {  // GLUE's header is "sentence\tlabel"; shared/data's is "text\tlabel"
            header = false;
            if (label != "label") w.fail("expected the header 'text<TAB>label'");
            return;
        }
        if (label != "0" && label != "1") w.fail("expected a label 0 or 1, got '{}'", label);
        docs.push_back(shared_context(std::string(strip(line.substr(0, tab))) + " It was",
                                      {"terrible", "great"}, label[0] - '0', " ", w));
    });
    return docs;
}

std::vector<ChoiceDoc> read_cb_jsonl(const std::string& jsonl) {
    std::vector<ChoiceDoc> docs;
    for_each_jsonl(jsonl, [&](const json& j, const Where& w) {
        const std::string label = str_field(j, "label", w);
        const int64_t gold = label == "entailment"      ? 0
                             : label == "contradiction" ? 1
                             : label == "neutral"       ? 2
                                                        : -1;
        if (gold < 0) w.fail("label '{}' is not entailment, contradiction or neutral", label);
        const std::string premise = str_field(j, "premise", w);
        const std::string hypothesis = str_field(j, "hypothesis", w);
        const std::string ctx = "Suppose " + premise + " Can we infer that \"" + hypothesis +
                                "\"? Yes, No, or Maybe?\n";
        docs.push_back(shared_context(ctx, {"Yes", "No", "Maybe"}, gold, "", w));
    });
    return docs;
}

std::vector<ChoiceDoc> read_boolq_jsonl(const std::string& jsonl) {
    std::vector<ChoiceDoc> docs;
    for_each_jsonl(jsonl, [&](const json& j, const Where& w) {
        const json& label = field(j, "label", w);
        if (!label.is_boolean())
            w.fail("field 'label' is a {}, expected true/false", label.type_name());
        std::string q = str_field(j, "question", w);
        if (q.empty()) w.fail("field 'question' is empty");
        if (!q.ends_with('?')) q += '?';
        if (q[0] >= 'a' && q[0] <= 'z') q[0] = char(q[0] - 'a' + 'A');
        const std::string passage = str_field(j, "passage", w);
        docs.push_back(shared_context(passage + " " + q + "\n", {"No", "Yes"},
                                      label.get<bool>() ? 1 : 0, "", w));
    });
    return docs;
}

std::vector<GenDoc> read_squad_json(const std::string& path, bool answerable_only) {
    const json root = parse_json_file(path);
    const Where top{path, "top level"};
    const json& data = field(root, "data", top);
    if (!data.is_array()) top.fail("field 'data' is a {}, expected an array", data.type_name());
    std::vector<GenDoc> docs;
    for (size_t a = 0; a < data.size(); ++a) {
        const Where wa{path, fmt::format("data[{}]", a)};
        const std::string title = str_field(data[a], "title", wa);
        const json& paras = field(data[a], "paragraphs", wa);
        if (!paras.is_array()) wa.fail("field 'paragraphs' is not an array");
        for (size_t p = 0; p < paras.size(); ++p) {
            const Where wp{path, fmt::format("data[{}].paragraphs[{}]", a, p)};
            const std::string context = str_field(paras[p], "context", wp);
            const json& qas = field(paras[p], "qas", wp);
            if (!qas.is_array()) wp.fail("field 'qas' is not an array");
            for (size_t q = 0; q < qas.size(); ++q) {
                const Where wq{path, fmt::format("data[{}].paragraphs[{}].qas[{}]", a, p, q)};
                const auto imp = qas[q].find("is_impossible");
                if (imp != qas[q].end() && !imp->is_boolean())
                    wq.fail("field 'is_impossible' is not true/false");
                if (answerable_only && imp != qas[q].end() && imp->get<bool>()) continue;
                GenDoc d;
                d.id = str_field(qas[q], "id", wq);
                d.prompt = "Title: " + title + "\nContext: " + context +
                           "\nQuestion: " + std::string(strip(str_field(qas[q], "question", wq))) +
                           "\nAnswer:";
                const json& ans = field(qas[q], "answers", wq);
                if (!ans.is_array()) wq.fail("field 'answers' is not an array");
                for (size_t k = 0; k < ans.size(); ++k)
                    d.answers.push_back(str_field(
                        ans[k], "text", Where{path, fmt::format("{}.answers[{}]", wq.at, k)}));
                const bool impossible = imp != qas[q].end() && imp->get<bool>();
                if (d.answers.empty() && !impossible)
                    wq.fail("an answerable question with no answers");
                docs.push_back(std::move(d));
            }
        }
    }
    return docs;
}

std::vector<GenDoc> read_drop_json(const std::string& path) {
    // ordered_json: passages in file order (nlohmann::json sorts object keys).
    const nlohmann::ordered_json root = parse_json_file<nlohmann::ordered_json>(path);
    if (!root.is_object()) Where{path, "top level"}.fail("expected an object of passages");
    std::vector<GenDoc> docs;
    for (const auto& [pid, passage_ordered] : root.items()) {
        const json passage = json(passage_ordered);  // the field helpers take json
        const Where wp{path, fmt::format("passage '{}'", pid)};
        const std::string text = str_field(passage, "passage", wp);
        const json& qas = field(passage, "qa_pairs", wp);
        if (!qas.is_array()) wp.fail("field 'qa_pairs' is not an array");
        for (size_t q = 0; q < qas.size(); ++q) {
            const Where wq{path, fmt::format("passage '{}'.qa_pairs[{}]", pid, q)};
            GenDoc d;
            d.id = str_field(qas[q], "query_id", wq);
            const std::string question(strip(str_field(qas[q], "question", wq)));
            d.prompt = "Passage: " + text + "\nQuestion: " + question + "\nAnswer:";
            // An answer is a number, a date or a list of spans; each span is a reference (as
            // the Hugging Face drop dataset's answers_spans), a number or a date is one; dates
            // read day month year, as the official DROP evaluation writes them.
            std::vector<std::pair<std::string, const json*>> answers{
                {"answer", &field(qas[q], "answer", wq)}};
            const auto va = qas[q].find("validated_answers");
            if (va != qas[q].end()) {
                if (!va->is_array()) wq.fail("field 'validated_answers' is not an array");
                for (size_t k = 0; k < va->size(); ++k)
                    answers.push_back({fmt::format("validated_answers[{}]", k), &(*va)[k]});
            }
            for (const auto& [name, a] : answers) {
                const Where wa{path, wq.at + "." + name};
                if (!a->is_object()) wa.fail("not an object");
                const std::string num = str_field(*a, "number", wa);
                if (!num.empty()) d.answers.push_back(num);
                for (const auto& sp : str_array(*a, "spans", wa)) d.answers.push_back(sp);
                const auto date = a->find("date");
                if (date == a->end()) continue;
                if (!date->is_object()) wa.fail("field 'date' is not an object");
                std::string out;
                for (const char* k : {"day", "month", "year"}) {  // any may be absent
                    const auto part = date->find(k);
                    if (part == date->end()) continue;
                    if (!part->is_string()) wa.fail("field 'date.{}' is not a string", k);
                    if (part->get<std::string>().empty()) continue;
                    if (!out.empty()) out += ' ';
                    out += part->get<std::string>();
                }
                if (!out.empty()) d.answers.push_back(out);
            }
            if (d.answers.empty()) wq.fail("no answer (number, spans or date)");
            docs.push_back(std::move(d));
        }
    }
    return docs;
}

std::vector<InstructDoc> read_alpaca_json(const std::string& path) {
    const json root = parse_json_file(path);
    if (!root.is_array()) Where{path, "top level"}.fail("expected an array of records");
    std::vector<InstructDoc> docs;
    for (size_t i = 0; i < root.size(); ++i) {
        const Where w{path, fmt::format("record [{}]", i)};
        if (!root[i].is_object()) w.fail("expected an object");
        const std::string instr = str_field(root[i], "instruction", w);
        const std::string input = str_field(root[i], "input", w);
        // The Stanford Alpaca prompt, with and without an input.
        InstructDoc d;
        d.prompt = input.empty()
                       ? "Below is an instruction that describes a task. Write a response that "
                         "appropriately completes the request.\n\n### Instruction:\n" +
                             instr + "\n\n### Response:\n"
                       : "Below is an instruction that describes a task, paired with an input "
                         "that provides further context. Write a response that appropriately "
                         "completes the request.\n\n### Instruction:\n" +
                             instr + "\n\n### Input:\n" + input + "\n\n### Response:\n";
        d.response = str_field(root[i], "output", w);
        if (d.response.empty()) w.fail("field 'output' is empty");
        docs.push_back(std::move(d));
    }
    return docs;
}

// ---- by name ---------------------------------------------------------------------------------

const std::vector<std::string>& choice_task_names() {
    static const std::vector<std::string> names = {
        "piqa", "arc_easy", "arc_challenge", "hellaswag", "winogrande", "sst2", "cb", "boolq"};
    return names;
}

const std::vector<std::string>& gen_task_names() {
    static const std::vector<std::string> names = {"squad", "drop"};
    return names;
}

bool is_choice_task(std::string_view name) {
    const auto& n = choice_task_names();
    return std::find(n.begin(), n.end(), name) != n.end();
}

bool is_gen_task(std::string_view name) {
    const auto& n = gen_task_names();
    return std::find(n.begin(), n.end(), name) != n.end();
}

ChoiceTask load_choice_task(std::string_view name, const std::string& data_dir, int64_t limit) {
    const std::string t = data_dir + "/tasks/";
    ChoiceTask task;
    task.name = std::string(name);
    task.has_norm =
        name == "piqa" || name == "arc_easy" || name == "arc_challenge" || name == "hellaswag";
    if (name == "piqa") {
        task.path = t + "piqa/valid.jsonl";
        task.docs = read_piqa(task.path, t + "piqa/valid-labels.lst");
    } else if (name == "arc_easy" || name == "arc_challenge") {
        task.path = t + "arc/" + task.name + "_test_icl.jsonl";
        task.docs = read_arc_icl(task.path);
    } else if (name == "hellaswag") {
        task.path = t + "hellaswag/hellaswag_val_first1000.txt";
        task.docs = read_hellaswag_txt(task.path);
    } else if (name == "winogrande") {
        task.path = t + "winogrande/winogrande_dev_icl.jsonl";
        task.docs = read_winogrande_icl(task.path);
    } else if (name == "sst2") {
        task.path = t + "sst2/dev.tsv";
        task.docs = read_sst2_tsv(task.path);
    } else if (name == "cb") {
        task.path = t + "cb/val.jsonl";
        task.docs = read_cb_jsonl(task.path);
    } else if (name == "boolq") {
        task.path = t + "boolq/val.jsonl";
        task.docs = read_boolq_jsonl(task.path);
    } else {
        fail("tasks", "unknown choice task '{}' (expected one of: {})", name,
             fmt::join(choice_task_names(), ", "));
    }
    keep_first(task.docs, limit);
    return task;
}

std::vector<GenDoc> load_gen_task(std::string_view name, const std::string& data_dir,
                                  int64_t limit) {
    const std::string t = data_dir + "/tasks/";
    std::vector<GenDoc> docs;
    if (name == "squad") {
        docs = read_squad_json(t + "squad/squad2_dev_first2articles.json");
    } else if (name == "drop") {
        docs = read_drop_json(t + "drop/drop_fixture.json");
    } else {
        fail("tasks", "unknown generation task '{}' (expected one of: {})", name,
             fmt::join(gen_task_names(), ", "));
    }
    keep_first(docs, limit);
    return docs;
}

std::vector<InstructDoc> load_alpaca(const std::string& data_dir, int64_t limit) {
    std::vector<InstructDoc> docs =
        read_alpaca_json(data_dir + "/tasks/alpaca/alpaca_en_demo.json");
    keep_first(docs, limit);
    return docs;
}

namespace {

template <class T>
void permute(std::vector<T>& v, uint64_t seed) {
    std::mt19937_64 rng(seed);
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[size_t(rng() % i)]);
}

void check_sizes(int64_t n_train, int64_t n_val, int64_t n_test) {
    if (n_train < 1 || n_val < 1 || n_test < 1)
        fail("tasks", "split sizes must be positive (train {}, val {}, test {})", n_train, n_val,
             n_test);
}

// One file's docs split as tasks.h says: a fixed test permutation, then one by `seed`.
template <class Doc>
Splits<Doc> split_docs(std::vector<Doc> docs, std::string_view task, uint64_t seed, int64_t n_train,
                       int64_t n_val, int64_t n_test) {
    const int64_t N = int64_t(docs.size());
    if (N < 6) fail("tasks", "{}: {} documents are too few to split", task, N);
    permute(docs, 0x7e57'5e7ull);  // the fixed test permutation
    const int64_t nt = std::min(n_test, N / 3);
    Splits<Doc> sp;
    sp.test.assign(docs.begin(), docs.begin() + nt);
    std::vector<Doc> rest(docs.begin() + nt, docs.end());
    permute(rest, seed);
    const int64_t R = int64_t(rest.size());
    const int64_t nv = std::min(n_val, R / 4), ntr = std::min(n_train, R - nv);
    sp.val.assign(rest.begin(), rest.begin() + nv);
    sp.train.assign(rest.begin() + nv, rest.begin() + nv + ntr);
    return sp;
}

}  // namespace

ChoiceSplits choice_splits(std::string_view task, const std::string& data_dir, uint64_t seed,
                           int64_t n_train, int64_t n_val, int64_t n_test) {
    check_sizes(n_train, n_val, n_test);
    ChoiceSplits sp;
    if (task == "cb") {
        const std::string t = data_dir + "/tasks/cb/";
        sp.train = read_cb_jsonl(t + "train_fewglue32.jsonl");
        sp.val = read_cb_jsonl(t + "dev32.jsonl");
        sp.test = read_cb_jsonl(t + "val.jsonl");
        permute(sp.train, seed);
        keep_first(sp.train, n_train);
        keep_first(sp.val, n_val);
        keep_first(sp.test, n_test);
        return sp;
    }
    return split_docs(load_choice_task(task, data_dir).docs, task, seed, n_train, n_val, n_test);
}

Splits<GenDoc> gen_splits(std::string_view task, const std::string& data_dir, uint64_t seed,
                          int64_t n_train, int64_t n_val, int64_t n_test) {
    check_sizes(n_train, n_val, n_test);
    return split_docs(load_gen_task(task, data_dir), task, seed, n_train, n_val, n_test);
}

Splits<InstructDoc> alpaca_splits(const std::string& data_dir, uint64_t seed, int64_t n_train,
                                  int64_t n_val, int64_t n_test) {
    check_sizes(n_train, n_val, n_test);
    return split_docs(load_alpaca(data_dir), "alpaca", seed, n_train, n_val, n_test);
}

}  // namespace zqat
