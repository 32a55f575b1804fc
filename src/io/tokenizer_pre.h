// Pre-tokenizers of the byte-level BPE tokenizers (internal to src/io).
//
// As in Hugging Face `tokenizers`, a pre-tokenizer is a list of steps; each step splits every
// current piece into smaller ones (the "Isolated" behaviour: matches and the text between them
// both become pieces), and ByteLevel(add_prefix_space) prepends a space to every piece. BPE then
// runs on each final piece ("word") separately. The regexes are matched by hand-written code
// that follows the leftmost-first alternation and backtracking of the original patterns:
//   gpt2   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   llama3 (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   qwen2  the same with \p{N} in place of \p{N}{1,3}
// (?i:) is taken as ASCII case folding, as llama.cpp's adapted pattern does.
// Input must be valid UTF-8 (the tokenizer replaces invalid sequences first).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace zqat::tok {

enum class Pattern { gpt2, llama3, qwen2 };

struct PreStep {
    enum class Kind { split, digits, prefix_space } kind = Kind::split;
    Pattern pattern = Pattern::gpt2;  // split
    bool individual = false;          // digits: each \p{N} alone (true) or runs of \p{N} (false)
};
using PreTokenizer = std::vector<PreStep>;

// Appends the words of `text` to `out`. With no steps the whole text is one word.
void pre_tokenize(const PreTokenizer& pre, std::string_view text, std::vector<std::string>& out);

// The pattern a Hugging Face Split regex (or llama.cpp's adaptation of it) spells; false when it is
// none of those implemented.
bool pattern_from_regex(std::string_view regex, Pattern* out);

}  // namespace zqat::tok
