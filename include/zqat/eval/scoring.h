// Scoring a model on tasks (eval/tasks.h), the way EleutherAI lm-evaluation-harness and MeZO do:
//   choice tasks: the summed log-likelihood of each option's continuation after its context;
//     acc      = [argmax_i ll_i == gold]
//     acc_norm = [argmax_i ll_i / chars_i == gold]   (characters of the choice text, lm-eval's
//                                                     length normalisation)
//     acc_tok  = [argmax_i ll_i / tokens_i == gold]  (mean log-probability per continuation
//                                                     token: MeZO's criterion, which fine-tuning
//                                                     uses)
//     both with lm-eval's standard error sqrt(p (1 - p) / (n - 1)); ties go to the lowest index
//     (numpy argmax).
//   generation tasks: greedy decoding with the KV cache until a newline or max_new tokens; the
//     answer is the text before the first "\n", stripped; token F1 and exact match as the official
//     SQuAD v1.1 script defines them, the maximum over the references.
// Requests are sorted by length and packed into batches of about batch_tokens tokens (right
// padding, which a causal model never attends to), so a score does not depend on what else is in
// its batch; sums run in position order in double.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "zqat/eval/tasks.h"

namespace zqat {

struct Model;
class Tokenizer;
class ThreadPool;

// Token ids of a (context, continuation) pair, as lm-eval's _encode_pair: trailing whitespace of
// the context moves to the start of the continuation; context = encode(context), continuation =
// encode(context + continuation) minus its first |context| tokens (so merges across the boundary
// are the tokenizer's, not ours). No BOS. An empty context becomes [EOS] (lm-eval's EOT prefix).
struct LoglikRequest {
    std::vector<int32_t> context, continuation;  // continuation non-empty
};
LoglikRequest encode_pair(const Tokenizer& tok, std::string_view context,
                          std::string_view continuation);

struct ScoreOptions {
    int64_t batch_tokens = 4096;  // rows x padded length per forward, about
    // Longer requests lose context tokens from the left (lm-eval keeps max_len + 1 tokens, the
    // last one unfed; here max_len are fed: one context token fewer). A continuation of max_len
    // tokens or more is an error naming the request.
    int64_t max_len = 2048;
    // Called after each batch with requests done and the total.
    std::function<void(int64_t done, int64_t total)> progress;
};

// sum_t log p(continuation[t] | context, continuation[..t]) per request, in request order.
std::vector<double> loglikelihoods(const Model& model, std::span<const LoglikRequest> reqs,
                                   const ScoreOptions& opt, ThreadPool& pool);

// One row of a right-padded batch: the last min(T, |seq|) tokens of seq into row [T], the rest
// filled with seq's last token (a causal model's scored positions never attend to it). Returns
// the number of tokens kept. seq non-empty.
int64_t fill_row(std::span<const int32_t> seq, int32_t* row, int64_t T);
// The padded length of a batch whose longest row has n tokens: n rounded up to 16, so that
// nearby lengths share one planned forward, and at most max_len.
int64_t padded_len(int64_t n, int64_t max_len);

// numpy.argmax: the first index of the largest value.
int argmax_first(std::span<const double> v);

struct ChoiceMetrics {
    int64_t n = 0;
    double acc = 0, acc_stderr = 0;
    double acc_norm = 0, acc_norm_stderr = 0;    // meaningful when the task has_norm
    double acc_tok = 0, acc_tok_stderr = 0;      // when token counts are given
    std::vector<int> pred, pred_norm, pred_tok;  // per doc
    std::vector<double> ll;                      // per option, docs in order
};
// From the log-likelihoods of every option, docs in order and options in order within a doc,
// and (optionally, for acc_tok) each option's continuation tokens.
ChoiceMetrics choice_metrics(std::span<const ChoiceDoc> docs, std::span<const double> ll,
                             std::span<const int64_t> n_tokens = {});

ChoiceMetrics evaluate_choice_task(const Model& model, const ChoiceTask& task,
                                   const ScoreOptions& opt, ThreadPool& pool);

// Official SQuAD v1.1 answer normalisation: lower case, drop ASCII punctuation, drop the
// articles a/an/the as words, collapse whitespace. UTF-8 aware where SQuAD text needs it: Unicode
// spaces split words, general punctuation (quotes, dashes) is not a word character, and Latin-1,
// Latin Extended-A, Greek and Cyrillic capitals are lower-cased (the script lower-cases all of
// Unicode).
std::string squad_normalize(std::string_view s);
double squad_f1(std::string_view prediction, std::string_view reference);
bool squad_exact(std::string_view prediction, std::string_view reference);

struct GenOptions {
    int64_t max_new = 50;    // MeZO's max_new_tokens for SQuAD / DROP
    int64_t max_len = 2048;  // prompts longer than max_len - max_new lose tokens from the left
    std::function<void(int64_t done, int64_t total)> progress;
};

struct GenMetrics {
    int64_t n = 0;
    double f1 = 0, exact = 0;  // means over docs, in [0, 1]
    std::vector<std::string> answers;
};
GenMetrics evaluate_gen_task(const Model& model, std::span<const GenDoc> docs,
                             const GenOptions& opt, ThreadPool& pool);
// The same with a tokenizer from elsewhere (a model exported for evaluation carries none).
GenMetrics evaluate_gen_task(const Model& model, const Tokenizer& tok, std::span<const GenDoc> docs,
                             const GenOptions& opt, ThreadPool& pool);

}  // namespace zqat
