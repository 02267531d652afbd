#include "src/train/config.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/stubs/logging.h"
#include "google/protobuf/text_format.h"
#include "src/core/error.h"
#include "src/core/files.h"

namespace gpt2 {
namespace {

namespace pb = google::protobuf;

// Edits (insert, delete, replace one character) between a and b.
size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean 'x'?)" for the field of `d` nearest `name`, if one is close
// (two edits, or a third of its letters, at most; fewer than it has), else "".
std::string DidYouMean(const std::string& name, const pb::Descriptor* d) {
  std::string best;
  size_t best_distance =
      std::min(std::max<size_t>(2, name.size() / 3) + 1, name.size());
  for (int i = 0; i < d->field_count(); ++i) {
    const size_t distance = EditDistance(name, d->field(i)->name());
    if (distance < best_distance) {
      best_distance = distance;
      best = d->field(i)->name();
    }
  }
  return best.empty() ? "" : absl::StrCat(" (did you mean '", best, "'?)");
}

std::string FieldNames(const pb::Descriptor* d) {
  std::vector<std::string> names;
  for (int i = 0; i < d->field_count(); ++i)
    names.push_back(d->field(i)->name());
  return absl::StrJoin(names, ", ");
}

// An enum's values a config may name (X_UNSPECIFIED is proto3's unset value,
// not a choice).
std::string EnumChoices(const pb::EnumDescriptor* e) {
  std::vector<std::string> names;
  for (int v = 0; v < e->value_count(); ++v) {
    const std::string& name = e->value(v)->name();
    if (!absl::EndsWith(name, "_UNSPECIFIED")) names.push_back(name);
  }
  return absl::StrJoin(names, ", ");
}

// What a config file calls the message `d`: its section's name ("train"), or
// "the config" for the top level.
std::string SectionName(const pb::Descriptor* d) {
  const pb::Descriptor* root = config::RunConfig::descriptor();
  for (int i = 0; i < root->field_count(); ++i) {
    if (root->field(i)->message_type() == d) return root->field(i)->name();
  }
  return d == root ? "the config" : d->name();
}

// A config mistake said in the config's terms: what was written, where, and
// what would have been right.
struct ParseError {
  std::string word;     // the offending name or value, "" if none is known
  std::string message;  // protobuf's own words where they are not rewritten
};

// protobuf's words for the two mistakes a hand-edited config makes most,
// rewritten with the choices; any other message as protobuf gave it.
ParseError ExplainParseError(const std::string& message) {
  const pb::DescriptorPool* pool = pb::DescriptorPool::generated_pool();
  const std::vector<std::string> quoted = absl::StrSplit(message, '"');
  // Message type "gpt2.config.TrainConfig" has no field named "x".
  if (quoted.size() == 5 && absl::StartsWith(message, "Message type ") &&
      absl::StrContains(message, "has no field named")) {
    if (const pb::Descriptor* d = pool->FindMessageTypeByName(quoted[1])) {
      return {quoted[3], absl::StrCat("no field '", quoted[3], "' in ",
                                      SectionName(d), DidYouMean(quoted[3], d),
                                      " (fields: ", FieldNames(d), ")")};
    }
  }
  // Unknown enumeration value of "FP16" for field "precision".
  if (quoted.size() == 5 &&
      absl::StartsWith(message, "Unknown enumeration value of ")) {
    // protobuf names the field, not its section: the section is the one
    // with an enum field of that name (protobuf's words where two have one).
    const pb::Descriptor* root = config::RunConfig::descriptor();
    const pb::FieldDescriptor* found = nullptr;
    int sections = 0;
    for (int i = 0; i < root->field_count(); ++i) {
      const pb::Descriptor* section = root->field(i)->message_type();
      const pb::FieldDescriptor* f =
          section ? section->FindFieldByName(quoted[3]) : nullptr;
      if (f != nullptr && f->enum_type() != nullptr) {
        found = f;
        ++sections;
      }
    }
    if (sections == 1) {
      return {quoted[1], absl::StrCat("'", quoted[1], "' is not a valid ",
                                      SectionName(found->containing_type()),
                                      ".", quoted[3], " (one of ",
                                      EnumChoices(found->enum_type()), ")")};
    }
  }
  return {"", message};
}

bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }

class CollectErrors : public pb::io::ErrorCollector {
 public:
  CollectErrors(std::string source, const std::string& text)
      : source_(std::move(source)), lines_(absl::StrSplit(text, '\n')) {}
  void AddError(int line, pb::io::ColumnNumber column,
                const std::string& message) override {
    const ParseError error = ExplainParseError(message);
    // protobuf places a mistake at the token after it; point at the word.
    if (!error.word.empty()) Locate(error.word, &line, &column);
    // The parser counts from zero; editors count from one.
    errors_.push_back(absl::StrCat(source_, ":", line + 1, ":", column + 1,
                                   ": ", error.message));
  }
  void AddWarning(int line, pb::io::ColumnNumber column,
                  const std::string& message) override {
    AddError(line, column, message);
  }
  std::string joined() const { return absl::StrJoin(errors_, "\n"); }

 private:
  // Moves (line, column) back to the last whole-word `word` before it, if any.
  void Locate(const std::string& word, int* line, int* column) const {
    for (int l = std::min<int>(*line, lines_.size() - 1); l >= 0; --l) {
      const std::string& text = lines_[l];
      size_t end = l == *line ? static_cast<size_t>(*column) : text.size();
      while (end >= word.size()) {
        const size_t at = text.rfind(word, end - word.size());
        if (at == std::string::npos) break;
        const size_t after = at + word.size();
        if ((at == 0 || !IsNameChar(text[at - 1])) &&
            (after == text.size() || !IsNameChar(text[after]))) {
          *line = l;
          *column = static_cast<int>(at);
          return;
        }
        if (at == 0) break;
        end = at + word.size() - 1;
      }
    }
  }

  std::string source_;
  std::vector<std::string> lines_;
  std::vector<std::string> errors_;
};

// The dotted field an assignment "a.b=v" or "a.b+=v" names ("a.b"), or ""
// without an '=' after a name.
std::string OverrideField(const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) return "";
  return assignment.substr(0, assignment[eq - 1] == '+' ? eq - 1 : eq);
}

// What would make total_batch_tokens a whole number of micro-batches over
// the ranks, changing one thing: "these would fit: micro_batch_size 1, 2 or 4;
// total_batch_tokens 512 or 1024; 1 or 2 ranks".
std::string BatchesThatFit(int64_t total, int64_t micro_batch, int64_t seq_len,
                           int64_t world_size) {
  const auto divisors_up_to = [](int64_t n, int64_t most) {
    std::vector<std::string> out;
    for (int64_t d = 1; d <= std::min(n, most); ++d) {
      if (n % d == 0) out.push_back(absl::StrCat(d));
    }
    if (out.size() > 8) out.erase(out.begin() + 3, out.end() - 3);
    if (out.size() == 6) out.insert(out.begin() + 3, "...");
    return out;
  };
  const auto either = [](const std::vector<std::string>& items) {
    if (items.size() < 2) return absl::StrJoin(items, "");
    return absl::StrCat(absl::StrJoin(items.begin(), items.end() - 1, ", "),
                        " or ", items.back());
  };
  std::vector<std::string> fits;
  const int64_t per_micro = micro_batch * seq_len * world_size;
  if (total % (seq_len * world_size) == 0) {
    const auto b = divisors_up_to(total / (seq_len * world_size), 1 << 16);
    fits.push_back(absl::StrCat("micro_batch_size ", either(b)));
  }
  const int64_t below = total / per_micro * per_micro;
  std::vector<std::string> totals;
  if (below > 0) totals.push_back(absl::StrCat(below));
  totals.push_back(absl::StrCat(below + per_micro));
  fits.push_back(absl::StrCat("total_batch_tokens ", either(totals)));
  if (total % (micro_batch * seq_len) == 0) {
    const auto w = divisors_up_to(total / (micro_batch * seq_len), 1 << 16);
    fits.push_back(absl::StrCat(
        either(w), w.size() == 1 && w[0] == "1" ? " rank" : " ranks"));
  }
  return absl::StrCat("these would fit: ", absl::StrJoin(fits, "; "));
}

}  // namespace

absl::StatusOr<config::RunConfig> ParseConfigText(const std::string& text,
                                                  const std::string& source) {
  config::RunConfig config;
  pb::TextFormat::Parser parser;
  CollectErrors errors(source, text);
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(errors.joined());
  }
  return config;
}

absl::StatusOr<config::RunConfig> ParseConfigFile(const std::string& path) {
  GPT2_RETURN_IF_ERROR(NotAFolder(path, "a config file"));
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat(path, ": cannot open config file"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseConfigText(buffer.str(), path);
}

absl::Status ApplyOverride(const std::string& assignment,
                           config::RunConfig* config) {
  const std::string path = OverrideField(assignment);
  if (path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set ", assignment,
                     ": expected dotted.field=value, e.g. train.max_steps=20"));
  }
  // "a.b+=v" adds v to a repeated field; "a.b=v" sets it to just v (or, with
  // an empty v, to nothing).
  const size_t eq = assignment.find('=');
  const bool add = assignment[eq - 1] == '+';
  std::string value = assignment.substr(eq + 1);
  const std::vector<std::string> parts = absl::StrSplit(path, '.');
  pb::Message* message = config;
  for (size_t i = 0; i < parts.size(); ++i) {
    const pb::Descriptor* d = message->GetDescriptor();
    const pb::FieldDescriptor* field = d->FindFieldByName(parts[i]);
    const std::string where =
        i == 0 ? std::string("the config")
               : absl::StrJoin(parts.begin(), parts.begin() + i, ".");
    if (field == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--set ", assignment, ": no field '", parts[i], "' in ", where,
          DidYouMean(parts[i], d), " (fields: ", FieldNames(d), ")"));
    }
    const pb::Reflection* r = message->GetReflection();
    if (i + 1 < parts.size()) {
      if (field->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--set ", assignment, ": '", parts[i], "' is not a section"));
      }
      message = r->MutableMessage(message, field);
      continue;
    }
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      return absl::InvalidArgumentError(
          absl::StrCat("--set ", assignment, ": '", path,
                       "' is a section, not a field (fields: ",
                       FieldNames(field->message_type()), ")"));
    }
    if (add && !field->is_repeated()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--set ", assignment, ": '+=' adds to a list, and '",
                       path, "' holds one value: use '='"));
    }
    const bool is_string =
        field->cpp_type() == pb::FieldDescriptor::CPPTYPE_STRING;
    if (field->is_repeated() && !is_string) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--set ", assignment, ": '", path, "' cannot be set with --set"));
    }
    if (field->is_repeated() && !add) {
      r->ClearField(message, field);
      if (value.empty()) return absl::OkStatus();
    }
    if (is_string) {
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
        value = value.substr(1, value.size() - 2);
      }
      if (field->is_repeated()) {
        r->AddString(message, field, value);
      } else {
        r->SetString(message, field, value);
      }
      return absl::OkStatus();
    }
    pb::LogSilencer
        quiet;  // our message below says it better than protobuf's log
    if (!pb::TextFormat::ParseFieldValueFromString(value, field, message)) {
      std::string allowed;
      if (const pb::EnumDescriptor* e = field->enum_type()) {
        allowed = absl::StrCat(" (one of ", EnumChoices(e), ")");
      }
      return absl::InvalidArgumentError(
          absl::StrCat("--set ", assignment, ": '", value, "' is not a valid ",
                       field->cpp_type_name(), " for ", path, allowed));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<RunPlan> ValidateConfig(
    const config::RunConfig& c, int world_size, const std::string& source,
    const std::vector<std::string>& overrides) {
  std::vector<std::string> problems;
  auto fail = [&](auto&&... parts) {
    problems.push_back(absl::StrCat(parts...));
  };
  const auto& m = c.model();
  if (m.num_layers() < 1)
    fail("model.num_layers must be >= 1, got ", m.num_layers());
  if (m.num_heads() < 1)
    fail("model.num_heads must be >= 1, got ", m.num_heads());
  if (m.channels() < 1) fail("model.channels must be >= 1, got ", m.channels());
  if (m.num_heads() >= 1 && m.channels() % m.num_heads() != 0) {
    fail("model.num_heads (", m.num_heads(), ") must divide model.channels (",
         m.channels(), ")");
  }
  if (m.max_seq_len() < 1)
    fail("model.max_seq_len must be >= 1, got ", m.max_seq_len());
  if (m.vocab_size() < 1)
    fail("model.vocab_size must be >= 1, got ", m.vocab_size());
  int padded_vocab = m.padded_vocab_size();
  padded_vocab = ModelShape::PaddedVocab(m.vocab_size(), padded_vocab);
  if (padded_vocab < m.vocab_size()) {
    fail("model.padded_vocab_size (", padded_vocab,
         ") must be >= model.vocab_size (", m.vocab_size(), ")");
  }

  const auto& d = c.data();
  const bool shards = !d.train_shards().empty(), text = !d.train_text().empty();
  if (shards == text)
    fail("data: set exactly one of data.train_shards and data.train_text");
  if (!d.val_shards().empty() && !shards)
    fail("data.val_shards needs data.train_shards");
  if (d.val_tokens() < 0)
    fail("data.val_tokens must be >= 0, got ", d.val_tokens());
  if (d.val_tokens() > 0 && !text)
    fail("data.val_tokens applies only to data.train_text");

  const auto& t = c.train();
  if (t.micro_batch_size() < 1)
    fail("train.micro_batch_size must be >= 1, got ", t.micro_batch_size());
  if (t.seq_len() < 1) fail("train.seq_len must be >= 1, got ", t.seq_len());
  if (t.seq_len() > m.max_seq_len()) {
    fail("train.seq_len (", t.seq_len(), ") exceeds model.max_seq_len (",
         m.max_seq_len(), ")");
  }
  if (t.max_steps() < 1)
    fail("train.max_steps must be >= 1, got ", t.max_steps());
  if (t.total_batch_tokens() < 0)
    fail("train.total_batch_tokens must be >= 0, got ", t.total_batch_tokens());
  const int64_t per_micro =
      int64_t{t.micro_batch_size()} * t.seq_len() * world_size;
  int64_t total =
      t.total_batch_tokens() == 0 ? per_micro : t.total_batch_tokens();
  if (per_micro > 0 && total % per_micro != 0) {
    fail("train.total_batch_tokens (", total,
         ") is not a multiple of micro_batch_size * seq_len * world_size (",
         t.micro_batch_size(), " * ", t.seq_len(), " * ", world_size, " = ",
         per_micro, "); ",
         BatchesThatFit(total, t.micro_batch_size(), t.seq_len(), world_size));
  }
  if (!(t.max_seconds() >= 0)) {
    fail("train.max_seconds must be >= 0, got ", t.max_seconds());
  }
  if (t.stop_after_steps_below() < 0)
    fail("train.stop_after_steps_below must be >= 0, got ",
         t.stop_after_steps_below());
  if (t.stop_at_loss() < 0)
    fail("train.stop_at_loss must be >= 0, got ", t.stop_at_loss());
  if (t.stop_loss_tokens() < 0)
    fail("train.stop_loss_tokens must be >= 0, got ", t.stop_loss_tokens());

  const auto& o = c.optim();
  if (!(o.lr() > 0 && std::isfinite(o.lr())))
    fail("optim.lr must be finite and > 0, got ", o.lr());
  if (!(o.beta1() >= 0 && o.beta1() < 1))
    fail("optim.beta1 must be in [0, 1), got ", o.beta1());
  if (!(o.beta2() >= 0 && o.beta2() < 1))
    fail("optim.beta2 must be in [0, 1), got ", o.beta2());
  if (!(o.eps() > 0)) fail("optim.eps must be > 0, got ", o.eps());
  if (!(o.weight_decay() >= 0))
    fail("optim.weight_decay must be >= 0, got ", o.weight_decay());
  if (!(o.grad_clip() >= 0))
    fail("optim.grad_clip must be >= 0 (0 = off), got ", o.grad_clip());

  const auto& s = c.schedule();
  if (s.warmup_steps() < 0)
    fail("schedule.warmup_steps must be >= 0, got ", s.warmup_steps());
  // (Against a valid train.max_steps only: a bad one is its own error.) The
  // decay follows the warmup: it cannot take more steps than come after it.
  const int64_t after_warmup =
      std::max<int64_t>(c.train().max_steps() - s.warmup_steps(), 0);
  if (s.decay_steps() < 0 ||
      (c.train().max_steps() >= 1 && s.decay_steps() > after_warmup)) {
    fail(
        "schedule.decay_steps must be in [0, train.max_steps - "
        "schedule.warmup_steps = ",
        after_warmup, "] (0 = cosine), got ", s.decay_steps());
  }
  if (!(s.min_lr() >= 0 && (!(o.lr() > 0) || s.min_lr() <= o.lr()))) {
    fail("schedule.min_lr must be in [0, optim.lr = ", o.lr(), "], got ",
         s.min_lr());
  }
  const auto& l = c.log();
  if (l.every_steps() < 1)
    fail("log.every_steps must be >= 1, got ", l.every_steps());
  if (l.val_every_steps() < 0)
    fail("log.val_every_steps must be >= 0, got ", l.val_every_steps());
  if (l.val_batches() < 1)
    fail("log.val_batches must be >= 1, got ", l.val_batches());
  for (const std::string& prompt : l.sample_prompts()) {
    if (prompt.empty())
      fail("log.sample_prompts must not hold an empty prompt");
  }
  if (l.sample_tokens() < 1 || l.sample_tokens() > 1024)
    fail("log.sample_tokens must be in [1, 1024], got ", l.sample_tokens());
  if (l.hellaswag_every_steps() < 0 || l.hellaswag_examples() < 0) {
    fail(
        "log.hellaswag_every_steps and log.hellaswag_examples must be >= 0 "
        "(0: only at the end / all examples)");
  }
  if (!(l.progress_every_seconds() >= 0)) {
    fail(
        "log.progress_every_seconds must be >= 0 (0: no progress lines), "
        "got ",
        l.progress_every_seconds());
  }
  if (l.samples_per_prompt() < 1 || l.samples_per_prompt() > 16) {
    fail("log.samples_per_prompt must be in [1, 16], got ",
         l.samples_per_prompt());
  }
  if (l.run_name().empty() || l.run_name().find('/') != std::string::npos ||
      l.run_name() == "." || l.run_name() == "..") {
    fail(
        "log.run_name must be a non-empty name without '/' (and not . or ..), "
        "got '",
        l.run_name(), "'");
  }
  // An empty run_dir put the run folder at the filesystem's root ("/name").
  if (l.run_dir().empty()) {
    fail(
        "log.run_dir must not be empty (the run folder goes in it; '.' for "
        "the working directory)");
  }
  const auto& dist = c.distributed();
  if (dist.zero_stage() != 0 && dist.zero_stage() != 1) {
    fail("distributed.zero_stage must be 0 or 1, got ", dist.zero_stage());
  }
  if (c.checkpoint().every_steps() < 0)
    fail("checkpoint.every_steps must be >= 0");
  if (c.checkpoint().keep_last() < 1) fail("checkpoint.keep_last must be >= 1");

  if (!problems.empty()) {
    // Each problem under what gave its fields their values: the last --set
    // of the field it is about, else the last --set of each field it names
    // ("model.num_heads (4) must divide model.channels (130)" after --set
    // model.channels=130; "... a multiple of micro_batch_size * seq_len" after
    // --set train.seq_len=128), else the file.
    const auto names = [](const std::string& text, const std::string& name) {
      const auto word = [](char ch) {
        return absl::ascii_isalnum(ch) || ch == '_' || ch == '.';
      };
      for (size_t p = text.find(name); p != std::string::npos;
           p = text.find(name, p + 1)) {
        const size_t end = p + name.size();
        if ((p == 0 || !word(text[p - 1])) &&
            (end == text.size() || !word(text[end])))
          return true;
      }
      return false;
    };
    const auto given_by = [&](const std::string& problem) {
      for (auto o = overrides.rbegin(); o != overrides.rend(); ++o) {
        const std::string field = OverrideField(*o);
        if (!field.empty() && absl::StartsWith(problem, field + " "))
          return absl::StrCat("--set ", *o);
      }
      std::vector<std::string> sets, fields;
      for (auto o = overrides.rbegin(); o != overrides.rend(); ++o) {
        const std::string field = OverrideField(*o);
        if (field.empty() || absl::c_linear_search(fields, field)) continue;
        fields.push_back(field);
        const std::string last = field.substr(field.rfind('.') + 1);
        if (names(problem, field) || names(problem, last))
          sets.insert(sets.begin(), absl::StrCat("--set ", *o));
      }
      return sets.empty() ? source : absl::StrJoin(sets, ", ");
    };
    std::vector<std::string> lines;
    for (const std::string& problem : problems)
      lines.push_back(absl::StrCat(given_by(problem), ": ", problem));
    return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
  }
  RunPlan plan;
  plan.shape = ModelShape{m.num_layers(),  m.num_heads(),  m.channels(),
                          m.max_seq_len(), m.vocab_size(), padded_vocab};
  plan.micro_batch_size = t.micro_batch_size();
  plan.seq_len = t.seq_len();
  plan.total_batch_tokens = total;
  plan.grad_accum_steps = static_cast<int>(total / per_micro);
  return plan;
}

namespace {

// A field's value as the text format writes it (a list: [a, b]).
std::string FieldText(const pb::Message& m, const pb::FieldDescriptor* f) {
  std::string text;
  if (!f->is_repeated()) {
    pb::TextFormat::PrintFieldValueToString(m, f, -1, &text);
    return text;
  }
  std::vector<std::string> items;
  for (int i = 0; i < m.GetReflection()->FieldSize(m, f); ++i) {
    pb::TextFormat::PrintFieldValueToString(m, f, i, &items.emplace_back());
  }
  return absl::StrCat("[", absl::StrJoin(items, ", "), "]");
}

void AddChanges(const pb::Message& before, const pb::Message& now,
                const std::string& prefix, std::vector<std::string>* changes) {
  const pb::Descriptor* d = now.GetDescriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    const std::string path = absl::StrCat(prefix, f->name());
    if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE &&
        !f->is_repeated()) {
      AddChanges(before.GetReflection()->GetMessage(before, f),
                 now.GetReflection()->GetMessage(now, f), path + ".", changes);
      continue;
    }
    const std::string was = FieldText(before, f), is = FieldText(now, f);
    if (was != is) changes->push_back(absl::StrCat(path, " ", was, " -> ", is));
  }
}

// The training data comes from one source: a --set of one (data.train_shards
// or data.train_text) replaces the file's other, with what belongs to it
// (data.val_tokens, data.val_shards), unless those are --set too. (Moving
// tiny_cpu onto shards took four --sets in the one order that passed the
// checks.)
void SwitchDataSource(const std::vector<std::string>& overrides,
                      config::RunConfig* c, std::vector<std::string>* notes) {
  std::set<std::string> set;
  for (const std::string& o : overrides) set.insert(OverrideField(o));
  config::DataConfig* d = c->mutable_data();
  if (set.count("data.train_shards") && !set.count("data.train_text") &&
      !d->train_shards().empty() && !d->train_text().empty()) {
    std::vector<std::string> gone = {"data.train_text"};
    d->clear_train_text();
    if (!set.count("data.val_tokens") && d->val_tokens() != 0) {
      d->clear_val_tokens();
      gone.push_back("data.val_tokens");
    }
    notes->push_back(
        absl::StrCat("--set data.train_shards replaces the "
                     "config's ",
                     absl::StrJoin(gone, " and ")));
  } else if (set.count("data.train_text") && !set.count("data.train_shards") &&
             !d->train_text().empty() && !d->train_shards().empty()) {
    std::vector<std::string> gone = {"data.train_shards"};
    d->clear_train_shards();
    if (!set.count("data.val_shards") && !d->val_shards().empty()) {
      d->clear_val_shards();
      gone.push_back("data.val_shards");
    }
    notes->push_back(
        absl::StrCat("--set data.train_text replaces the "
                     "config's ",
                     absl::StrJoin(gone, " and ")));
  }
}

}  // namespace

std::vector<std::string> ConfigChanges(const config::RunConfig& before,
                                       const config::RunConfig& now) {
  std::vector<std::string> changes;
  AddChanges(before, now, "", &changes);
  return changes;
}

absl::StatusOr<LoadedConfig> LoadConfig(
    const std::string& path, const std::vector<std::string>& overrides,
    int world_size) {
  LoadedConfig loaded;
  GPT2_ASSIGN_OR_RETURN(loaded.config, ParseConfigFile(path));
  for (const std::string& o : overrides) {
    GPT2_RETURN_IF_ERROR(ApplyOverride(o, &loaded.config));
  }
  SwitchDataSource(overrides, &loaded.config, &loaded.notes);
  GPT2_ASSIGN_OR_RETURN(
      loaded.plan, ValidateConfig(loaded.config, world_size, path, overrides));
  return loaded;
}

}  // namespace gpt2
