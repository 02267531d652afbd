#include "src/infer/hellaswag.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "src/core/error.h"
#include "src/core/json_reader.h"

namespace gpt2::infer {
namespace {

// -log softmax(row)[target] over the first `vocab` logits, in double.
double TokenLoss(const float* row, int vocab, int target) {
  double max = row[0];
  for (int v = 1; v < vocab; ++v) max = std::max<double>(max, row[v]);
  double sum = 0.0;
  for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - max);
  return std::log(sum) + max - row[target];
}

}  // namespace

absl::StatusOr<std::vector<HellaSwagExample>> ReadHellaSwag(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::vector<HellaSwagExample> examples;
  GPT2_RETURN_IF_ERROR(ForEachJsonLine(
      in, path,
      [&](const JsonValue& value, const std::string& where) -> absl::Status {
        const JsonValue& ctx = value["ctx"];
        const JsonValue& endings = value["endings"];
        const JsonValue& label = value["label"];
        if (ctx.kind != JsonValue::Kind::kString ||
            endings.kind != JsonValue::Kind::kArray ||
            endings.array.size() != 4 || !label.IsInteger(0, 3)) {
          return absl::InvalidArgumentError(absl::StrCat(
              where,
              ": not a HellaSwag example (\"ctx\": a string, \"endings\": "
              "4 strings, \"label\": 0..3)"));
        }
        HellaSwagExample example;
        example.context = ctx.string;
        example.label = static_cast<int>(label.number);
        example.where = where;
        for (int i = 0; i < 4; ++i) {
          if (endings.array[i].kind != JsonValue::Kind::kString) {
            return absl::InvalidArgumentError(
                absl::StrCat(where, ": ending ", i, " is not a string"));
          }
          example.endings[i] = endings.array[i].string;
        }
        examples.push_back(std::move(example));
        return absl::OkStatus();
      }));
  if (examples.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no HellaSwag examples"));
  }
  return examples;
}

absl::StatusOr<HellaSwagScore> ScoreHellaSwag(Decoder* decoder,
                                              const Tokenizer& tokenizer,
                                              const HellaSwagExample& example) {
  const ModelShape& shape = decoder->shape();
  std::vector<int32_t> context;
  for (int id : tokenizer.Encode(example.context)) context.push_back(id);
  std::array<std::vector<int32_t>, 4> endings;
  size_t longest = 0;
  for (int i = 0; i < 4; ++i) {
    for (int id : tokenizer.Encode(" " + example.endings[i])) {
      endings[i].push_back(id);
    }
    if (endings[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(example.where, ": ending ", i, " is empty"));
    }
    longest = std::max(longest, endings[i].size());
  }
  if (context.empty() ||
      context.size() + longest > static_cast<size_t>(shape.max_seq_len)) {
    return absl::InvalidArgumentError(absl::StrCat(
        example.where, ": the context (", context.size(),
        " tokens) and the longest ending (", longest,
        ") do not fit the model's context of ", shape.max_seq_len));
  }
  // Four rows: the context once, then step k feeds each row's token k (a
  // row whose ending is over is fed its last token again, unscored).
  const int capacity = static_cast<int>(context.size() + longest - 1);
  GPT2_RETURN_IF_ERROR(decoder->Start(context, 4, std::max(capacity, 1)));
  HellaSwagScore score;
  const int vp = shape.padded_vocab_size;
  for (size_t k = 0; k < longest; ++k) {
    const float* logits = decoder->logits();
    std::vector<int32_t> next(4);
    for (int i = 0; i < 4; ++i) {
      if (k < endings[i].size()) {
        score.endings[i].loss_sum +=
            TokenLoss(logits + static_cast<size_t>(i) * vp, shape.vocab_size,
                      endings[i][k]);
        ++score.endings[i].tokens;
      }
      next[i] = endings[i][std::min(k, endings[i].size() - 1)];
    }
    if (k + 1 < longest) GPT2_RETURN_IF_ERROR(decoder->Step(next));
  }
  for (int i = 1; i < 4; ++i) {
    if (score.endings[i].loss_sum < score.endings[score.pick].loss_sum) {
      score.pick = i;
    }
    if (score.endings[i].mean() < score.endings[score.pick_norm].mean()) {
      score.pick_norm = i;
    }
  }
  return score;
}

}  // namespace gpt2::infer
