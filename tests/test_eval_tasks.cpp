// eval/tasks and eval/scoring: the readers on small hand-written files (prompts, labels, the
// errors for malformed lines), every real task file of shared/data (counts from its MANIFEST.md),
// the fine-tuning splits, the choice metrics and the SQuAD F1 / exact match on hand-computed cases,
// lm-eval's pair encoding, and batched log-likelihood scoring against one-request-at-a-time
// forwards on the synthetic Llama.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <numeric>

#include "zqat/core/error.h"
#include "zqat/core/thread_pool.h"
#include "zqat/eval/scoring.h"
#include "zqat/eval/tasks.h"
#include "zqat/io/tokenizer.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"

using namespace zqat;
namespace fs = std::filesystem;

namespace {

const std::string kDataDir = ZQAT_SOURCE_DIR "/../shared/data";

std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "<no error>";
}

// Files in a fresh temp folder, removed with the object.
struct TempDir {
    fs::path dir;
    TempDir() {
        dir = fs::temp_directory_path() /
              ("zqat_tasks_" +
               std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
        fs::create_directories(dir);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    std::string write(const std::string& name, const std::string& bytes) const {
        const fs::path p = dir / name;
        std::ofstream(p, std::ios::binary) << bytes;
        return p.string();
    }
};

}  // namespace

TEST(Tasks, PiqaPromptAndLabels) {
    TempDir t;
    const auto q =
        t.write("v.jsonl", R"({"goal": "Open a jar", "sol1": "twist it", "sol2": "eat it"})"
                           "\n"
                           R"({"goal": "g2", "sol1": "a", "sol2": "bb"})"
                           "\n");
    const auto l = t.write("l.lst", "1\n0\n");
    const auto docs = read_piqa(q, l);
    ASSERT_EQ(docs.size(), 2u);
    EXPECT_EQ(docs[0].gold, 1);
    EXPECT_EQ(docs[1].gold, 0);
    ASSERT_EQ(docs[0].options.size(), 2u);
    EXPECT_EQ(docs[0].options[0].context, "Question: Open a jar\nAnswer:");
    EXPECT_EQ(docs[0].options[0].continuation, " twist it");
    EXPECT_EQ(docs[0].options[0].norm_chars, 8);  // "twist it", without the delimiter
    EXPECT_EQ(docs[1].options[1].norm_chars, 2);
    // One label too few; a bad label; a broken line (second line starts at byte 62).
    const auto l1 = t.write("l1.lst", "1\n");
    EXPECT_NE(error_of([&] { read_piqa(q, l1); }).find("more questions than labels"),
              std::string::npos);
    const auto l2 = t.write("l2.lst", "1\n2\n");
    EXPECT_NE(error_of([&] { read_piqa(q, l2); }).find("l2.lst: line 2 (byte offset 2)"),
              std::string::npos);
    const auto bad = t.write("b.jsonl", R"({"goal": "Open a jar", "sol1": "twist it", "sol2": "x"})"
                                        "\n{\"goal\": 3}\n");
    const std::string e = error_of([&] { read_piqa(bad, l); });
    EXPECT_NE(e.find("b.jsonl: line 2 (byte offset 56)"), std::string::npos) << e;
    EXPECT_NE(e.find("'goal'"), std::string::npos) << e;
    const auto broken = t.write("c.jsonl", "{\"goal\": \n");
    EXPECT_NE(
        error_of([&] { read_piqa(broken, l); }).find("line 1 (byte offset 0): not valid JSON"),
        std::string::npos);
}

TEST(Tasks, ArcHellaswagWinograndePrompts) {
    TempDir t;
    const auto arc =
        t.write("a.jsonl", R"({"query": "Question: Why?", "choices": ["A b", "C"], "gold": 1})"
                           "\n");
    const auto a = read_arc_icl(arc);
    ASSERT_EQ(a.size(), 1u);
    EXPECT_EQ(a[0].options[1].context, "Question: Why?\nAnswer:");
    EXPECT_EQ(a[0].options[1].continuation, " C");
    EXPECT_EQ(a[0].gold, 1);
    const auto arc_u = t.write("u.jsonl",
                               "{\"query\": \"Question: T?\", \"choices\": [\"32\u00b0 F\", "
                               "\"x\"], \"gold\": 0}\n");
    EXPECT_EQ(read_arc_icl(arc_u)[0].options[0].norm_chars, 5);  // code points, as Python len
    const auto arc_bad =
        t.write("b.jsonl", R"({"query": "Question: Why?", "choices": ["A b", "C"], "gold": 2})"
                           "\n");
    EXPECT_NE(error_of([&] { read_arc_icl(arc_bad); }).find("gold answer 2 is not a choice index"),
              std::string::npos);

    const auto hs = t.write(
        "h.txt", "Roof: A man [title] is on a roof. he\n2\nend one.\n end  two \nx [step] y\nz\n");
    const auto h = read_hellaswag_txt(hs);
    ASSERT_EQ(h.size(), 1u);
    EXPECT_EQ(h[0].gold, 2);
    EXPECT_EQ(h[0].options[0].context, "Roof: A man. is on a roof. he");
    EXPECT_EQ(h[0].options[1].continuation, " end two");
    EXPECT_EQ(h[0].options[2].continuation, " x y");
    EXPECT_EQ(h[0].options[2].norm_chars, 3);
    const auto hs_bad = t.write("h2.txt", "ctx\n2\na\nb\nc\n");
    EXPECT_NE(error_of([&] { read_hellaswag_txt(hs_bad); }).find("5 lines, expected 6 per task"),
              std::string::npos);
    const auto hs_label = t.write("h3.txt", "ctx\n7\na\nb\nc\nd\n");
    EXPECT_NE(error_of([&] { read_hellaswag_txt(hs_label); }).find("line 2 (byte offset 4)"),
              std::string::npos);

    const auto wg =
        t.write("w.jsonl", R"({"context_options": ["Ann beat Bo so Ann", "Ann beat Bo so Bo"], )"
                           R"("continuation": "was sad. ", "gold": 1})"
                           "\n");
    const auto w = read_winogrande_icl(wg);
    ASSERT_EQ(w.size(), 1u);
    EXPECT_EQ(w[0].options[0].context, "Ann beat Bo so Ann");
    EXPECT_EQ(w[0].options[1].context, "Ann beat Bo so Bo");
    EXPECT_EQ(w[0].options[0].continuation, " was sad.");
    EXPECT_EQ(w[0].options[1].continuation, " was sad.");
    EXPECT_EQ(w[0].gold, 1);
}

TEST(Tasks, LabelWordPrompts) {
    TempDir t;
    const auto sst = t.write("s.tsv", "text\tlabel\nit 's fine . \t1\nbad\t0\n");
    const auto s = read_sst2_tsv(sst);
    ASSERT_EQ(s.size(), 2u);
    EXPECT_EQ(s[0].options[0].context, "it 's fine . It was");
    EXPECT_EQ(s[0].options[0].continuation, " terrible");
    EXPECT_EQ(s[0].options[1].continuation, " great");
    EXPECT_EQ(s[0].gold, 1);
    EXPECT_EQ(s[1].gold, 0);
    const auto sst_bad = t.write("s2.tsv", "text\tlabel\nok\tmaybe\n");
    EXPECT_NE(error_of([&] { read_sst2_tsv(sst_bad); }).find("line 2 (byte offset 11)"),
              std::string::npos);

    const auto cb =
        t.write("c.jsonl", R"({"premise": "P.", "hypothesis": "H", "label": "neutral", "idx": 0})"
                           "\n");
    const auto c = read_cb_jsonl(cb);
    ASSERT_EQ(c.size(), 1u);
    EXPECT_EQ(c[0].options[2].context, "Suppose P. Can we infer that \"H\"? Yes, No, or Maybe?\n");
    EXPECT_EQ(c[0].options[2].continuation, "Maybe");
    EXPECT_EQ(c[0].gold, 2);
    const auto cb_bad =
        t.write("c2.jsonl", R"({"premise": "P.", "hypothesis": "H", "label": "yes"})"
                            "\n");
    EXPECT_NE(error_of([&] { read_cb_jsonl(cb_bad); }).find("label 'yes'"), std::string::npos);

    const auto bq =
        t.write("b.jsonl", R"({"question": "is it so", "passage": "Text.", "label": false})"
                           "\n");
    const auto b = read_boolq_jsonl(bq);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_EQ(b[0].options[1].context, "Text. Is it so?\n");  // MeZO's BoolQTemplateV3
    EXPECT_EQ(b[0].options[0].continuation, "No");
    EXPECT_EQ(b[0].options[1].continuation, "Yes");
    EXPECT_EQ(b[0].gold, 0);
}

TEST(Tasks, GenerationAndInstructionReaders) {
    TempDir t;
    const auto sq = t.write("s.json", R"({"data": [{"title": "T", "paragraphs": [{"context": "C.",
        "qas": [{"id": "1", "question": " Q? ", "answers": [{"text": "A"}, {"text": "a"}]},
                {"id": "2", "question": "X", "answers": [], "is_impossible": true}]}]}]})");
    const auto s = read_squad_json(sq);
    ASSERT_EQ(s.size(), 1u);
    EXPECT_EQ(s[0].prompt, "Title: T\nContext: C.\nQuestion: Q?\nAnswer:");
    EXPECT_EQ(s[0].answers, (std::vector<std::string>{"A", "a"}));
    EXPECT_EQ(read_squad_json(sq, /*answerable_only=*/false).size(), 2u);
    const auto sq_bad =
        t.write("s2.json", R"({"data": [{"title": "T", "paragraphs": [{"context": "C.",
        "qas": [{"id": "1", "question": "Q", "answers": [{"txt": "A"}]}]}]}]})");
    EXPECT_NE(error_of([&] {
                  read_squad_json(sq_bad);
              }).find("data[0].paragraphs[0].qas[0].answers[0]: no field 'text'"),
              std::string::npos);
    // A number out of double's range is a parse error of its own kind (found by fuzz_tasks).
    const auto sq_huge = t.write("s4.json", "{\"data\": 1e999}");
    EXPECT_NE(error_of([&] { read_squad_json(sq_huge); }).find("s4.json: not valid JSON"),
              std::string::npos);
    const auto sq_broken = t.write("s3.json", "{\"data\": [\n  {\"title\": }\n]}");
    EXPECT_NE(error_of([&] { read_squad_json(sq_broken); }).find("s3.json: line 2"),
              std::string::npos);

    const auto dr = t.write("d.json", R"({"p1": {"passage": "P.", "qa_pairs": [
        {"question": "How many?", "query_id": "q1", "answer": {"number": "3", "date": {"day": "",
         "month": "", "year": ""}, "spans": []}},
        {"question": "Who?", "query_id": "q2", "answer": {"number": "", "date": {"day": "",
         "month": "", "year": ""}, "spans": ["Ann", "Bo"]}}]}})");
    const auto dr2 = t.write("d2.json", R"({"z": {"passage": "P.", "qa_pairs": [
        {"question": "When?", "query_id": "q3", "answer": {"number": "", "date": {"day": "4",
         "month": "July", "year": "1776"}, "spans": []}, "validated_answers": [{"number": "",
         "date": {"day": "", "month": "July", "year": "1776"}, "spans": []}]}]},
        "a": {"passage": "Q.", "qa_pairs": [{"question": "X", "query_id": "q4", "answer":
         {"number": "1", "spans": []}}]}})");
    const auto d2 = read_drop_json(dr2);
    ASSERT_EQ(d2.size(), 2u);
    EXPECT_EQ(d2[0].id, "q3");  // file order, not key order
    EXPECT_EQ(d2[0].answers, (std::vector<std::string>{"4 July 1776", "July 1776"}));
    const auto dr3 = t.write("d3.json", R"({"z": {"passage": "P.", "qa_pairs": [
        {"question": "Q", "query_id": "q", "answer": {"number": "1", "spans": []},
         "validated_answers": [{"number": 2, "spans": []}]}]}})");
    EXPECT_NE(error_of([&] {
                  read_drop_json(dr3);
              }).find("qa_pairs[0].validated_answers[0]: field 'number' is a number"),
              std::string::npos);
    const auto d = read_drop_json(dr);
    ASSERT_EQ(d.size(), 2u);
    EXPECT_EQ(d[0].prompt, "Passage: P.\nQuestion: How many?\nAnswer:");
    EXPECT_EQ(d[0].answers, (std::vector<std::string>{"3"}));
    EXPECT_EQ(d[1].answers, (std::vector<std::string>{"Ann", "Bo"}));

    const auto al = t.write("a.json", R"([{"instruction": "Say hi.", "input": "", "output": "Hi."},
        {"instruction": "Add.", "input": "1 2", "output": "3"}])");
    const auto a = read_alpaca_json(al);
    ASSERT_EQ(a.size(), 2u);
    EXPECT_TRUE(a[0].prompt.ends_with("### Instruction:\nSay hi.\n\n### Response:\n"));
    EXPECT_TRUE(a[1].prompt.ends_with("### Input:\n1 2\n\n### Response:\n"));
    EXPECT_EQ(a[1].response, "3");
}

TEST(Tasks, RealFilesHaveTheManifestCounts) {
    if (!fs::exists(kDataDir + "/tasks")) GTEST_SKIP() << "no " << kDataDir << "/tasks";
    const std::vector<std::pair<std::string, size_t>> counts = {
        {"piqa", 1838},      {"arc_easy", 2376},   {"arc_challenge", 1172},
        {"hellaswag", 1000}, {"winogrande", 1267}, {"sst2", 872},
        {"cb", 56},          {"boolq", 3270}};
    for (const auto& [name, n] : counts) {
        const ChoiceTask t = load_choice_task(name, kDataDir);
        EXPECT_EQ(t.docs.size(), n) << name;
        for (const auto& d : t.docs) {
            ASSERT_GE(d.options.size(), 2u) << name;
            ASSERT_LT(size_t(d.gold), d.options.size()) << name;
        }
    }
    // SST-2: 444 positive (MANIFEST); CB: 23 entailment, 28 contradiction, 5 neutral.
    const ChoiceTask sst = load_choice_task("sst2", kDataDir);
    EXPECT_EQ(std::count_if(sst.docs.begin(), sst.docs.end(), [](auto& d) { return d.gold == 1; }),
              444);
    const ChoiceTask cb = load_choice_task("cb", kDataDir);
    EXPECT_EQ(std::count_if(cb.docs.begin(), cb.docs.end(), [](auto& d) { return d.gold == 2; }),
              5);
    EXPECT_EQ(load_gen_task("squad", kDataDir).size(), 293u);  // the answerable (v1.1) questions
    EXPECT_EQ(load_gen_task("drop", kDataDir).size(), 19u);
    EXPECT_EQ(load_alpaca(kDataDir).size(), 999u);
    EXPECT_EQ(load_choice_task("piqa", kDataDir, 10).docs.size(), 10u);
    EXPECT_NE(
        error_of([] { load_choice_task("mmlu", kDataDir); }).find("unknown choice task 'mmlu'"),
        std::string::npos);
    EXPECT_NE(error_of([] {
                  load_choice_task("piqa", "/nonexistent");
              }).find("/nonexistent/tasks/piqa/valid-labels.lst: no such file"),
              std::string::npos);
}

// The fine-tuning splits (tasks.h): sizes capped by the file, a test set that no seed moves and
// that a smaller n_test takes a prefix of, train and validation redrawn by the seed, no document
// in two splits.
TEST(Tasks, SplitsFixTheTestSetAndDrawTheRestBySeed) {
    if (!fs::exists(kDataDir + "/tasks")) GTEST_SKIP() << "no " << kDataDir << "/tasks";
    auto ids = [](const std::vector<GenDoc>& v) {
        std::vector<std::string> out;
        for (const auto& d : v) out.push_back(d.id);
        return out;
    };
    const Splits<GenDoc> a = gen_splits("squad", kDataDir, 0), b = gen_splits("squad", kDataDir, 1);
    EXPECT_EQ(a.test.size(), 97u);    // 293 / 3
    EXPECT_EQ(a.val.size(), 49u);     // (293 - 97) / 4
    EXPECT_EQ(a.train.size(), 147u);  // the rest
    EXPECT_EQ(ids(a.test), ids(b.test));
    EXPECT_NE(ids(a.train), ids(b.train));
    std::vector<std::string> all = ids(a.train);
    for (const auto* v : {&a.val, &a.test}) {
        const auto more = ids(*v);
        all.insert(all.end(), more.begin(), more.end());
    }
    std::sort(all.begin(), all.end());
    EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end()) << "a question in two splits";
    const Splits<GenDoc> small = gen_splits("squad", kDataDir, 0, 5, 3, 10);
    EXPECT_EQ(small.train.size(), 5u);
    EXPECT_EQ(small.val.size(), 3u);
    const auto head = ids(a.test);
    EXPECT_EQ(ids(small.test), std::vector<std::string>(head.begin(), head.begin() + 10));

    const Splits<InstructDoc> al = alpaca_splits(kDataDir, 0);
    EXPECT_EQ(al.test.size(), 333u);
    EXPECT_EQ(al.val.size(), 166u);
    EXPECT_EQ(al.train.size(), 500u);
    EXPECT_EQ(choice_splits("sst2", kDataDir, 3, 1000, 500, 1000).test.size(), 290u);
    EXPECT_NE(error_of([] { gen_splits("squad", kDataDir, 0, 0); }).find("must be positive"),
              std::string::npos);
    EXPECT_NE(error_of([] { gen_splits("mmlu", kDataDir, 0); }).find("unknown generation task"),
              std::string::npos);
}

TEST(Scoring, ChoiceMetricsByHand) {
    // Doc 0: gold 1. ll = (-2, -3): acc picks 0; per byte (-2/1, -3/6 = -0.5) acc_norm picks 1.
    // Doc 1: gold 0, a tie (-1, -1, -4): both pick the first, 0.
    // Doc 2: gold 2. ll = (-5, -4, -1): both pick 2.
    std::vector<ChoiceDoc> docs(3);
    docs[0].options = {{"c", " a", 1}, {"c", " bbbbbb", 6}};
    docs[0].gold = 1;
    docs[1].options = {{"c", " a", 2}, {"c", " b", 2}, {"c", " c", 2}};
    docs[1].gold = 0;
    docs[2].options = {{"c", " a", 1}, {"c", " b", 1}, {"c", " c", 1}};
    docs[2].gold = 2;
    const std::vector<double> ll = {-2, -3, -1, -1, -4, -5, -4, -1};
    // Tokens per option: doc 0 (1, 6): per token (-2, -0.5) picks 1; doc 1 (1, 2, 1):
    // (-1, -0.5, -4) picks 1; doc 2 (5, 4, 1): (-1, -1, -1), a tie, picks 0.
    const std::vector<int64_t> n_tok = {1, 6, 1, 2, 1, 5, 4, 1};
    const ChoiceMetrics m = choice_metrics(docs, ll, n_tok);
    EXPECT_EQ(m.pred_tok, (std::vector<int>{1, 1, 0}));
    EXPECT_DOUBLE_EQ(m.acc_tok, 1.0 / 3.0);
    EXPECT_EQ(m.n, 3);
    EXPECT_EQ(m.pred, (std::vector<int>{0, 0, 2}));
    EXPECT_EQ(m.pred_norm, (std::vector<int>{1, 0, 2}));
    EXPECT_DOUBLE_EQ(m.acc, 2.0 / 3.0);
    EXPECT_DOUBLE_EQ(m.acc_norm, 1.0);
    EXPECT_DOUBLE_EQ(m.acc_stderr, std::sqrt((2.0 / 3) * (1.0 / 3) / 2));
    EXPECT_DOUBLE_EQ(m.acc_norm_stderr, 0.0);
}

TEST(Scoring, SquadF1AndExactMatchAsTheOfficialScript) {
    // Values worked by hand from the v1.1 evaluate script's definitions.
    EXPECT_EQ(squad_normalize("The  Cat's hat!"), "cats hat");
    EXPECT_EQ(squad_normalize("an apple, a pear and THE plum"), "apple pear and plum");
    EXPECT_EQ(squad_normalize("theatre anthem"), "theatre anthem");  // articles only as words
    EXPECT_EQ(squad_normalize("the-end"), "theend");                 // punctuation goes first
    EXPECT_EQ(squad_normalize("  "), "");
    EXPECT_TRUE(squad_exact("Denver Broncos", "the denver broncos."));
    EXPECT_FALSE(squad_exact("Norman", "Normans"));
    EXPECT_DOUBLE_EQ(squad_f1("the cat sat", "a cat sat down"), 0.8);  // P 1, R 2/3
    EXPECT_DOUBLE_EQ(squad_f1("cat cat", "cat"), 2 * 0.5 * 1 / 1.5);   // counts clip: P 1/2
    EXPECT_DOUBLE_EQ(squad_f1("dog", "cat"), 0.0);
    EXPECT_DOUBLE_EQ(squad_f1("", ""), 0.0);                // v1.1: no common token scores 0
    EXPECT_DOUBLE_EQ(squad_f1("in 1066 AD", "1066"), 0.5);  // P 1/3, R 1
    // UTF-8: a no-break space splits words, curly quotes and dashes are not word characters
    // (so an article after them goes), capitals outside ASCII are lower-cased.
    EXPECT_EQ(squad_normalize("10\u00a0km"), "10 km");
    EXPECT_EQ(squad_normalize("\u201cthe end\u201d"), "\u201c end\u201d");
    EXPECT_EQ(squad_normalize("war\u2014the peace"), "war\u2014 peace");
    EXPECT_TRUE(squad_exact("\u00c9cole Normale", "\u00e9cole normale"));
    EXPECT_EQ(squad_normalize("caf\u00e9 a"), "caf\u00e9");  // e-acute is a word character
}

TEST(Scoring, EncodePairMovesTrailingSpaceAndKeepsMerges) {
    const Tokenizer tok =
        Tokenizer::from_hf_json(ZQAT_TEST_DATA "/tokenizer/hf_llama3/tokenizer.json");
    const LoglikRequest a = encode_pair(tok, "Question: why\nAnswer:", " because");
    const LoglikRequest b = encode_pair(tok, "Question: why\nAnswer: ", "because");
    EXPECT_EQ(a.context, b.context);
    EXPECT_EQ(a.continuation, b.continuation);
    EXPECT_EQ(a.context, tok.encode("Question: why\nAnswer:", false));
    std::vector<int32_t> whole = a.context;
    whole.insert(whole.end(), a.continuation.begin(), a.continuation.end());
    EXPECT_EQ(whole, tok.encode("Question: why\nAnswer: because", false));
    EXPECT_NE(error_of([&] { encode_pair(tok, "abc", ""); }).find("no tokens"), std::string::npos);
}

TEST(Scoring, BatchedLoglikEqualsOneRequestAtATime) {
    Model m = Model::load(ZQAT_TEST_DATA "/synthetic/llama.gguf");
    const int32_t V = int32_t(m.cfg.n_vocab);
    std::vector<LoglikRequest> reqs;
    uint32_t x = 12345;
    auto next = [&] { return int32_t((x = x * 1103515245u + 12345u) >> 16) % V; };
    for (int i = 0; i < 23; ++i) {  // lengths 2..70, continuation 1..9 tokens
        LoglikRequest r;
        for (int k = 0; k < 1 + (i * 7) % 61; ++k) r.context.push_back(next());
        for (int k = 0; k < 1 + i % 9; ++k) r.continuation.push_back(next());
        reqs.push_back(r);
    }
    ThreadPool pool1(1), pool2(2);
    // Reference: each request alone in a forward of exactly its length.
    std::vector<double> ref;
    for (const auto& r : reqs) {
        std::vector<int32_t> s = r.context;
        s.insert(s.end(), r.continuation.begin(), r.continuation.end());
        const int64_t L = int64_t(s.size());
        Forward f(m, 1, L, pool1);
        std::vector<float> nll(size_t(L - 1));
        f.nll(s.data(), nll.data());
        double sum = 0;
        for (int64_t t = int64_t(r.context.size()); t < L; ++t) sum += nll[size_t(t - 1)];
        ref.push_back(-sum);
    }
    for (const int64_t bt : {16, 100, 4096}) {
        ScoreOptions opt;
        opt.batch_tokens = bt;
        int64_t calls = 0;
        opt.progress = [&](int64_t done, int64_t total) {
            ++calls;
            EXPECT_LE(done, total);
        };
        const auto got1 = loglikelihoods(m, reqs, opt, pool1);
        const auto got2 = loglikelihoods(m, reqs, opt, pool2);
        EXPECT_EQ(got1, got2) << "thread count changed a score, batch_tokens " << bt;
        // Bit for bit: a row's forward does not depend on the other rows, the padding after it
        // or the planned length, and sums run in position order.
        EXPECT_EQ(got1, ref) << "batch_tokens " << bt;
        EXPECT_GE(calls, 1);
    }
    // Left truncation: max_len 8 scores the last 8 tokens of each sequence.
    ScoreOptions opt;
    opt.max_len = 8;
    const auto trunc = loglikelihoods(m, std::span(reqs).first(6), opt, pool1);
    for (size_t i = 0; i < 6; ++i) {
        std::vector<int32_t> s = reqs[i].context;
        s.insert(s.end(), reqs[i].continuation.begin(), reqs[i].continuation.end());
        LoglikRequest r;
        const size_t L = std::min<size_t>(8, s.size());
        const size_t C = reqs[i].continuation.size();
        r.context.assign(s.end() - std::ptrdiff_t(L), s.end() - std::ptrdiff_t(C));
        r.continuation = reqs[i].continuation;
        ScoreOptions o2;
        EXPECT_EQ(trunc[i], loglikelihoods(m, std::span(&r, 1), o2, pool1)[0]) << i;
    }
    LoglikRequest too_long;
    too_long.context = {1};
    too_long.continuation.assign(8, 2);
    EXPECT_NE(error_of([&] {
                  loglikelihoods(m, std::span(&too_long, 1), opt, pool1);
              }).find("leaves no context"),
              std::string::npos);
}
