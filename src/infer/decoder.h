// Incremental GPT-2 inference with a KV cache: the interface every backend's
// decoder implements, and the CPU one. A decoder runs a batch of sequences
// that all start from the same prompt (the prompt is run once and its cache
// copied to every row), then appends one token per row per Step, each costing
// one position rather than a re-run of the sequence.
#ifndef GPT2_INFER_DECODER_H_
#define GPT2_INFER_DECODER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "src/backend/backend.h"
#include "src/infer/sampler.h"
#include "src/model/params.h"

namespace gpt2::infer {

class Decoder {
 public:
  virtual ~Decoder() = default;

  virtual std::string name() const = 0;
  virtual const ModelShape& shape() const = 0;
  // The most rows one Start may ask for.
  virtual int max_batch() const = 0;

  // Starts `batch` sequences, each beginning with `prompt` (1..capacity
  // tokens, each in [0, V)). `capacity` is the most positions any row will
  // hold (prompt + later Steps), at most the model's max_seq_len; the cache is
  // sized for it. Afterwards logits() holds each row's next-token logits.
  virtual absl::Status Start(absl::Span<const int32_t> prompt, int batch,
                             int capacity) = 0;
  // Appends tokens[b] to row b (tokens.size() == batch) at position(), then
  // logits() holds the logits after it. FailedPrecondition once position()
  // reaches capacity, or before Start.
  virtual absl::Status Step(absl::Span<const int32_t> tokens) = 0;

  // Draws each row's next token from its logits (src/ops/sample.h: top-k,
  // temperature, row b's uniform from seeds[b] and position() - 1, so a row's
  // draws depend only on its seed and position, not on the batch) into
  // tokens (batch). params must be valid. Decoders over a Backend draw on its
  // device (ops' SampleTopK: only the tokens come back); this default draws
  // on the host from logits() with the ops' CPU reference.
  virtual absl::Status SampleNext(const SamplingParams& params,
                                  absl::Span<const uint64_t> seeds,
                                  absl::Span<int32_t> tokens);
  // Appends the tokens the last SampleNext drew, one per row, as Step would
  // (without sending them back to a device that already has them).
  virtual absl::Status StepSampled();

  // `n` (>= 1) draws in a row: SampleNext, and for each draw but the last
  // StepSampled, so the next one can be drawn; tokens (n * batch, draw-major)
  // gets them all, and the last draw is left for StepSampled (or for nothing,
  // if decoding ends). The same tokens as n separate calls; a device decoder
  // queues all n before it waits for the first (one host round trip instead of
  // n). Feeding the n - 1 stays within capacity().
  virtual absl::Status SampleAhead(const SamplingParams& params,
                                   absl::Span<const uint64_t> seeds, int n,
                                   absl::Span<int32_t> tokens);
  // How many draws SampleAhead is worth asking for at once: 1 where each draw
  // costs the same alone (the CPU), more where a draw's round trip costs more
  // than the work a finished row might waste.
  virtual int lookahead() const { return 1; }

  // (batch, Vp) row-major in host memory: the logits of each row's last
  // position. Entries at or past vocab_size are -infinity, so a padded id can
  // never win an argmax or carry probability. (A device decoder copies them
  // back on the first call after each Start or Step, not before.)
  virtual const float* logits() const = 0;
  virtual int batch() const = 0;
  // Tokens each row holds (all rows hold the same number).
  virtual int position() const = 0;
  virtual int capacity() const = 0;

 protected:
  // The argument checks of SampleNext (sizes against batch()).
  absl::Status CheckSampleArgs(absl::Span<const uint64_t> seeds,
                               absl::Span<int32_t> tokens) const;
  // The same for SampleAhead, and that its n - 1 feeds fit the cache.
  absl::Status CheckAheadArgs(absl::Span<const uint64_t> seeds, int n,
                              absl::Span<int32_t> tokens) const;
  // What the last SampleNext drew (the default implementations).
  std::vector<int32_t> sampled_;
};

// The argument checks every decoder's Start and Step make; messages name the
// argument.
absl::Status CheckStartArgs(const ModelShape& shape, int max_batch,
                            absl::Span<const int32_t> prompt, int batch,
                            int capacity);
absl::Status CheckTokens(const ModelShape& shape,
                         absl::Span<const int32_t> tokens, const char* what);

// The CPU decoder, in fp32. `params` holds TotalParams(BuildParamList(shape))
// values in the flat parameter layout (src/model/params.h). Its results do
// not depend on the thread count or on the batch size: each row is computed
// in a fixed order, so the same seed gives the same text with --num_samples 1
// or 10.
// With `weights` kBF16 every weight is rounded to bf16 (as the GPU's bf16
// decoder holds them) and the matmuls stream the bf16 bits: half the bytes a
// decode step waits for; activations and sums stay fp32.
std::unique_ptr<Decoder> MakeCpuDecoder(const ModelShape& shape,
                                        std::vector<float> params,
                                        int max_batch,
                                        DType weights = DType::kF32);

// A decoder over any Backend (the CPU's or CUDA's), built from the backend's
// ops with `dtype` storage (f32, or bf16 on CUDA): each step runs the model on
// one position per row and attends over the KV cache
// (Backend::AttentionDecode). The prompt runs once, for row 0, and its cache is
// copied to the other rows. `backend` must outlive it.
std::unique_ptr<Decoder> MakeBackendDecoder(Backend* backend, DType dtype,
                                            const ModelShape& shape,
                                            const std::vector<float>& params,
                                            int max_batch);

}  // namespace gpt2::infer

#endif  // GPT2_INFER_DECODER_H_
