// gpt2_bench: times the CPU train step of a GPT-2 shape and the tokenizer, and
// prints medians. Speed claims in the README come from this tool's output.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "src/backend/backend.h"
#ifdef GPT2_HAVE_CUDA
#include <cuda_runtime.h>

#include "src/backend/cuda_backend.h"
#include "src/backend/device.h"
#include "src/comm/host_staged_communicator.h"
#include "src/comm/nccl_communicator.h"
#include "src/cuda/check.h"
#include "src/ops/attention.h"
#endif
#include "src/comm/mpi_env.h"
#include "src/core/env.h"
#include "src/core/error.h"
#include "src/core/rng.h"
#include "src/core/threads.h"
#include "src/data/dataset.h"
#include "src/data/tokenizer.h"
#include "src/model/gpt2.h"
#include "src/optim/adamw_optimizer.h"
#include "src/optim/shard_layout.h"
#include "src/tools/cli_common.h"
#include "src/train/layerwise_reduction.h"
#include "src/train/memory_plan.h"
#include "src/train/step_graph.h"
#include "src/train/test_hooks.h"

ABSL_FLAG(int, batch, 4, "Micro-batch B of the timed train step.");
ABSL_FLAG(int, seq_len, 64, "Sequence length T of the timed train step.");
ABSL_FLAG(int, steps, 5,
          "Timed steps (after one warm-up step); the median is reported.");
ABSL_FLAG(int, layers, 12, "GPT-2 shape: layers (12 = 124M).");
ABSL_FLAG(int, channels, 768, "GPT-2 shape: channels.");
ABSL_FLAG(int, heads, 12, "GPT-2 shape: heads.");
ABSL_FLAG(std::string, device, "cpu",
          "Backend of the timed train step: cpu, or cuda (in a CUDA build, on "
          "GPU 0).");
ABSL_FLAG(std::string, precision, "auto",
          "Storage type of the timed train step: bf16 (bf16 params, "
          "activations and grads; fp32 master weights and optimizer state, "
          "as training), fp32, or auto = bf16 where the backend has it "
          "(cuda), else fp32.");
ABSL_FLAG(bool, recompute_gelu, false,
          "Recompute each layer's GELU in the backward pass instead of "
          "keeping it (train.recompute_gelu).");
ABSL_FLAG(bool, residual_fp32, false,
          "bf16: keep the residual stream in fp32 (train.residual_fp32).");
ABSL_FLAG(bool, recompute_layernorm, false,
          "Recompute each layer's LayerNorm outputs in the backward pass "
          "(train.recompute_layernorm).");
ABSL_FLAG(bool, bf16_state, false,
          "bf16: the optimizer's whole state in bf16, no master weights, "
          "rounded stochastically (optim.bf16_state).");
ABSL_FLAG(
    bool, profile, true,
    "After the timed steps, time one step per op (CUDA events; the CPU backend "
    "has no per-op timing).");
ABSL_FLAG(bool, tokenizer, true,
          "Also time tokenizing Tiny Shakespeare (needs the data directory).");
ABSL_FLAG(
    bool, comm, false,
    "Also time the gradient reduction (reduce-scatter + all-gather of the "
    "padded gradient buffer) over the MPI ranks; run under mpirun. With "
    "--device cuda: bf16 GPU buffers over NCCL, or over MPI through host "
    "memory where ranks share a GPU (as training picks).");
ABSL_FLAG(bool, text_tokens, false,
          "Feed the step Tiny Shakespeare's first B*T+1 tokens (the training's "
          "first batch; needs the data directory) instead of uniform random "
          "ones: the kernels whose work follows the tokens (the encoder's wte "
          "gradient grouped by token, ~12% of the text one token; the recorded "
          "update's gathered wte rows) then see training's distribution.");
ABSL_FLAG(std::string, data_dir, "",
          "Data directory; default $GPT2_DATA_DIR, else ./data.");

namespace gpt2 {
namespace {

using Clock = std::chrono::steady_clock;
double Ms(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Peak dense bf16 tensor throughput, recognised by compute capability and SM
// count (H100/H200 SXM: sm_90 with 132 SMs). 0 when unknown.
double PeakBf16Tflops(int major, int minor, int sms) {
  if (major == 9 && minor == 0 && sms >= 132) return 989.0;
  if (major == 9 && minor == 0) return 756.0;  // H100 PCIe (114 SMs)
  if (major == 8 && minor == 0) return 312.0;  // A100
  return 0.0;
}

// The card's peaks, where known: dense bf16 TFLOP/s, memory GB/s.
struct Peaks {
  double tflops = 0.0, gbps = 0.0;
};

// `local_rank` picks the GPU (local rank modulo the GPUs), as the trainer does.
absl::StatusOr<std::unique_ptr<Backend>> MakeBenchBackend(std::string* where,
                                                          Peaks* peaks,
                                                          int local_rank = 0) {
  const std::string device = absl::GetFlag(FLAGS_device);
  *where = absl::StrCat("CPU, ", omp_get_max_threads(), " thread(s)");
#ifdef GPT2_HAVE_CUDA
  if (device == "cuda") {
    std::string why;
    if (CudaDeviceCount(&why) == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("--device cuda, but no usable GPU: ", why));
    }
    const int gpu = local_rank % CudaDeviceCount(&why);
    auto backend = MakeCudaBackend(gpu);
    cudaDeviceProp prop;
    GPT2_CUDA_CHECK(cudaGetDeviceProperties(&prop, gpu));
    peaks->tflops =
        PeakBf16Tflops(prop.major, prop.minor, prop.multiProcessorCount);
    // Memory: two transfers a clock over the bus (HBM's double data rate).
    int clock_khz = 0, bus_bits = 0;
    GPT2_CUDA_CHECK(
        cudaDeviceGetAttribute(&clock_khz, cudaDevAttrMemoryClockRate, gpu));
    GPT2_CUDA_CHECK(cudaDeviceGetAttribute(
        &bus_bits, cudaDevAttrGlobalMemoryBusWidth, gpu));
    peaks->gbps = 2.0 * clock_khz * 1e3 * (bus_bits / 8.0) / 1e9;
    *where = absl::StrCat(prop.name, " (sm_", prop.major, prop.minor, ", ",
                          prop.multiProcessorCount, " SMs, ",
                          static_cast<int>(peaks->gbps), " GB/s memory), ",
                          backend->name());
    return backend;
  }
#endif
  if (device != "cpu") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--device ", device, " ",
        device == "cuda" ? "is not available in this build (built without CUDA)"
                         : "is not a device: cpu or cuda"));
  }
  return MakeCpuBackend();
}

// GPT-2 124M with --layers, --channels and --heads applied.
ModelShape BenchShape() {
  ModelShape shape = ModelShape::Gpt2Small();
  shape.num_layers = absl::GetFlag(FLAGS_layers);
  shape.channels = absl::GetFlag(FLAGS_channels);
  shape.num_heads = absl::GetFlag(FLAGS_heads);
  return shape;
}

// The --precision flag against what the backend can train in.
absl::StatusOr<DType> BenchDType(const Backend& backend) {
  const std::string precision = absl::GetFlag(FLAGS_precision);
  DType dtype = DType::kF32;
  if (precision == "bf16" ||
      (precision == "auto" && backend.SupportsDType(DType::kBF16))) {
    dtype = DType::kBF16;
  } else if (precision != "fp32" && precision != "auto") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--precision must be bf16, fp32 or auto; got '", precision, "'"));
  }
  if (!backend.SupportsDType(dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("backend ", backend.name(), " cannot train in ",
                     DTypeName(dtype), "; use --precision fp32"));
  }
  return dtype;
}

// Tiny Shakespeare's text, from the data directory.
absl::StatusOr<std::string> ReadShakespeare(const std::string& data_dir) {
  const std::string path = data_dir + "/tinyshakespeare/input.txt";
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open (set --data_dir)"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The step's inputs and targets, B * T each: --text_tokens' window of the
// text (from its start, wrapping round where it is shorter), else uniform
// random tokens.
absl::Status StepTokens(int B, int T, int vocab, std::vector<int32_t>* x,
                        std::vector<int32_t>* y) {
  const size_t n = static_cast<size_t>(B) * T;
  x->resize(n);
  y->resize(n);
  if (!absl::GetFlag(FLAGS_text_tokens)) {
    Rng rng(1);
    for (auto& t : *x) t = static_cast<int32_t>(rng.NextU64() % vocab);
    for (auto& t : *y) t = static_cast<int32_t>(rng.NextU64() % vocab);
    return absl::OkStatus();
  }
  const std::string data_dir = ResolveDataDir(absl::GetFlag(FLAGS_data_dir));
  GPT2_ASSIGN_OR_RETURN(const std::string text, ReadShakespeare(data_dir));
  GPT2_ASSIGN_OR_RETURN(Tokenizer tokenizer,
                        Tokenizer::LoadFromDataDir(data_dir));
  const std::vector<int32_t> tokens = tokenizer.Encode(text);
  if (tokens.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(data_dir, "/tinyshakespeare/input.txt: too few tokens"));
  }
  for (size_t i = 0; i < n; ++i) {
    (*x)[i] = tokens[i % tokens.size()];
    (*y)[i] = tokens[(i + 1) % tokens.size()];
  }
  return absl::OkStatus();
}

// The header's word on the inputs with --text_tokens: how many distinct tokens
// (wte rows the encoder gathers; its backward's token groups).
std::string TokensNote(const std::vector<int32_t>& x) {
  if (!absl::GetFlag(FLAGS_text_tokens)) return "";
  std::vector<int32_t> sorted = x;
  std::sort(sorted.begin(), sorted.end());
  const size_t distinct =
      std::unique(sorted.begin(), sorted.end()) - sorted.begin();
  return absl::StrCat("; tokens: Tiny Shakespeare's from its start, ", distinct,
                      " distinct of ", x.size());
}

// Times the train step; returns its median in ms.
absl::StatusOr<double> BenchTrainStep(bool print, int local_rank = 0) {
  const int B = absl::GetFlag(FLAGS_batch), T = absl::GetFlag(FLAGS_seq_len);
  const ModelShape shape = BenchShape();
  std::string where;
  Peaks peaks;
  GPT2_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                        MakeBenchBackend(&where, &peaks, local_rank));
  GPT2_ASSIGN_OR_RETURN(const DType dtype, BenchDType(*backend));
  // The step's memory, planned as training plans it, against what is free:
  // a shape that cannot fit says so (it died in an allocation).
  MemoryPlanInputs memory_in;
  memory_in.shape = shape;
  memory_in.dtype = dtype;
  memory_in.micro_batch = B;
  memory_in.seq_len = T;
  memory_in.buffer_elems = TotalParams(BuildParamList(shape));
  memory_in.optimizer_elems = memory_in.buffer_elems;
  memory_in.recompute_gelu = absl::GetFlag(FLAGS_recompute_gelu);
  memory_in.recompute_layernorm = absl::GetFlag(FLAGS_recompute_layernorm);
  memory_in.residual_fp32 = absl::GetFlag(FLAGS_residual_fp32);
  memory_in.bf16_state = absl::GetFlag(FLAGS_bf16_state);
  const MemoryPlan memory = PlanMemory(memory_in);
  if (const auto available = backend->DeviceMemory();
      available.has_value() && memory.total() > available->free_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "B=", B, " T=", T, " needs ", FormatBytes(memory.total()), " on ",
        available->device, " and ", FormatBytes(available->free_bytes),
        " is free (", DescribeMemoryPlan(memory), "): ",
        memory.total() - memory.activations > available->free_bytes
            ? "the model's weights, gradients and optimizer state alone do "
              "not fit: a smaller shape (--layers, --channels)"
            : "a smaller --batch or --seq_len fits"));
  }
  Gpt2Model model(backend.get(), shape, dtype, B, T, 0,
                  absl::GetFlag(FLAGS_recompute_gelu),
                  absl::GetFlag(FLAGS_recompute_layernorm),
                  absl::GetFlag(FLAGS_residual_fp32));
  model.InitParams(1337);
  AdamWHyper hyper;
  if (absl::GetFlag(FLAGS_bf16_state)) {
    if (dtype != DType::kBF16) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--bf16_state keeps the optimizer state in bf16 beside bf16 "
          "params; this step's are ",
          DTypeName(dtype), " (use --device cuda --precision bf16)"));
    }
    hyper.bf16_state = true;
    hyper.rounding_seed = 0x9E3779B97F4A7C15ull;  // any non-zero value
  }
  AdamWOptimizer opt(backend.get(), model.param_list(), dtype, hyper);
  opt.InitMasterFromParams(model.params());
  opt.AllowUpdatesBeside(true);  // GPT2_UPDATE_BESIDE=1 on the CUDA backend
  Tensor norm_sq = backend->Alloc(model.stats_dtype(), 1);
  const std::string kernels =
      backend->KernelSummary(dtype, shape.channels / shape.num_heads);
  std::vector<int32_t> x, y;
  GPT2_RETURN_IF_ERROR(StepTokens(B, T, shape.vocab_size, &x, &y));
  if (print) {
    std::printf(
        "train step: GPT-2 L=%d C=%d NH=%d (%lld params), B=%d T=%d, %s%s%s%s, "
        "%s%s%s%s\n",
        shape.num_layers, shape.channels, shape.num_heads,
        static_cast<long long>(model.num_params()), B, T, DTypeName(dtype),
        model.residual_dtype() != dtype ? " (f32 residual stream)" : "",
        hyper.bf16_state ? " (optimizer state in bf16)" : "",
        absl::GetFlag(FLAGS_recompute_gelu)
            ? (absl::GetFlag(FLAGS_recompute_layernorm)
                   ? " (GELU, LayerNorm recomputed)"
                   : " (GELU recomputed)")
            : (absl::GetFlag(FLAGS_recompute_layernorm)
                   ? " (LayerNorm recomputed)"
                   : ""),
        where.c_str(), kernels.empty() ? "" : ", kernels: ", kernels.c_str(),
        TokensNote(x).c_str());
  }
  std::vector<double> total, fwd, bwd, upd;
  // Each timed step's mean loss, read after its time is taken: the same
  // tokens every step, so it falls as the model memorises them; a loss that
  // is not finite, or does not fall, is a broken step, whatever its speed
  // (shapes the tests do not reach, as B=64's 3.3e9 logits).
  std::vector<double> step_loss;
  const auto mean_loss = [&] {
    const Tensor losses = model.losses();
    std::vector<char> bytes(losses.bytes());
    backend->Download(bytes.data(), losses);
    double sum = 0;
    for (const double l : DecodeHost(bytes, losses.dtype)) sum += l;
    return sum / (static_cast<double>(B) * T);
  };
  const int steps = absl::GetFlag(FLAGS_steps);
  backend->TimeHostCalls(true);  // what the warm-up's extra time is
  for (int i = 0; i <= steps; ++i) {
    // Tests: GPT2_TEST_NAN_AT=STEP:weights makes the first weight NaN before
    // that step (through the tied lm-head every logit row then holds a NaN).
    NonFiniteWeightsForTests(i, backend.get(), model.params());
    const auto t0 = Clock::now();
    model.Forward(x.data(), y.data(), B, T, 1.0 / (B * T), true);
    backend->Synchronize();
    const auto t1 = Clock::now();
    // The gradients written over the last step's, as training's first
    // micro-step does.
    model.Backward(nullptr, ParamGrads::kOverwrite);
    backend->Synchronize();
    const auto t2 = Clock::now();
    backend->SumSquares(norm_sq, model.grads());
    opt.Step(model.params(), model.grads(), norm_sq, 1e-4, i + 1);
    backend->Synchronize();
    const auto t3 = Clock::now();
    step_loss.push_back(mean_loss());
    if (print) {
      std::printf(
          "  step %d: %.1f ms (forward %.1f, backward %.1f, optimizer "
          "%.1f)%s\n",
          i, Ms(t0, t3), Ms(t0, t1), Ms(t1, t2), Ms(t2, t3),
          i == 0 ? " warm-up" : "");
    }
    if (i == 0) {
      backend->TimeHostCalls(false);
      const std::vector<OpTiming> host_calls = backend->TakeHostCallTimes();
      if (print && !host_calls.empty()) {
        std::printf("  %s\n",
                    FormatHostCallTimes("warm-up", host_calls).c_str());
      }
      continue;
    }
    total.push_back(Ms(t0, t3));
    fwd.push_back(Ms(t0, t1));
    bwd.push_back(Ms(t1, t2));
    upd.push_back(Ms(t2, t3));
  }
  // Steps back to back as training queues them (no host wait between
  // phases or steps; the backward writes the gradients once the updates
  // beside the forward have read them): three rounds of `steps`, each
  // timed from its first call to the end of its last step on the device.
  // The host's time to issue one step's calls, nothing queued ahead (each
  // round's first), says whether the host keeps ahead of the device.
  // GPT2_TRAIN_GRAPHS=1: each step's forward, backward and norm recorded
  // once as a graph and replayed, with the last step's updates beside its
  // forward where those are on (StepGraph, as the trainer does): a round's
  // last update then runs in the next round's first replay (each round after
  // the first is all replays), the last round's after the rounds.
  std::vector<double> rounds, issue;
  std::optional<StepGraph> graph;
  if (EnvIs("GPT2_TRAIN_GRAPHS", "1") && backend->SupportsGraphs())
    graph.emplace(backend.get(), &model, &opt);
  if (backend->asynchronous()) {
    for (int round = 0; round < 3; ++round) {
      backend->Synchronize();
      const auto t0 = Clock::now();
      for (int i = 0; i < steps; ++i) {
        if (graph && graph->ready()) {
          graph->Run(x.data(), y.data(), B, T, 1.0 / (B * T), Tensor{},
                     norm_sq);
        } else {
          model.Forward(x.data(), y.data(), B, T, 1.0 / (B * T), true);
          model.Backward(nullptr, ParamGrads::kOverwrite);
          backend->SumSquares(norm_sq, model.grads());
        }
        const int64_t update = steps + 2 + round * steps + i;
        if (graph) {
          graph->Update(norm_sq, 1e-4, update);
        } else {
          opt.Step(model.params(), model.grads(), norm_sq, 1e-4, update);
        }
        if (i == 0) issue.push_back(Ms(t0, Clock::now()));
      }
      backend->Synchronize();
      rounds.push_back(Ms(t0, Clock::now()) / steps);
    }
    if (graph) graph->Flush();
  }
  // Two more steps with every op timed (CUDA events): where the time goes.
  // The first is thrown away: timing runs the weight gradients inline, and
  // their products' first calls there are what the matmul autotune or
  // search times (on the H200 they put seconds into the one profiled step).
  std::vector<OpTiming> timings;
  if (absl::GetFlag(FLAGS_profile)) {
    backend->EnableOpTiming(true);
    for (int round = 0; round < 2; ++round) {
      model.Forward(x.data(), y.data(), B, T, 1.0 / (B * T), true);
      model.Backward(nullptr, ParamGrads::kOverwrite);
      backend->SumSquares(norm_sq, model.grads());
      opt.Step(model.params(), model.grads(), norm_sq, 1e-4, steps + 2 + round);
      timings = backend->TakeOpTimings();
    }
    backend->EnableOpTiming(false);
  }
  backend->Free(norm_sq);
  const double ms = Median(total);
  const double tokens_per_sec = B * T / (ms / 1000.0);
  for (size_t i = 0; i < step_loss.size(); ++i) {
    if (!std::isfinite(step_loss[i])) {
      return absl::InternalError(absl::StrFormat(
          "the mean loss of step %d is %g: this step is broken at B=%d "
          "T=%d, whatever its speed",
          i, step_loss[i], B, T));
    }
  }
  if (print) {
    std::printf(
        "median over %d steps: %.1f ms/step, %.0f tokens/s (forward %.1f, "
        "backward %.1f, "
        "optimizer %.1f ms)\n",
        steps, ms, tokens_per_sec, Median(fwd), Median(bwd), Median(upd));
    std::printf(
        "loss: %.4f at step 0, %.4f at step %d (the same tokens every step, "
        "lr 1e-4: it falls as they are memorised; ln V = %.4f)\n",
        step_loss.front(), step_loss.back(), steps,
        std::log(static_cast<double>(shape.vocab_size)));
    if (step_loss.back() >= step_loss.front()) {
      std::printf(
          "warning: the loss did not fall over the timed steps: a step that "
          "does not learn is broken, whatever its speed\n");
    }
    if (!rounds.empty()) {
      std::printf(
          "back to back: %.1f ms/step, %.0f tokens/s (median of %zu rounds of "
          "%d steps queued without host waits, as training runs%s; the host "
          "issued a step's calls in %.1f ms)\n",
          Median(rounds), B * T / (Median(rounds) / 1000.0), rounds.size(),
          steps,
          !graph ? ""
          : graph->updates_inside()
              ? absl::StrCat(
                    ", each step a replayed graph with the last "
                    "step's updates beside its forward",
                    graph->rows_first() ? StepGraph::kRowsFirstNote : "")
                    .c_str()
              : ", each step a replayed graph",
          Median(issue));
    }
    // Model flops per token: 6N for the matmuls with weights, 6 L C T for
    // attention.
    const double flops_per_token =
        6.0 * model.num_params() + 6.0 * shape.num_layers * shape.channels * T;
    if (peaks.tflops > 0) {
      std::printf(
          "MFU: %.1f%% of %.0f TFLOP/s (dense bf16 peak; this run is %s)\n",
          100.0 * flops_per_token * tokens_per_sec / (peaks.tflops * 1e12),
          peaks.tflops, DTypeName(dtype));
    }
    double op_total = 0.0;
    for (const OpTiming& t : timings) op_total += t.ms;
    if (!timings.empty())
      std::printf("per-op time of one profiled step (GPU events):\n");
    // Each op's rates from the least it must compute and move (OpTiming):
    // far below the card's peaks is where the time can still come from.
    for (const OpTiming& t : timings) {
      std::string rate;
      if (t.flops > 0 && t.ms > 0)
        rate += absl::StrFormat("  %5.0f TFLOP/s", t.flops / (t.ms * 1e9));
      if (t.bytes > 0 && t.ms > 0) {
        const double gbps = t.bytes / (t.ms * 1e6);
        rate += absl::StrFormat("  %6.0f GB/s", gbps);
        if (peaks.gbps > 0) {
          rate += absl::StrFormat(" (%.0f%% of peak)", 100 * gbps / peaks.gbps);
        }
      }
      std::printf("  %-22s %5lld calls %9.2f ms %5.1f%%%s\n", t.op.c_str(),
                  static_cast<long long>(t.calls), t.ms,
                  100.0 * t.ms / op_total, rate.c_str());
    }
    // The matmuls shape by shape: which of them runs far below the card's
    // peak (each shape's calls summed; rows N x C -> OC in the forward's
    // terms, the backward of that shape on its own line).
    bool shapes_heading = false;
    for (const OpTiming& t : timings) {
      for (const OpTiming& shape : t.shapes) {
        if (!shapes_heading) {
          std::printf("matmuls by shape (N x C -> OC):\n");
          shapes_heading = true;
        }
        std::printf("  %-16s %-22s %4lld calls %8.2f ms %6.0f TFLOP/s\n",
                    t.op.c_str(), shape.op.c_str(),
                    static_cast<long long>(shape.calls), shape.ms,
                    shape.ms > 0 ? shape.flops / (shape.ms * 1e9) : 0.0);
      }
    }
#ifdef GPT2_HAVE_CUDA
    if (absl::GetFlag(FLAGS_device) == "cuda") {
      if (const auto memory = backend->DeviceMemory()) {
        std::printf(
            "GPU memory in use: %.2f GiB of %.2f GiB\n",
            (memory->total_bytes - memory->free_bytes) / double(1 << 30),
            memory->total_bytes / double(1 << 30));
      }
      // Where attention's time goes, kernel by kernel, in both tensor-core
      // versions (each kernel charged for the products it computes).
      const std::vector<cuda::AttentionKernelTime> kernels =
          dtype == DType::kBF16 ? cuda::ProfileAttentionKernels(
                                      B, T, shape.channels, shape.num_heads, 5,
                                      backend->cuda_stream())
                                : std::vector<cuda::AttentionKernelTime>{};
      const std::string forward = cuda::AttentionForwardChoice();
      if (!forward.empty())
        std::printf("attention forward kernels chosen: %s\n", forward.c_str());
      const std::string choice = cuda::AttentionBackwardChoice();
      if (!choice.empty())
        std::printf("attention backward kernels chosen: %s\n", choice.c_str());
      // Everything chosen by timing (attention versions, and with
      // GPT2_MATMUL_AUTOTUNE=1 cuBLASLt's algorithms).
      const std::string tuned = backend->TunedKernels();
      if (!tuned.empty())
        std::printf("kernels chosen by timing: %s\n", tuned.c_str());
      const std::string libraries = backend->LibraryNote();
      if (!libraries.empty()) std::printf("%s\n", libraries.c_str());
      if (!kernels.empty()) {
        std::printf(
            "attention kernels alone, one layer (median of 5; x%d layers):\n",
            shape.num_layers);
      }
      for (const cuda::AttentionKernelTime& k : kernels) {
        std::printf("  %-28s %8.3f ms %6.0f TFLOP/s\n", k.kernel.c_str(), k.ms,
                    k.ms > 0 ? k.flops / (k.ms * 1e9) : 0.0);
      }
    }
#endif
  }
  return ms;
}

// The overlap that reducing the gradients during the backward achieves
// (training's distributed.reduce_during_backward), measured: the same forward
// + backward timed (a) alone, (b) followed by the reduce-scatter and
// all-gather (the reduction after the backward), (c) with each layer's
// gradients reduced to their owners as its backward finishes
// (LayerwiseReduction, as the trainer does), then the all-gather. The
// communication left exposed is b - a without overlap and c - a with it; the
// overlap is the share of b - a that c hides: 1 - (c - a) / (b - a). The three
// run in turn, after a barrier each, so they see the same load.
absl::Status BenchOverlap(const MpiEnv& mpi, Backend* backend,
                          Communicator* comm, Communicator* host) {
  if (mpi.world_size() == 1) {  // (timing noise read as negative seconds)
    std::printf(
        "overlap: one rank, nothing communicated to hide (under mpirun -np 2 "
        "or more it is measured)\n");
    return absl::OkStatus();
  }
  const int B = absl::GetFlag(FLAGS_batch), T = absl::GetFlag(FLAGS_seq_len);
  const ModelShape shape = BenchShape();
  const int64_t n = TotalParams(BuildParamList(shape));
  const ShardLayout shard = ShardLayout::Make(n, mpi.rank(), mpi.world_size());
  GPT2_ASSIGN_OR_RETURN(const DType dtype, BenchDType(*backend));
  Gpt2Model model(backend, shape, dtype, B, T, shard.padded_total());
  model.InitParams(1337);
  const LayerwiseReduction layerwise(model, shard);
  const Tensor mine = model.padded_grads().Slice(
      int64_t{shard.rank} * shard.shard_size, shard.shard_size);
  Tensor own = backend->Alloc(dtype, shard.shard_size);
  Rng rng(1 + mpi.rank());
  std::vector<int32_t> x(B * T), y(B * T);
  for (auto& t : x) t = static_cast<int32_t>(rng.NextU64() % shape.vocab_size);
  for (auto& t : y) t = static_cast<int32_t>(rng.NextU64() % shape.vocab_size);
  enum Mode { kAlone, kAfter, kDuring };
  auto step = [&](Mode mode) {
    backend->Synchronize();
    host->Barrier();
    const auto t0 = Clock::now();
    model.Forward(x.data(), y.data(), B, T, 1.0 / (B * T), true);
    if (mode == kDuring) {
      comm->BeginOverlap();
      model.Backward(
          [&](int layer) {
            layerwise.Reduce(comm, model.padded_grads(), layer);
          },
          ParamGrads::kOverwrite);
      comm->EndOverlap();
      comm->AllGather(model.padded_grads(), mine);
    } else {
      model.Backward(nullptr, ParamGrads::kOverwrite);
      if (mode == kAfter) {
        comm->ReduceScatter(own, model.padded_grads(), ReduceOp::kAverage);
        comm->AllGather(model.padded_grads(), own);
      }
    }
    backend->Synchronize();
    return Ms(t0, Clock::now());
  };
  std::vector<double> alone, after, during;
  for (int i = 0; i <= absl::GetFlag(FLAGS_steps); ++i) {
    const double a = step(kAlone), b = step(kAfter), c = step(kDuring);
    if (i == 0) continue;  // warm-up (and NCCL's first-use set-up)
    alone.push_back(a);
    after.push_back(b);
    during.push_back(c);
  }
  backend->Free(own);
  if (mpi.rank() != 0) return absl::OkStatus();
  const double a = Median(alone), b = Median(after), c = Median(during);
  // An overlap outside [0, 100]% (or no exposed time to hide) is timing noise
  // larger than the effect (few steps, shared cores): said, not printed as a
  // measurement.
  const double overlap = b > a ? 100.0 * (1.0 - (c - a) / (b - a)) : -1.0;
  const bool measured = overlap >= 0.0 && overlap <= 100.0;
  std::printf(
      "overlap: forward + backward %.1f ms alone; %.1f ms with the "
      "reduce-scatter + all-gather after it; %.1f ms with each layer reduced "
      "during the backward (then the all-gather): exposed communication %.1f "
      "-> %.1f ms, %s (median of %d, %s)\n",
      a, b, c, b - a, c - a,
      measured ? absl::StrFormat("overlap %.0f%%", overlap).c_str()
               : "overlap not measurable here (the timings' noise is larger "
                 "than the effect: more --steps, cores of its own)",
      absl::GetFlag(FLAGS_steps), comm->name().c_str());
  return absl::OkStatus();
}

// Times what one optimizer step communicates: the gradients reduce-scattered
// over the padded shards and all-gathered back (ZeRO-0), or the params
// all-gathered (ZeRO-1, same volume); then BenchOverlap measures what
// reducing during the backward hides.
absl::Status BenchComm(const MpiEnv& mpi, double step_ms) {
  const ModelShape shape = BenchShape();
  const int64_t n = TotalParams(BuildParamList(shape));
  const ShardLayout shard = ShardLayout::Make(n, mpi.rank(), mpi.world_size());
  auto comm = MakeMpiCommunicator(mpi);
  std::vector<float> grads(shard.padded_total(), 1.0f), part(shard.shard_size);
  Tensor all{grads.data(), DType::kF32, shard.padded_total()};
  Tensor mine{part.data(), DType::kF32, shard.shard_size};
  std::vector<double> rs_ms, ag_ms;
  for (int i = 0; i <= absl::GetFlag(FLAGS_steps); ++i) {
    comm->Barrier();
    const auto t0 = Clock::now();
    comm->ReduceScatter(mine, all, ReduceOp::kAverage);
    const auto t1 = Clock::now();
    comm->AllGather(all, mine);
    const auto t2 = Clock::now();
    if (i == 0) continue;
    rs_ms.push_back(Ms(t0, t1));
    ag_ms.push_back(Ms(t1, t2));
  }
  const int w = mpi.world_size();
  // A ring reduce-scatter and all-gather each move (w-1)/w of the buffer per
  // rank.
  const double bytes = 2.0 * (w - 1) / w * shard.padded_total() * sizeof(float);
  const double comm_ms = Median(rs_ms) + Median(ag_ms);
  if (mpi.rank() == 0)
    std::printf(
        "comm: %d MPI ranks, %lld params (padded to %lld): %.1f MB sent per "
        "rank "
        "per "
        "step; reduce-scatter %.1f ms + all-gather %.1f ms = %.1f ms (median "
        "of "
        "%d); "
        "compute step %.1f ms; communication %.1f%% of the step\n",
        w, static_cast<long long>(n),
        static_cast<long long>(shard.padded_total()), bytes / 1e6,
        Median(rs_ms), Median(ag_ms), comm_ms, absl::GetFlag(FLAGS_steps),
        step_ms, 100.0 * comm_ms / (comm_ms + step_ms));
  auto backend = MakeCpuBackend();
  return BenchOverlap(mpi, backend.get(), comm.get(), comm.get());
}

#ifdef GPT2_HAVE_CUDA
// The same two collectives on GPU tensors in bf16 (what training reduces),
// over the communicator the trainer would pick: NCCL where each rank has a GPU
// of its own, MPI through host memory where ranks share one. Collectives
// outside a backward are ordered on the compute stream, so synchronizing the
// backend times them.
absl::Status BenchDeviceComm(const MpiEnv& mpi, double step_ms) {
  const ModelShape shape = BenchShape();
  const int64_t n = TotalParams(BuildParamList(shape));
  const ShardLayout shard = ShardLayout::Make(n, mpi.rank(), mpi.world_size());
  std::string why;
  const int gpus = CudaDeviceCount(&why);
  auto backend = MakeCudaBackend(mpi.local_rank() % gpus);
  auto host = MakeMpiCommunicator(mpi);
  const bool shared = mpi.local_size() > gpus;
  std::unique_ptr<Communicator> comm;
#if defined(GPT2_CUDA_EMULATED)
  // The emulated build (CI's gpt2_bench_emu) has no NCCL.
  comm = MakeHostStagedCommunicator(host.get(), backend.get());
  (void)shared;
#else
  comm = shared ? MakeHostStagedCommunicator(host.get(), backend.get())
                : MakeNcclCommunicator(mpi, backend->cuda_stream());
#endif
  Tensor all = backend->Alloc(DType::kBF16, shard.padded_total());
  Tensor mine = backend->Alloc(DType::kBF16, shard.shard_size);
  backend->Zero(all);
  std::vector<double> rs_ms, ag_ms;
  for (int i = 0; i <= absl::GetFlag(FLAGS_steps); ++i) {
    backend->Synchronize();
    host->Barrier();
    const auto t0 = Clock::now();
    comm->ReduceScatter(mine, all, ReduceOp::kAverage);
    backend->Synchronize();
    const auto t1 = Clock::now();
    comm->AllGather(all, mine);
    backend->Synchronize();
    const auto t2 = Clock::now();
    if (i == 0) continue;  // NCCL sets up its channels on first use
    rs_ms.push_back(Ms(t0, t1));
    ag_ms.push_back(Ms(t1, t2));
  }
  backend->Free(all);
  backend->Free(mine);
  const int w = mpi.world_size();
  const double bytes = 2.0 * (w - 1) / w * shard.padded_total() * 2;
  const double comm_ms = Median(rs_ms) + Median(ag_ms);
  if (mpi.rank() == 0)
    std::printf(
        "comm (GPU): %d rank(s) on %d GPU(s), %s, bf16: %.1f MB sent per rank "
        "per "
        "step; reduce-scatter %.2f ms + all-gather %.2f ms = %.2f ms (median "
        "of "
        "%d); compute step %.1f ms; communication %.1f%% of the step without "
        "overlap\n",
        w, gpus, comm->name().c_str(), bytes / 1e6, Median(rs_ms),
        Median(ag_ms), comm_ms, absl::GetFlag(FLAGS_steps), step_ms,
        100.0 * comm_ms / (comm_ms + step_ms));
  return BenchOverlap(mpi, backend.get(), comm.get(), host.get());
}
#endif

absl::Status BenchTokenizer() {
  const std::string data_dir = ResolveDataDir(absl::GetFlag(FLAGS_data_dir));
  GPT2_ASSIGN_OR_RETURN(const std::string text, ReadShakespeare(data_dir));
  GPT2_ASSIGN_OR_RETURN(Tokenizer tokenizer,
                        Tokenizer::LoadFromDataDir(data_dir));
  std::vector<double> times;
  size_t count = 0;
  for (int i = 0; i < 5; ++i) {
    const auto t0 = Clock::now();
    count = tokenizer.Encode(text).size();
    times.push_back(Ms(t0, Clock::now()));
  }
  std::printf(
      "tokenizer: Tiny Shakespeare (%zu bytes) -> %zu tokens, median %.1f ms "
      "over 5 runs (%.1f MB/s)\n",
      text.size(), count, Median(times), text.size() / (Median(times) * 1e3));
  return absl::OkStatus();
}

}  // namespace
}  // namespace gpt2

int main(int argc, char** argv) {
  gpt2::UsePassiveOpenMpWait(argv);
  absl::SetProgramUsageMessage(
      "Benchmarks a GPT-2 train step on the CPU backend, or the GPU with "
      "--device cuda:\n"
      "124M at B=4, T=64 by default (median of --steps after a warm-up), with "
      "a\n"
      "forward/backward/optimizer split and tokens/s (on the GPU also MFU, "
      "per-op times,\n"
      "memory, and the step with steps queued back to back as training runs "
      "them),\n"
      "and GPT-2 BPE tokenization of Tiny Shakespeare.\n\n"
      "  gpt2_bench --data_dir ../shared/data\n"
      "  OMP_NUM_THREADS=1 gpt2_bench --batch 2 --steps 3 --tokenizer=false\n"
      "  gpt2_bench --device cuda --precision bf16 --batch 64 --seq_len 1024 "
      "--steps 10\n\n"
      "The CUDA kernels' switches are GPT2_* environment variables (e.g.\n"
      "GPT2_MATMUL_AUTOTUNE=1, GPT2_UPDATE_BESIDE=1; docs/gpu_runbook.md lists "
      "them); "
      "the "
      "header's\n"
      "kernels line says which ran.");
  if (const int rc = gpt2::ParseFlagsOnly("gpt2_bench", argc, argv)) return rc;
  {
    // Each bad value named (one message for all of them said not which;
    // --channels 0 died of a division by zero).
    std::vector<std::string> bad;
    const auto need = [&](bool ok, const char* flag, int64_t value,
                          const char* want) {
      if (!ok) bad.push_back(absl::StrCat("--", flag, " ", value, ": ", want));
    };
    const int batch = absl::GetFlag(FLAGS_batch);
    const int seq_len = absl::GetFlag(FLAGS_seq_len);
    const int layers = absl::GetFlag(FLAGS_layers);
    const int heads = absl::GetFlag(FLAGS_heads);
    const int channels = absl::GetFlag(FLAGS_channels);
    need(batch >= 1, "batch", batch, "must be >= 1");
    need(seq_len >= 1 && seq_len <= 1024, "seq_len", seq_len,
         "must be in [1, 1024]");
    need(absl::GetFlag(FLAGS_steps) >= 1, "steps", absl::GetFlag(FLAGS_steps),
         "must be >= 1");
    need(layers >= 1, "layers", layers, "must be >= 1");
    need(heads >= 1, "heads", heads, "must be >= 1");
    need(channels >= 1, "channels", channels, "must be >= 1");
    if (heads >= 1 && channels >= 1) {
      need(channels % heads == 0, "channels", channels,
           absl::StrCat("must be a multiple of --heads ", heads).c_str());
    }
    if (!bad.empty()) {
      return gpt2::ReportError(
          "gpt2_bench", absl::InvalidArgumentError(absl::StrJoin(bad, "; ")));
    }
  }
  if (absl::GetFlag(FLAGS_tokenizer)) {
    const absl::Status s = gpt2::BenchTokenizer();
    if (!s.ok()) {
      return gpt2::ReportError(
          "gpt2_bench",
          absl::Status(s.code(),
                       absl::StrCat(s.message(),
                                    " (--tokenizer=false skips the "
                                    "tokenizer's bench, which reads it)")));
    }
  }
  if (absl::GetFlag(FLAGS_comm)) {
    // The communication benches call MPI even on one rank.
    gpt2::MpiEnv& mpi =
        gpt2::MpiEnv::Init(&argc, &argv, gpt2::MpiEnv::Singleton::kWithMpi);
    const absl::StatusOr<double> step_ms =
        gpt2::BenchTrainStep(mpi.rank() == 0, mpi.local_rank());
    if (!step_ms.ok()) return gpt2::ReportError("gpt2_bench", step_ms.status());
    absl::Status comm = absl::OkStatus();
#ifdef GPT2_HAVE_CUDA
    if (absl::GetFlag(FLAGS_device) == "cuda") {
      comm = gpt2::BenchDeviceComm(mpi, *step_ms);
    } else {
      comm = gpt2::BenchComm(mpi, *step_ms);
    }
#else
    comm = gpt2::BenchComm(mpi, *step_ms);
#endif
    return comm.ok() ? 0 : gpt2::ReportError("gpt2_bench", comm);
  }
  if (const absl::StatusOr<double> ms = gpt2::BenchTrainStep(true); !ms.ok()) {
    return gpt2::ReportError("gpt2_bench", ms.status());
  }
  return 0;
}
