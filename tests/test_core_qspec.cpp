// QSpec: parse/str round trips, every malformed spelling is an Error naming the string, group_for.
#include <gtest/gtest.h>

#include <string>

#include "zqat/core/error.h"
#include "zqat/core/qspec.h"

namespace zqat {
namespace {

TEST(QSpec, ParsesTheMethodSpellings) {
    const QSpec a = QSpec::parse("W4A4");
    EXPECT_EQ(a.w_bits, 4);
    EXPECT_EQ(a.a_bits, 4);
    EXPECT_EQ(a.group, 0);
    EXPECT_FALSE(a.sym);
    EXPECT_TRUE(a.quant_weights());
    EXPECT_TRUE(a.quant_acts());

    const QSpec b = QSpec::parse("W4A16g128");
    EXPECT_EQ(b.w_bits, 4);
    EXPECT_EQ(b.a_bits, 16);
    EXPECT_EQ(b.group, 128);
    EXPECT_FALSE(b.sym);
    EXPECT_FALSE(b.quant_acts());

    const QSpec c = QSpec::parse("W2A16g128sym");
    EXPECT_EQ(c.w_bits, 2);
    EXPECT_EQ(c.group, 128);
    EXPECT_TRUE(c.sym);

    const QSpec d = QSpec::parse("W6A6");
    EXPECT_EQ(d.w_bits, 6);
    EXPECT_EQ(d.a_bits, 6);

    const QSpec fp = QSpec::parse("W16A16");
    EXPECT_EQ(fp, QSpec{});
    EXPECT_FALSE(fp.quant_weights());
    EXPECT_FALSE(fp.quant_acts());
}

TEST(QSpec, LettersAreCaseInsensitiveAndStrIsCanonical) {
    EXPECT_EQ(QSpec::parse("w4a4"), QSpec::parse("W4A4"));
    EXPECT_EQ(QSpec::parse("w2a16G64SYM"), QSpec::parse("W2A16g64sym"));
    EXPECT_EQ(QSpec::parse("w2a16G64SYM").str(), "W2A16g64sym");
}

TEST(QSpec, RoundTripsEveryValidSpec) {
    int n = 0;
    for (const int w : {2, 3, 4, 6, 8, 16}) {
        for (const int a : {4, 6, 8, 16}) {
            for (const int64_t g : {0, 32, 64, 128}) {
                for (const bool sym : {false, true}) {
                    if (w == 16 && (g != 0 || sym)) continue;
                    QSpec q;
                    q.w_bits = w;
                    q.a_bits = a;
                    q.group = g;
                    q.sym = sym;
                    const std::string s = q.str();
                    EXPECT_EQ(QSpec::parse(s), q) << s;
                    EXPECT_EQ(QSpec::parse(s).str(), s);
                    ++n;
                }
            }
        }
    }
    EXPECT_EQ(n, 5 * 4 * 4 * 2 + 4);
    EXPECT_EQ(QSpec{}.str(), "W16A16");
}

TEST(QSpec, MalformedSpecsThrowNamingTheString) {
    for (const char* bad : {"W5A4",
                            "W4",
                            "W4A4g48",
                            "W4A4x",
                            "",
                            "W4A4g128g64",
                            "A4W4",
                            "W4A5",
                            "W4A4g",
                            "W04A4",
                            "W4A04",
                            "W4A4g0128",
                            "W4A4symg128",
                            "W4A4sy",
                            "W4A4 ",
                            " W4A4",
                            "W4A4g128symsym",
                            "W16A16g128",
                            "W16A4sym",
                            "W1A4",
                            "W32A4",
                            "W4A32",
                            "W44444A4",
                            "W4A4g256",
                            "W-4A4",
                            "X4A4",
                            "W4B4",
                            "W4A4_g128"}) {
        try {
            QSpec::parse(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const Error& e) {
            const std::string msg = e.what();
            EXPECT_EQ(msg.rfind("[qspec] ", 0), 0u) << msg;
            EXPECT_NE(msg.find(std::string("'") + bad + "'"), std::string::npos) << msg;
            EXPECT_NE(msg.find("expected"), std::string::npos) << msg;
        }
    }
}

TEST(QSpec, MessagesSayWhatIsWrong) {
    auto message = [](const char* s) {
        try {
            QSpec::parse(s);
        } catch (const Error& e) {
            return std::string(e.what());
        }
        return std::string();
    };
    EXPECT_NE(message("W5A4").find("weight bits '5'"), std::string::npos) << message("W5A4");
    EXPECT_NE(message("W4A4g48").find("group size '48'"), std::string::npos);
    EXPECT_NE(message("W4A4x").find("unexpected 'x'"), std::string::npos);
    EXPECT_NE(message("W4A4g128g64").find("unexpected 'g64'"), std::string::npos);
    EXPECT_NE(message("W4").find("'A'"), std::string::npos);
    EXPECT_NE(message("").find("empty"), std::string::npos);
}

TEST(QSpec, GroupFor) {
    EXPECT_EQ(QSpec::parse("W4A4").group_for(576, "blk.0.attn_q.weight"), 576);
    EXPECT_EQ(QSpec::parse("W4A4").group_for(33, "x"), 33);
    EXPECT_EQ(QSpec::parse("W2A16g128").group_for(1536, "x"), 128);
    EXPECT_EQ(QSpec::parse("W2A16g64").group_for(576, "x"), 64);
    try {
        QSpec::parse("W2A16g128").group_for(576, "blk.3.mlp.down_proj.weight");
        ADD_FAILURE() << "576 is not a multiple of 128";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("blk.3.mlp.down_proj.weight"), std::string::npos) << msg;
        EXPECT_NE(msg.find("576"), std::string::npos) << msg;
        EXPECT_NE(msg.find("128"), std::string::npos) << msg;
    }
}

}  // namespace
}  // namespace zqat
