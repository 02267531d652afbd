// The one list of GPT-2's parameter tensors. Allocation, init, weight-decay
// groups, ZeRO sharding, checkpoints and the llm.c and Hugging Face formats
// all walk this list; nothing else names them. All tensors live in one flat
// buffer in list order; wte is tied to the LM head.
#ifndef GPT2_MODEL_PARAMS_H_
#define GPT2_MODEL_PARAMS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "src/core/tensor.h"

namespace gpt2 {

struct ModelShape {
  int num_layers = 0;         // L
  int num_heads = 0;          // NH
  int channels = 0;           // C
  int max_seq_len = 0;        // maxT
  int vocab_size = 0;         // V
  int padded_vocab_size = 0;  // Vp

  static ModelShape Gpt2Small();  // 124M: L=12, NH=12, C=768, maxT=1024

  // The padded vocab a config asks for: `padded` itself, or with 0, V rounded
  // up to a multiple of 128 (50,257 -> 50,304) so the LM-head matmul tiles
  // evenly.
  static int PaddedVocab(int vocab_size, int padded) {
    return padded != 0 ? padded : (vocab_size + 127) / 128 * 128;
  }
};

enum class ParamInit {
  kNormal,          // N(0, 0.02)
  kNormalResidual,  // N(0, 0.02 / sqrt(2L)): projections into the residual
                    // stream
  kZeros,
  kOnes,
};

struct ParamSpec {
  std::string name;            // e.g. "qkvw"
  std::vector<int64_t> shape;  // leading L for per-layer tensors
  bool per_layer = false;      // shape[0] == L
  bool decayed = false;        // weight decay applies (2-D weights)
  ParamInit init = ParamInit::kZeros;
  // Its name in Hugging Face's GPT2LMHeadModel (a per-layer one under
  // transformer.h.{i}.), and whether it is stored there transposed (Conv1D:
  // (in, out); ours (out, in)).
  std::string hf_name;
  bool hf_transposed = false;
  // Rows of the first dimension that hold the model; the rest are padding,
  // zero from the init on and never exported (wte: V of Vp). 0: every row.
  // (Tensors that are not per layer only.)
  int64_t model_rows = 0;
  int64_t offset = 0;  // elements from the start of the flat buffer
  int64_t numel = 0;
  // Elements of one layer's slice (numel / L for per-layer tensors, else
  // numel).
  int64_t layer_numel() const;
  // The slice's shape (per-layer tensors without their leading L).
  std::vector<int64_t> slice_shape() const;
  // Elements that hold the model: model_rows of the rows, or all.
  int64_t model_numel() const;
};

// Positions in BuildParamList's order, for code that walks the model layer by
// layer.
enum ParamIndex {
  kWte,
  kWpe,
  kLn1w,
  kLn1b,
  kQkvw,
  kQkvb,
  kAttprojw,
  kAttprojb,
  kLn2w,
  kLn2b,
  kFcw,
  kFcb,
  kFcprojw,
  kFcprojb,
  kLnfw,
  kLnfb,
  kNumParamTensors
};

// The 16 tensors in llm.c's order: wte, wpe, ln1w, ln1b, qkvw, qkvb, attprojw,
// attprojb, ln2w, ln2b, fcw, fcb, fcprojw, fcprojb, lnfw, lnfb.
std::vector<ParamSpec> BuildParamList(const ModelShape& shape);
int64_t TotalParams(const std::vector<ParamSpec>& list);

// Parameter counts the way PyTorch's optimizer set-up reports them: per-layer
// tensors counted once per layer.
struct ParamGroupCounts {
  int64_t decayed_tensors = 0, decayed_params = 0;
  int64_t other_tensors = 0, other_params = 0;
};
ParamGroupCounts CountParamGroups(const std::vector<ParamSpec>& list,
                                  int num_layers);

// The parameters grouped in the order a forward pass first reads them: the
// tensors before the per-layer ones (the embeddings), then the first layer's
// slice of each per-layer tensor on its own, then each later layer's slices
// together, then the tensors after them (the final LayerNorm). Each group is
// slices of the flat buffer, ascending, adjacent ones with the same decay
// merged; the groups cover the buffer once. An optimizer that updates group
// by group lets the next forward start on a group as soon as it is updated
// (Backend::BeginUpdatesBeside): the first layer's ops each wait for their
// own tensors only (the first layer's update is not behind a forward layer
// as the later ones are).
struct ParamSlice {
  int64_t offset = 0, numel = 0;
  bool decayed = false;
};
std::vector<std::vector<ParamSlice>> ForwardUpdateGroups(
    const std::vector<ParamSpec>& list, int num_layers);

// Fills host memory `params` (TotalParams elements) with GPT-2's init: weights
// N(0, 0.02), residual projections scaled by 1/sqrt(2L), LayerNorm weights 1,
// biases 0, and the padded vocab rows of wte zero.
void InitParams(const ModelShape& shape, const std::vector<ParamSpec>& list,
                uint64_t seed, std::vector<double>* params);
// The same values, written straight into `out` (TotalParams elements of
// `dtype`, encoded as EncodeHost would), in parallel and with no
// double-precision copy of the model: start-up's way.
void InitParamsEncoded(const ModelShape& shape,
                       const std::vector<ParamSpec>& list, uint64_t seed,
                       DType dtype, char* out);

}  // namespace gpt2

#endif  // GPT2_MODEL_PARAMS_H_
