// Configs: the shipped files parse and validate, overrides apply, and every bad
// input gives a message naming the file, line or field.
#include "src/train/config.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "src/model/params.h"
#include "src/train/memory_plan.h"

namespace gpt2 {
namespace {

std::string SourceDir() { return GPT2_SOURCE_DIR; }

TEST(Config, ShippedConfigsValidate) {
  auto shakespeare =
      LoadConfig(SourceDir() + "/configs/gpt2_124m_shakespeare.pbtxt", {}, 1);
  ASSERT_TRUE(shakespeare.ok()) << shakespeare.status();
  EXPECT_EQ(shakespeare->plan.shape.padded_vocab_size, 50304);
  EXPECT_EQ(shakespeare->plan.micro_batch_size, 16);
  EXPECT_EQ(shakespeare->plan.seq_len, 1024);
  EXPECT_EQ(shakespeare->plan.grad_accum_steps, 1);
  EXPECT_EQ(shakespeare->config.train().max_steps(), 5000);
  EXPECT_DOUBLE_EQ(shakespeare->config.optim().lr(), 6e-4);
  EXPECT_DOUBLE_EQ(shakespeare->config.schedule().min_lr(), 6e-5);
  EXPECT_EQ(shakespeare->config.train().seed(), 1337u);
  // The fast recipe may change the optimizer's schedule, the batch and the
  // precision, never the model, the data or the sequence length.
  auto fast = LoadConfig(
      SourceDir() + "/configs/gpt2_124m_shakespeare_fast.pbtxt", {}, 1);
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_EQ(fast->config.model().SerializeAsString(),
            shakespeare->config.model().SerializeAsString());
  EXPECT_EQ(fast->config.data().SerializeAsString(),
            shakespeare->config.data().SerializeAsString());
  EXPECT_EQ(fast->plan.seq_len, shakespeare->plan.seq_len);
  EXPECT_DOUBLE_EQ(fast->config.train().stop_at_loss(),
                   shakespeare->config.train().stop_at_loss());
  auto tiny = LoadConfig(SourceDir() + "/configs/tiny_cpu.pbtxt", {}, 1);
  ASSERT_TRUE(tiny.ok()) << tiny.status();
  EXPECT_EQ(tiny->config.train().device(), config::CPU);
}

// Every config in configs/ validates on 1 and 8 ranks, and the GPT-2 ones
// (bf16) fit one 80 GB card by the memory plan, leaving 3 GiB of the ~79 GiB
// the driver offers for the CUDA context, cuBLASLt's workspace and op scratch.
// The FineWeb configs cover every GPT-2 shape, with the parameter counts of
// OpenAI's releases (the vocab padded to 50,304 adds (50,304 - 50,257) x C).
TEST(Config, EveryShippedConfigFitsOneGpu) {
  int gpt2_configs = 0;
  std::map<int, int64_t> params_by_layers;
  for (const auto& entry :
       std::filesystem::directory_iterator(SourceDir() + "/configs")) {
    if (entry.path().extension() != ".pbtxt") continue;
    const std::string path = entry.path().string();
    SCOPED_TRACE(path);
    auto one = LoadConfig(path, {}, 1);
    ASSERT_TRUE(one.ok()) << one.status();
    auto eight = LoadConfig(path, {}, 8);
    if (one->plan.total_batch_tokens %
            (8 * one->plan.micro_batch_size * one->plan.seq_len) ==
        0) {
      EXPECT_TRUE(eight.ok()) << eight.status();
    }
    if (one->config.train().precision() != config::BF16) continue;
    ++gpt2_configs;
    MemoryPlanInputs in;
    in.shape = one->plan.shape;
    in.dtype = DType::kBF16;
    in.micro_batch = one->plan.micro_batch_size;
    in.seq_len = one->plan.seq_len;
    in.buffer_elems = TotalParams(BuildParamList(in.shape));
    in.optimizer_elems = in.buffer_elems;
    in.recompute_gelu = one->config.train().recompute_gelu();
    in.recompute_layernorm = one->config.train().recompute_layernorm();
    in.residual_fp32 = one->config.train().residual_fp32();
    EXPECT_LT(PlanMemory(in).total(), int64_t{76} << 30)
        << DescribeMemoryPlan(PlanMemory(in));
    params_by_layers[in.shape.num_layers] = in.buffer_elems;
  }
  EXPECT_GE(gpt2_configs, 6);
  const int64_t pad = 50304 - 50257;
  EXPECT_EQ(params_by_layers[12], 124439808 + pad * 768);
  EXPECT_EQ(params_by_layers[24], 354823168 + pad * 1024);
  EXPECT_EQ(params_by_layers[36], 774030080 + pad * 1280);
  EXPECT_EQ(params_by_layers[48], 1557611200 + pad * 1600);
}

absl::StatusOr<RunPlan> Validate(const std::string& text, int world = 1) {
  auto parsed = ParseConfigText(text, "test.pbtxt");
  if (!parsed.ok()) return parsed.status();
  return ValidateConfig(*parsed, world, "test.pbtxt");
}

std::string ErrorOf(const std::string& text, int world = 1) {
  auto plan = Validate(text, world);
  EXPECT_FALSE(plan.ok()) << text;
  return plan.ok() ? "" : std::string(plan.status().message());
}

constexpr char kGood[] = R"(
model { num_layers: 2 num_heads: 4 channels: 64 max_seq_len: 32 }
data { train_text: "x.txt" }
train { micro_batch_size: 4 seq_len: 32 total_batch_tokens: 512 }
)";

TEST(Config, DerivesAccumulationAndPaddedVocab) {
  auto plan = Validate(kGood);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->grad_accum_steps, 4);
  EXPECT_EQ(plan->shape.padded_vocab_size, 50304);  // 50257 rounded up to 128
  auto two = Validate(kGood, 2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->grad_accum_steps, 2);
}

TEST(Config, SyntaxErrorsNameFileAndLine) {
  const std::string unknown = ErrorOf("model {\n  num_layerz: 3\n}\n");
  EXPECT_NE(unknown.find("test.pbtxt:2:"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("num_layerz"), std::string::npos) << unknown;
  // A misspelt field is named with its section, the field it is nearest and
  // the section's fields; a misspelt section likewise.
  EXPECT_NE(unknown.find("test.pbtxt:2:3: no field 'num_layerz' in model "
                         "(did you mean 'num_layers'?) (fields: num_layers, "),
            std::string::npos)
      << unknown;
  const std::string section = ErrorOf("trian {\n  seq_len: 4\n}\n");
  EXPECT_NE(section.find("test.pbtxt:1:1: no field 'trian' in the config "
                         "(did you mean 'train'?) (fields: model, data, "),
            std::string::npos)
      << section;
  // Nothing near: no guess.
  const std::string far = ErrorOf("train {\n  warp_speed: 9\n}\n");
  EXPECT_NE(far.find("no field 'warp_speed' in train (fields: "),
            std::string::npos)
      << far;
  // A bad enum value lists the good ones.
  const std::string value = ErrorOf("train {\n  precision: FP16\n}\n");
  EXPECT_NE(value.find("test.pbtxt:2:14: 'FP16' is not a valid "
                       "train.precision (one of FP32, BF16, FP64)"),
            std::string::npos)
      << value;
  const std::string type = ErrorOf("train {\n seq_len: \"long\"\n}\n");
  EXPECT_NE(type.find("test.pbtxt:2:"), std::string::npos) << type;
  const std::string missing_file =
      std::string(ParseConfigFile("/nonexistent/x.pbtxt").status().message());
  EXPECT_NE(missing_file.find("/nonexistent/x.pbtxt"), std::string::npos);
}

// kGood with overrides applied, then validated: the error message.
std::string ErrorWith(std::vector<std::string> overrides, int world = 1) {
  auto c = *ParseConfigText(kGood, "test.pbtxt");
  for (const auto& o : overrides) EXPECT_TRUE(ApplyOverride(o, &c).ok()) << o;
  auto plan = ValidateConfig(c, world, "test.pbtxt");
  EXPECT_FALSE(plan.ok());
  return plan.ok() ? "" : std::string(plan.status().message());
}

bool Has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(Config, InconsistentValuesNameTheField) {
  EXPECT_TRUE(Has(ErrorWith({"model.num_heads=5"}),
                  "model.num_heads (5) must divide model.channels (64)"));
  EXPECT_TRUE(Has(ErrorWith({"train.seq_len=64"}),
                  "train.seq_len (64) exceeds model.max_seq_len (32)"));
  // A batch that does not split says what would, changing one thing.
  const std::string odd_total = ErrorWith({"train.total_batch_tokens=500"});
  EXPECT_TRUE(Has(odd_total,
                  "not a multiple of micro_batch_size * seq_len * world_size "
                  "(4 * 32 * 1 = 128); these would fit: total_batch_tokens "
                  "384 or 512"))
      << odd_total;
  EXPECT_FALSE(Has(odd_total, "micro_batch_size 1")) << odd_total;
  const std::string three_ranks = ErrorWith({}, 3);
  EXPECT_TRUE(Has(three_ranks,
                  "(4 * 32 * 3 = 384); these would fit: total_batch_tokens "
                  "384 or 768; 1, 2 or 4 ranks"))
      << three_ranks;
  const std::string odd_micro = ErrorWith({"train.micro_batch_size=3"});
  EXPECT_TRUE(Has(odd_micro,
                  "these would fit: micro_batch_size 1, 2, 4, 8 or 16; "
                  "total_batch_tokens 480 or 576"))
      << odd_micro;
  EXPECT_FALSE(Has(odd_micro, "ranks")) << odd_micro;
  // Long lists keep their ends: 2^15 tokens of T=32 at B=3.
  const std::string long_list =
      ErrorWith({"train.micro_batch_size=3", "train.total_batch_tokens=32768"});
  EXPECT_TRUE(Has(long_list, "micro_batch_size 1, 2, 4, ..., 256, 512 or 1024"))
      << long_list;
  EXPECT_TRUE(Has(ErrorWith({"optim.lr=-1"}), "optim.lr"));
  // inf passed the > 0 test and trained a step at lr inf.
  EXPECT_TRUE(Has(ErrorWith({"optim.lr=inf"}),
                  "optim.lr must be finite and > 0, got inf"));
  EXPECT_TRUE(Has(ErrorWith({"optim.lr=nan"}), "optim.lr"));
  EXPECT_TRUE(Has(ErrorWith({"optim.beta2=1.5"}), "optim.beta2"));
  EXPECT_TRUE(Has(ErrorWith({"model.padded_vocab_size=100"}),
                  "model.padded_vocab_size"));
  EXPECT_TRUE(Has(ErrorWith({"data.train_shards=a*.bin"}), "exactly one"));
  EXPECT_TRUE(Has(ErrorWith({"train.max_steps=0"}), "train.max_steps"));
  // A bad value is one error, not also the fields checked against it.
  EXPECT_FALSE(Has(ErrorWith({"train.max_steps=-5"}), "schedule.decay_steps"));
  EXPECT_FALSE(Has(ErrorWith({"optim.lr=-1"}), "schedule.min_lr"));
  EXPECT_TRUE(
      Has(ErrorWith({"train.micro_batch_size=0"}), "train.micro_batch_size"));
  EXPECT_TRUE(
      Has(ErrorWith({"distributed.zero_stage=3"}), "distributed.zero_stage"));
  EXPECT_TRUE(Has(ErrorWith({"schedule.min_lr=1"}), "schedule.min_lr"));
  EXPECT_TRUE(
      Has(ErrorWith({"schedule.decay_steps=-1"}), "schedule.decay_steps"));
  EXPECT_TRUE(Has(ErrorWith({"train.max_steps=10", "schedule.decay_steps=11"}),
                  "schedule.decay_steps must be in [0, train.max_steps - "
                  "schedule.warmup_steps = "));
  // The decay comes after the warmup (298 of 300 steps after 5 of warmup
  // was printed as "held to step 5" and decayed over 295).
  EXPECT_TRUE(Has(ErrorWith({"train.max_steps=300", "schedule.warmup_steps=5",
                             "schedule.decay_steps=298"}),
                  "schedule.warmup_steps = 295] (0 = cosine), got 298"));
  EXPECT_FALSE(Has(ErrorWith({"train.max_steps=300", "schedule.warmup_steps=5",
                              "schedule.decay_steps=295", "optim.beta2=1.5"}),
                   "schedule.decay_steps"));
  EXPECT_TRUE(
      Has(ErrorWith({"log.run_dir="}), "log.run_dir must not be empty"));
  EXPECT_TRUE(Has(ErrorWith({"log.run_name=.."}), "log.run_name"));
  EXPECT_TRUE(Has(ErrorWith({"log.run_name=."}), "log.run_name"));
  EXPECT_TRUE(Has(ErrorWith({"log.run_name=a/b"}), "log.run_name"));
  EXPECT_TRUE(Has(ErrorWith({"log.sample_prompts=x", "log.sample_prompts+="}),
                  "log.sample_prompts must not hold an empty prompt"));
  EXPECT_TRUE(Has(ErrorWith({"log.sample_tokens=0"}),
                  "log.sample_tokens must be in [1, 1024], got 0"));
  EXPECT_TRUE(Has(ErrorWith({"log.samples_per_prompt=17"}),
                  "log.samples_per_prompt must be in [1, 16], got 17"));
  EXPECT_TRUE(Has(ErrorWith({"data.val_tokens=-5"}), "data.val_tokens"));
  EXPECT_TRUE(Has(ErrorWith({"train.max_seconds=-1"}), "train.max_seconds"));
  EXPECT_TRUE(Has(ErrorWith({"train.stop_after_steps_below=-1"}),
                  "train.stop_after_steps_below must be >= 0"));
  // Several problems are all reported, each prefixed by the file.
  const std::string many = ErrorWith({"optim.lr=-1", "optim.eps=0"});
  EXPECT_TRUE(Has(many, "test.pbtxt: optim.lr")) << many;
  EXPECT_TRUE(Has(many, "test.pbtxt: optim.eps")) << many;
  // A section given twice in the file is a syntax error with its line.
  EXPECT_TRUE(Has(ErrorOf(std::string(kGood) + "model { num_heads: 5 }"),
                  "test.pbtxt:5:"));
}

TEST(Config, OverridesApplyAndExplainMistakes) {
  auto c = *ParseConfigText(kGood, "test.pbtxt");
  ASSERT_TRUE(ApplyOverride("train.max_steps=20", &c).ok());
  EXPECT_EQ(c.train().max_steps(), 20);
  ASSERT_TRUE(ApplyOverride("optim.lr=3e-4", &c).ok());
  EXPECT_DOUBLE_EQ(c.optim().lr(), 3e-4);
  ASSERT_TRUE(ApplyOverride("log.run_name=abc", &c).ok());
  EXPECT_EQ(c.log().run_name(), "abc");
  ASSERT_TRUE(ApplyOverride("train.precision=FP64", &c).ok());
  EXPECT_EQ(c.train().precision(), config::FP64);
  ASSERT_TRUE(ApplyOverride("distributed.zero_stage=1", &c).ok());
  ASSERT_TRUE(ApplyOverride("checkpoint.every_steps=100", &c).ok());
  // A list: '=' sets it to one value (none when empty), '+=' adds one.
  ASSERT_TRUE(ApplyOverride("log.sample_prompts+=ROMEO:", &c).ok());
  ASSERT_TRUE(ApplyOverride("log.sample_prompts+=\"JULIET:\"", &c).ok());
  EXPECT_EQ(c.log().sample_prompts().size(), 2);
  EXPECT_EQ(c.log().sample_prompts(1), "JULIET:");
  ASSERT_TRUE(ApplyOverride("log.sample_prompts=First Citizen:", &c).ok());
  ASSERT_EQ(c.log().sample_prompts().size(), 1);
  EXPECT_EQ(c.log().sample_prompts(0), "First Citizen:");
  ASSERT_TRUE(ApplyOverride("log.sample_prompts=", &c).ok());
  EXPECT_TRUE(c.log().sample_prompts().empty());

  auto message = [&](const std::string& a) {
    const absl::Status s = ApplyOverride(a, &c);
    EXPECT_FALSE(s.ok()) << a;
    return std::string(s.message());
  };
  EXPECT_NE(message("train.max_stepz=5").find("no field 'max_stepz' in train"),
            std::string::npos);
  EXPECT_NE(message("trian.max_steps=5")
                .find("no field 'trian' in the config (did you mean 'train'?)"),
            std::string::npos)
      << message("trian.max_steps=5");
  EXPECT_NE(message("train.max_steps=abc").find("not a valid"),
            std::string::npos);
  EXPECT_NE(message("train=3").find("is a section"), std::string::npos);
  EXPECT_NE(message("train.max_steps").find("expected dotted.field=value"),
            std::string::npos);
  EXPECT_NE(message("train.precision=FP16").find("not a valid"),
            std::string::npos);
  // An enum's bad value lists the good ones.
  EXPECT_NE(message("train.device=GPU")
                .find("'GPU' is not a valid enum for train.device (one of "
                      "AUTO, CPU, CUDA)"),
            std::string::npos)
      << message("train.device=GPU");
  EXPECT_NE(message("train.max_steps+=5").find("'+=' adds to a list"),
            std::string::npos);
}

// A --set of one data source replaces the file's other (and its val set's
// field), said in a note; both --set: the checks speak as before.
TEST(Config, SettingADataSourceReplacesTheOther) {
  const std::string tiny = SourceDir() + "/configs/tiny_cpu.pbtxt";
  auto shards = LoadConfig(tiny,
                           {"data.train_shards=\"s/x_train*.bin\"",
                            "data.val_shards=\"s/x_val.bin\""},
                           1);
  ASSERT_TRUE(shards.ok()) << shards.status();
  EXPECT_EQ(shards->config.data().train_shards(), "s/x_train*.bin");
  EXPECT_TRUE(shards->config.data().train_text().empty());
  EXPECT_EQ(shards->config.data().val_tokens(), 0);
  EXPECT_EQ(shards->notes, (std::vector<std::string>{
                               "--set data.train_shards replaces the config's "
                               "data.train_text and data.val_tokens"}));
  // Back the other way, from a config with shards.
  const auto path =
      std::filesystem::temp_directory_path() / "gpt2_config_source.pbtxt";
  {
    auto base = LoadConfig(tiny, {}, 1);
    ASSERT_TRUE(base.ok());
    config::RunConfig c = base->config;
    c.mutable_data()->clear_train_text();
    c.mutable_data()->clear_val_tokens();
    c.mutable_data()->set_train_shards("s/x_train*.bin");
    c.mutable_data()->set_val_shards("s/x_val.bin");
    std::string text;
    ASSERT_TRUE(google::protobuf::TextFormat::PrintToString(c, &text));
    std::ofstream(path) << text;
  }
  auto back = LoadConfig(path.string(),
                         {"data.train_text=\"tinyshakespeare/input.txt\""}, 1);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->config.data().train_shards().empty());
  EXPECT_TRUE(back->config.data().val_shards().empty());
  EXPECT_EQ(back->notes.size(), 1u);
  // Both sources --set: nothing replaced, the check says so.
  auto both = LoadConfig(
      tiny, {"data.train_shards=\"s/x*.bin\"", "data.train_text=\"t.txt\""}, 1);
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.status().message().find("set exactly one of"),
            std::string::npos)
      << both.status();
  std::filesystem::remove(path);
}

TEST(Config, LoadConfigAppliesOverridesBeforeValidating) {
  const auto path =
      std::filesystem::temp_directory_path() / "gpt2_config_test.pbtxt";
  { std::ofstream(path) << kGood; }
  auto bad = LoadConfig(path.string(), {"train.seq_len=64"}, 1);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--set train.seq_len=64: train.seq_len "
                                        "(64) exceeds model.max_seq_len (32)"),
            std::string::npos)
      << bad.status();
  // A problem that names a field given by --set, not led by it: that --set's
  // (it blamed the file, which holds micro_batch_size 8). One naming no
  // --set field: the file's.
  auto other = LoadConfig(path.string(), {"train.micro_batch_size=3"}, 1);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().message().find(
                "--set train.micro_batch_size=3: train.total_batch_tokens "
                "(512) is not a multiple of micro_batch_size"),
            0u)
      << other.status();
  auto channels =
      LoadConfig(path.string(), {"model.channels=130", "train.max_steps=7"}, 1);
  ASSERT_FALSE(channels.ok());
  EXPECT_EQ(channels.status().message().find(
                "--set model.channels=130: model.num_heads (4) must divide "
                "model.channels (130)"),
            0u)
      << channels.status();
  auto file = LoadConfig(path.string(), {"optim.lr=0.5"}, 3);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().message().find(
                absl::StrCat(path.string(), ": train.total_batch_tokens")),
            0u)
      << file.status();
  // A value given by --set is blamed on that --set (the last one of its
  // field), not on the file that does not hold it; the others on the file.
  auto set = LoadConfig(
      path.string(),
      {"optim.lr=1", "optim.lr=-2", "optim.eps=0", "model.num_heads=5"}, 1);
  ASSERT_FALSE(set.ok());
  const std::string why(set.status().message());
  EXPECT_NE(why.find("--set optim.lr=-2: optim.lr must be finite and > 0"),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("--set optim.eps=0: optim.eps must be > 0"),
            std::string::npos)
      << why;
  EXPECT_NE(why.find("--set model.num_heads=5: model.num_heads (5) must "
                     "divide model.channels"),
            std::string::npos)
      << why;
  auto good =
      LoadConfig(path.string(), {"train.seq_len=16", "train.max_steps=3"}, 1);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(good->plan.seq_len, 16);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace gpt2
