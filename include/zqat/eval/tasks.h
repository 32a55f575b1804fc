// The task sets of shared/data/tasks (see its MANIFEST.md): readers for each file format, and the
// prompt each task is scored with. A task is its file plus its prompt, so both live here; scoring
// is eval/scoring.h.
//
// Choice tasks (one gold answer among a few, scored by log-likelihood):
//   piqa, arc_easy, arc_challenge, hellaswag, winogrande: lm-eval-harness's zero-shot prompts
//     piqa      "Question: {goal}\nAnswer:" + " {sol}"
//     arc_*     "{query}\nAnswer:" + " {choice}"      (query is "Question: ..." in the ICL files)
//     hellaswag "{activity_label}: {ctx}" + " {ending}", lm-eval's preprocess applied to both.
//               The file is llama.cpp's layout, already preprocessed upstream and without the
//               ctx_a / ctx_b split, so ctx_b keeps its lower-case first letter where lm-eval
//               capitalises it: scores differ slightly from lm-eval's on the HF jsonl.
//     winogrande partial scoring: "{sentence up to _ with option}" + " {rest of the sentence}"
//   sst2, cb, boolq: MeZO's label-word prompts (its templates.py)
//     sst2  "{text} It was" + " terrible|great"
//     cb    "Suppose {premise} Can we infer that \"{hypothesis}\"? Yes, No, or Maybe?\n"
//           + "Yes|No|Maybe" (entailment, contradiction, neutral)
//     boolq "{passage} {Question}?\n" + "No|Yes"  (MeZO's default, its BoolQTemplateV3: question
//           capitalised, "?" added if missing)
// Generation tasks (greedy answer, token F1 / exact match against the references):
//   squad (v1.1 questions: the answerable ones of the SQuAD 2.0 file), drop
//     "Title: {title}\nContext: {context}\nQuestion: {question}\nAnswer:"  (DROP: Passage:)
// Instruction data: alpaca (loss on the response only).
//
// Every reader throws Error("[tasks] <path>: line <n> (byte offset <o>): ...") for a malformed
// line of a line-oriented file, and names the JSON field (e.g. "data[0].paragraphs[2].qas[1]")
// for a malformed record of a JSON document.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace zqat {

struct ChoiceOption {
    std::string context;       // the text the model is conditioned on
    std::string continuation;  // the text whose log-likelihood is scored
    // lm-eval's acc_norm divides the log-likelihood by the choice's length in characters
    // (Python len: code points) of the choice text without the target delimiter " ".
    int64_t norm_chars = 1;
};

struct ChoiceDoc {
    std::vector<ChoiceOption> options;  // >= 2
    int gold = 0;                       // index into options
};

struct ChoiceTask {
    std::string name;  // e.g. "piqa"
    std::string path;  // the file the docs came from
    // lm-eval reports acc_norm for piqa, arc_* and hellaswag; winogrande's options share one
    // continuation and the label-word tasks are scored by acc alone.
    bool has_norm = false;
    std::vector<ChoiceDoc> docs;
};

struct GenDoc {
    std::string id;
    std::string prompt;                // ends with "Answer:"
    std::vector<std::string> answers;  // references, >= 1
};

struct InstructDoc {
    std::string prompt;    // the Alpaca template up to "### Response:\n"
    std::string response;  // the output the loss is taken on
};

// The names load_choice_task / load_gen_task accept, for --help and error messages.
const std::vector<std::string>& choice_task_names();
const std::vector<std::string>& gen_task_names();
bool is_choice_task(std::string_view name);
bool is_gen_task(std::string_view name);

// <data_dir>/tasks/<...> for the task; limit >= 0 keeps the first `limit` docs (in file order).
ChoiceTask load_choice_task(std::string_view name, const std::string& data_dir, int64_t limit = -1);
std::vector<GenDoc> load_gen_task(std::string_view name, const std::string& data_dir,
                                  int64_t limit = -1);
std::vector<InstructDoc> load_alpaca(const std::string& data_dir, int64_t limit = -1);

// The fine-tuning splits of a task (MeZO samples 1000 train, 500 validation and 1000 test
// examples; shared/data has smaller sets, so the sizes are capped):
//   cb: train = FewGLUE train (32), validation = FewGLUE dev32 (32), test = SuperGLUE val (56);
//   any other task (one file of N docs): test = the first min(n_test, N / 3) docs of a
//   permutation fixed for the task, the same for every run; of the rest R, validation =
//   min(n_val, R / 4) and train = min(n_train, R - validation) docs of a permutation by `seed`.
//   SQuAD's docs are questions, so the splits share passages (its file has two articles).
// Permutations: Fisher-Yates with j = rng() % (i + 1), rng = std::mt19937_64 (portable).
template <class Doc>
struct Splits {
    std::vector<Doc> train, val, test;
};
using ChoiceSplits = Splits<ChoiceDoc>;
ChoiceSplits choice_splits(std::string_view task, const std::string& data_dir, uint64_t seed,
                           int64_t n_train = 1000, int64_t n_val = 500, int64_t n_test = 1000);
Splits<GenDoc> gen_splits(std::string_view task, const std::string& data_dir, uint64_t seed,
                          int64_t n_train = 1000, int64_t n_val = 500, int64_t n_test = 1000);
Splits<InstructDoc> alpaca_splits(const std::string& data_dir, uint64_t seed,
                                  int64_t n_train = 1000, int64_t n_val = 500,
                                  int64_t n_test = 1000);

// The readers behind the loaders, on explicit paths (tests feed them small files).
std::vector<ChoiceDoc> read_piqa(const std::string& jsonl, const std::string& labels);
std::vector<ChoiceDoc> read_arc_icl(const std::string& jsonl);
std::vector<ChoiceDoc> read_hellaswag_txt(const std::string& txt);
std::vector<ChoiceDoc> read_winogrande_icl(const std::string& jsonl);
std::vector<ChoiceDoc> read_sst2_tsv(const std::string& tsv);
std::vector<ChoiceDoc> read_cb_jsonl(const std::string& jsonl);
std::vector<ChoiceDoc> read_boolq_jsonl(const std::string& jsonl);
std::vector<GenDoc> read_squad_json(const std::string& json, bool answerable_only = true);
std::vector<GenDoc> read_drop_json(const std::string& json);
std::vector<InstructDoc> read_alpaca_json(const std::string& json);

// Code points of UTF-8 text (bytes that do not continue a sequence).
int64_t utf8_length(std::string_view s);

// lm-eval-harness's HellaSwag preprocess: strip, " [title]" -> ". ", drop "[...]" markers,
// "  " -> " ".
std::string hellaswag_preprocess(std::string_view text);

}  // namespace zqat
