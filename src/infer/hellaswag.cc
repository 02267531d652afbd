#include "src/infer/hellaswag.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "src/core/error.h"
#include "src/core/files.h"
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
  GPT2_RETURN_IF_ERROR(NotAFolder(path, "a HellaSwag .jsonl file"));
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

int HellaSwagRows::longest() const {
  int most = 0;
  for (int i = 0; i < 4; ++i) most = std::max(most, row_length(i));
  return most;
}

void HellaSwagRows::Row(int i, int length, int32_t* inputs,
                        int32_t* targets) const {
  std::vector<int32_t> row(context);
  row.insert(row.end(), endings[i].begin(), endings[i].end());
  for (int p = 0; p < length; ++p) {
    const bool real = p + 1 < static_cast<int>(row.size());
    inputs[p] = real ? row[p] : 0;
    targets[p] = real ? row[p + 1] : 0;
  }
}

absl::StatusOr<HellaSwagRows> RenderHellaSwag(const Tokenizer& tokenizer,
                                              const HellaSwagExample& example) {
  HellaSwagRows rows;
  for (int id : tokenizer.Encode(example.context)) rows.context.push_back(id);
  for (int i = 0; i < 4; ++i) {
    for (int id : tokenizer.Encode(" " + example.endings[i])) {
      rows.endings[i].push_back(id);
    }
    if (rows.endings[i].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(example.where, ": ending ", i, " is empty"));
    }
  }
  if (rows.context.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(example.where, ": the context is empty"));
  }
  return rows;
}

absl::StatusOr<HellaSwagScore> ScoreHellaSwag(Decoder* decoder,
                                              const Tokenizer& tokenizer,
                                              const HellaSwagExample& example) {
  const ModelShape& shape = decoder->shape();
  GPT2_ASSIGN_OR_RETURN(const HellaSwagRows rows,
                        RenderHellaSwag(tokenizer, example));
  if (rows.longest() > shape.max_seq_len) {
    return absl::OutOfRangeError(absl::StrCat(
        example.where, ": the context (", rows.context.size(),
        " tokens) and the longest ending (",
        rows.longest() - static_cast<int>(rows.context.size()),
        ") do not fit the model's context of ", shape.max_seq_len));
  }
  // Four rows: the context once, then step k feeds each row's ending token k
  // (a row whose ending is over is fed its last token again, unscored).
  // losses[i][p]: row i's loss at position p, from the logits after it.
  const int ctx = static_cast<int>(rows.context.size());
  const int longest = rows.longest() - ctx;
  GPT2_RETURN_IF_ERROR(
      decoder->Start(rows.context, 4, std::max(rows.longest() - 1, 1)));
  std::array<std::vector<double>, 4> losses;
  const int vp = shape.padded_vocab_size;
  for (int k = 0; k < longest; ++k) {
    const float* logits = decoder->logits();
    std::vector<int32_t> next(4);
    for (int i = 0; i < 4; ++i) {
      const std::vector<int32_t>& ending = rows.endings[i];
      if (k < static_cast<int>(ending.size())) {
        losses[i].push_back(TokenLoss(logits + static_cast<size_t>(i) * vp,
                                      shape.vocab_size, ending[k]));
      }
      next[i] = ending[std::min<size_t>(k, ending.size() - 1)];
    }
    if (k + 1 < longest) GPT2_RETURN_IF_ERROR(decoder->Step(next));
  }
  return ScoreFromLosses(
      rows, [&](int i, int p) { return losses[i][p - (ctx - 1)]; });
}

}  // namespace gpt2::infer
