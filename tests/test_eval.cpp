#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <numeric>
#include <random>

#include "zqat/core/error.h"
#include "zqat/core/thread_pool.h"
#include "zqat/eval/generate.h"
#include "zqat/eval/perplexity.h"
#include "zqat/model/forward.h"
#include "zqat/model/model.h"

using namespace zqat;

TEST(PplText, GptqJoinsRowsWithBlankLines) {
    EXPECT_EQ(ppl_text(" a \n b \n", PplProtocol::gptq), " a \n\n\n b \n");
    EXPECT_EQ(ppl_text("x", PplProtocol::gptq), "x\n");
    EXPECT_EQ(ppl_text(" a \n b \n", PplProtocol::llamacpp), " a \n b \n");
    EXPECT_THROW(parse_ppl_protocol("wikitext"), Error);
}

TEST(Sample, GreedyIsArgmaxLowestIdOnTies) {
    std::mt19937_64 rng(1);
    SampleOptions greedy;
    const std::vector<float> logits = {0.f, 3.f, 1.f, 3.f};
    EXPECT_EQ(sample_token(logits, greedy, rng), 1);
}

TEST(Sample, TopKOneIsGreedyAndSeedsReproduce) {
    const std::vector<float> logits = {0.1f, 0.3f, 2.f, -1.f, 1.9f};
    SampleOptions o;
    o.temperature = 1.f;
    o.top_k = 1;
    std::mt19937_64 rng(7);
    for (int i = 0; i < 20; ++i) EXPECT_EQ(sample_token(logits, o, rng), 2);
    o.top_k = 0;
    o.top_p = 1.f;
    std::mt19937_64 a(42), b(42);
    std::vector<int> counts(5, 0);
    for (int i = 0; i < 2000; ++i) {
        const int32_t x = sample_token(logits, o, a);
        EXPECT_EQ(x, sample_token(logits, o, b));
        counts[size_t(x)]++;
    }
    // Softmax mass of token 2 is ~0.45: it must be sampled about that often.
    EXPECT_NEAR(counts[2] / 2000.0, 0.45, 0.05);
}

TEST(Sample, TopPKeepsSmallestNucleus) {
    const std::vector<float> logits = {5.f, 0.f, 0.f, 0.f};  // token 0 has ~98% of the mass
    SampleOptions o;
    o.temperature = 1.f;
    o.top_k = 0;
    o.top_p = 0.9f;
    std::mt19937_64 rng(3);
    for (int i = 0; i < 50; ++i) EXPECT_EQ(sample_token(logits, o, rng), 0);
}

// The windowing of both protocols, checked against Forward::nll on a synthetic model.
TEST(Perplexity, ProtocolsScoreTheDocumentedPositions) {
    const std::string dir = std::string(ZQAT_TEST_DATA) + "/synthetic/llama";
    ASSERT_TRUE(std::filesystem::exists(dir)) << dir;
    const Model m = Model::load(dir);
    ThreadPool pool(2);
    const int64_t T = 8, n_tok = 3 * T + 5;  // 3 full windows and a remainder that is ignored
    std::vector<int32_t> tokens(static_cast<size_t>(n_tok));
    std::mt19937 rng(5);
    for (auto& t : tokens) t = int32_t(rng() % uint32_t(m.cfg.n_vocab));

    Forward fwd(m, 1, T, pool);
    std::vector<float> nll(size_t(T - 1));
    double all = 0, second_half = 0;
    for (int w = 0; w < 3; ++w) {
        fwd.nll(tokens.data() + w * T, nll.data());
        for (int64_t t = 1; t < T; ++t) {
            all += nll[size_t(t - 1)];
            if (t >= T / 2 + 1) second_half += nll[size_t(t - 1)];
        }
    }
    PplOptions o;
    o.ctx = T;
    o.batch = 2;  // a short last batch must not change anything
    const PplResult g = perplexity(m, tokens, o, pool);
    EXPECT_EQ(g.windows, 3);
    EXPECT_EQ(g.tokens, 3 * (T - 1));
    EXPECT_DOUBLE_EQ(g.nll, all / double(3 * (T - 1)));
    o.protocol = PplProtocol::llamacpp;
    const PplResult l = perplexity(m, tokens, o, pool);
    EXPECT_EQ(l.tokens, 3 * (T - 1 - T / 2));
    EXPECT_DOUBLE_EQ(l.nll, second_half / double(l.tokens));
    o.limit_windows = 1;
    EXPECT_EQ(perplexity(m, tokens, o, pool).windows, 1);
    o.ctx = n_tok + 1;
    EXPECT_THROW(perplexity(m, tokens, o, pool), Error);
}
