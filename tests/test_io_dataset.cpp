// io/dataset: JSON-lines reading (real C4 demo and broken files), the GPTQ joins, the C4
// calibration/held-out split and calibration windows on the real data (shared/data), tokenized
// with the real model's tokenizer when ZQAT_MODEL is set, else the small SentencePiece test
// tokenizer (tests/data/tokenizer/spm.gguf; the synthetic model GGUFs carry no tokenizer).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "zqat/core/error.h"
#include "zqat/io/dataset.h"
#include "zqat/io/gguf.h"
#include "zqat/io/tokenizer.h"

using namespace zqat;
namespace fs = std::filesystem;

namespace {

const std::string kDataDir = ZQAT_SOURCE_DIR "/../shared/data";
const std::string kC4 = kDataDir + "/c4/c4_demo.jsonl";

std::string error_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return "<no error>";
}

// A file in a fresh temp folder, removed with the object.
struct TempFile {
    fs::path dir, path;
    explicit TempFile(const std::string& bytes) {
        dir = fs::temp_directory_path() /
              ("zqat_dataset_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
               "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir);
        path = dir / "t.jsonl";
        std::ofstream(path, std::ios::binary) << bytes;
    }
    ~TempFile() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

const Tokenizer& tokenizer() {
    static const Tokenizer tok = [] {
        const char* p = std::getenv("ZQAT_MODEL");
        if (p && fs::exists(p)) return Tokenizer::from_gguf(gguf::File::open(p));
        return Tokenizer::from_gguf(gguf::File::open(ZQAT_TEST_DATA "/tokenizer/spm.gguf"));
    }();
    return tok;
}

const std::vector<int32_t>& stream(const std::string& source) {
    static const std::vector<int32_t> wiki = calibration_stream(tokenizer(), "wikitext2", kDataDir);
    static const std::vector<int32_t> c4 = calibration_stream(tokenizer(), "c4", kDataDir);
    return source == "c4" ? c4 : wiki;
}

}  // namespace

TEST(Jsonl, RealC4Demo) {
    const auto docs = read_jsonl_texts(kC4);
    ASSERT_EQ(docs.size(), 300u);
    EXPECT_EQ(docs[0].rfind("Don\xE2\x80\x99t think you need all the bells", 0), 0u);
    for (const auto& d : docs) EXPECT_FALSE(d.empty());
}

TEST(Jsonl, EmptyLinesSkippedOtherFields) {
    TempFile f(
        "{\"text\": \"a\", \"x\": 1}\n\n   \n{\"text\": \"b\\nc\"}\r\n{\"q\": \"z\", \"text\": "
        "\"\"}");
    EXPECT_EQ(read_jsonl_texts(f.path.string()), (std::vector<std::string>{"a", "b\nc", ""}));
}

TEST(Jsonl, Errors) {
    {
        const std::string l1 = "{\"text\": \"a\"}\n", l2 = "{\"text\": \"b\"}\n";
        TempFile f(l1 + l2 + "{\"text\": \"c\n{\"text\": \"d\"}\n");
        const std::string m = error_of([&] { read_jsonl_texts(f.path.string()); });
        EXPECT_NE(m.find("[data]"), std::string::npos) << m;
        EXPECT_NE(m.find(f.path.string()), std::string::npos) << m;
        EXPECT_NE(m.find("line 3"), std::string::npos) << m;
        EXPECT_NE(m.find("byte offset " + std::to_string(l1.size() + l2.size())), std::string::npos)
            << m;
    }
    {
        TempFile f("{\"text\": \"a\"}\n{\"body\": \"b\"}\n");
        const std::string m = error_of([&] { read_jsonl_texts(f.path.string()); });
        EXPECT_NE(m.find("line 2"), std::string::npos) << m;
        EXPECT_NE(m.find("no field 'text'"), std::string::npos) << m;
    }
    {
        TempFile f("{\"text\": 5}\n");
        const std::string m = error_of([&] { read_jsonl_texts(f.path.string()); });
        EXPECT_NE(m.find("line 1 (byte offset 0)"), std::string::npos) << m;
        EXPECT_NE(m.find("expected a string"), std::string::npos) << m;
    }
    {
        TempFile f("[\"text\"]\n");
        const std::string m = error_of([&] { read_jsonl_texts(f.path.string()); });
        EXPECT_NE(m.find("expected a JSON object"), std::string::npos) << m;
    }
    const std::string m = error_of([] { read_jsonl_texts("/nonexistent/x.jsonl"); });
    EXPECT_NE(m.find("/nonexistent/x.jsonl"), std::string::npos) << m;
}

TEST(Jsonl, OtherFieldMissing) {
    TempFile f("{\"text\": \"a\", \"q\": \"z\"}\n{\"text\": \"b\"}\n");
    EXPECT_THROW(read_jsonl_texts(f.path.string(), "q"), Error);
}

TEST(Joins, ParagraphsAndGptqLines) {
    EXPECT_EQ(join_paragraphs({}), "");
    EXPECT_EQ(join_paragraphs({"a"}), "a");
    EXPECT_EQ(join_paragraphs({"a", "", "b c"}), "a\n\n\n\nb c");
    EXPECT_EQ(join_lines_gptq(" a \n b \n"), " a \n\n\n b \n");
    EXPECT_EQ(join_lines_gptq("x"), "x\n");
    EXPECT_EQ(join_lines_gptq(""), "");
    EXPECT_EQ(join_lines_gptq("\n"), "\n");
}

TEST(C4Split, HalvesAreDisjointAndCover) {
    const auto docs = read_jsonl_texts(kC4);
    const auto calib = c4_split(docs, false), held = c4_split(docs, true);
    ASSERT_EQ(calib.size(), 150u);
    ASSERT_EQ(held.size(), 150u);
    for (size_t i = 0; i < 150; ++i) {
        EXPECT_EQ(calib[i], docs[i]);
        EXPECT_EQ(held[i], docs[150 + i]);
    }
    const std::vector<std::string> odd = {"a", "b", "c", "d", "e"};
    EXPECT_EQ(c4_split(odd, false), (std::vector<std::string>{"a", "b"}));
    EXPECT_EQ(c4_split(odd, true), (std::vector<std::string>{"c", "d", "e"}));
    EXPECT_TRUE(c4_split({}, true).empty());
}

TEST(Calibration, CountsLengthsAndDocumentedDraw) {
    CalibOptions o;
    o.nsamples = 9;
    o.ctx = 128;
    o.seed = 7;
    o.data_dir = kDataDir;
    const auto win = calibration_windows(tokenizer(), o);
    ASSERT_EQ(win.size(), 9u);  // 5 WikiText-2 (first source gets the remainder), then 4 C4
    for (const auto& w : win) EXPECT_EQ(w.size(), 128u);
    for (size_t src = 0; src < 2; ++src) {
        const auto& s = stream(src == 0 ? "wikitext2" : "c4");
        ASSERT_GT(s.size(), 10000u);
        std::mt19937_64 rng(o.seed ^ (0x9E3779B97F4A7C15ull * (src + 1)));
        const size_t first = src == 0 ? 0 : 5, count = src == 0 ? 5 : 4;
        for (size_t k = 0; k < count; ++k) {
            const size_t start = size_t(rng() % (s.size() - 128));
            const std::vector<int32_t> want(s.begin() + ptrdiff_t(start),
                                            s.begin() + ptrdiff_t(start + 128));
            EXPECT_EQ(win[first + k], want) << "source " << src << " window " << k;
        }
    }
}

TEST(Calibration, DeterministicSeedsDifferSourcesSelectable) {
    CalibOptions o;
    o.nsamples = 6;
    o.ctx = 64;
    o.data_dir = kDataDir;
    const auto a = calibration_windows(tokenizer(), o), b = calibration_windows(tokenizer(), o);
    EXPECT_EQ(a, b);
    o.seed = 1;
    const auto c = calibration_windows(tokenizer(), o);
    ASSERT_EQ(c.size(), 6u);
    EXPECT_NE(a, c);
    for (size_t i = 0; i < 6; ++i) EXPECT_NE(a[i], c[i]) << i;

    o.sources = {"c4"};
    o.nsamples = 3;
    const auto d = calibration_windows(tokenizer(), o);
    ASSERT_EQ(d.size(), 3u);
    const auto& s = stream("c4");
    for (const auto& w : d)  // a contiguous slice of the C4 calibration stream
        EXPECT_NE(std::search(s.begin(), s.end(), w.begin(), w.end()), s.end());
    // The default 128 x 2048 fits both sources.
    CalibOptions def;
    def.data_dir = kDataDir;
    const auto full = calibration_windows(tokenizer(), def);
    EXPECT_EQ(full.size(), 128u);
    EXPECT_EQ(full[127].size(), 2048u);
}

TEST(Calibration, Errors) {
    CalibOptions o;
    o.data_dir = kDataDir;
    o.nsamples = 2;
    o.ctx = 100000000;
    std::string m = error_of([&] { calibration_windows(tokenizer(), o); });
    EXPECT_NE(m.find("too short"), std::string::npos) << m;
    EXPECT_NE(m.find("wikitext2"), std::string::npos) << m;
    EXPECT_NE(m.find("100000001"), std::string::npos) << m;

    o.ctx = 16;
    o.sources = {"c4", "pile"};
    m = error_of([&] { calibration_windows(tokenizer(), o); });
    EXPECT_NE(m.find("unknown calibration source 'pile'"), std::string::npos) << m;

    o.sources = {"wikitext2"};
    o.nsamples = 0;
    m = error_of([&] { calibration_windows(tokenizer(), o); });
    EXPECT_NE(m.find("nsamples"), std::string::npos) << m;

    o.nsamples = 1;
    o.data_dir = "/nonexistent/data";
    m = error_of([&] { calibration_windows(tokenizer(), o); });
    EXPECT_NE(m.find("/nonexistent/data/wikitext-2/valid.txt"), std::string::npos) << m;
    o.sources = {"c4"};
    m = error_of([&] { calibration_windows(tokenizer(), o); });
    EXPECT_NE(m.find("/nonexistent/data/c4/c4_demo.jsonl"), std::string::npos) << m;
}
