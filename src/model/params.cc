#include "src/model/params.h"

#include <algorithm>
#include <cmath>

#include "src/core/error.h"
#include "src/core/rng.h"

namespace gpt2 {

ModelShape ModelShape::Gpt2Small() {
  return ModelShape{12, 12, 768, 1024, 50257, 50304};
}

int64_t ParamSpec::layer_numel() const {
  return per_layer ? numel / shape[0] : numel;
}

std::vector<int64_t> ParamSpec::slice_shape() const {
  return per_layer ? std::vector<int64_t>(shape.begin() + 1, shape.end())
                   : shape;
}

int64_t ParamSpec::model_numel() const {
  GPT2_CHECK(model_rows == 0 || !per_layer);
  return model_rows == 0 ? numel : numel / shape[0] * model_rows;
}

std::vector<ParamSpec> BuildParamList(const ModelShape& s) {
  const int64_t L = s.num_layers, C = s.channels;
  // name, shape, per layer, decayed, init, Hugging Face name, stored
  // transposed there, rows that hold the model
  std::vector<ParamSpec> list = {
      {"wte",
       {s.padded_vocab_size, C},
       false,
       true,
       ParamInit::kNormal,
       "transformer.wte.weight",
       false,
       s.vocab_size},
      {"wpe",
       {s.max_seq_len, C},
       false,
       true,
       ParamInit::kNormal,
       "transformer.wpe.weight"},
      {"ln1w", {L, C}, true, false, ParamInit::kOnes, "ln_1.weight"},
      {"ln1b", {L, C}, true, false, ParamInit::kZeros, "ln_1.bias"},
      {"qkvw",
       {L, 3 * C, C},
       true,
       true,
       ParamInit::kNormal,
       "attn.c_attn.weight",
       true},
      {"qkvb", {L, 3 * C}, true, false, ParamInit::kZeros, "attn.c_attn.bias"},
      {"attprojw",
       {L, C, C},
       true,
       true,
       ParamInit::kNormalResidual,
       "attn.c_proj.weight",
       true},
      {"attprojb", {L, C}, true, false, ParamInit::kZeros, "attn.c_proj.bias"},
      {"ln2w", {L, C}, true, false, ParamInit::kOnes, "ln_2.weight"},
      {"ln2b", {L, C}, true, false, ParamInit::kZeros, "ln_2.bias"},
      {"fcw",
       {L, 4 * C, C},
       true,
       true,
       ParamInit::kNormal,
       "mlp.c_fc.weight",
       true},
      {"fcb", {L, 4 * C}, true, false, ParamInit::kZeros, "mlp.c_fc.bias"},
      {"fcprojw",
       {L, C, 4 * C},
       true,
       true,
       ParamInit::kNormalResidual,
       "mlp.c_proj.weight",
       true},
      {"fcprojb", {L, C}, true, false, ParamInit::kZeros, "mlp.c_proj.bias"},
      {"lnfw", {C}, false, false, ParamInit::kOnes, "transformer.ln_f.weight"},
      {"lnfb", {C}, false, false, ParamInit::kZeros, "transformer.ln_f.bias"},
  };
  int64_t offset = 0;
  for (ParamSpec& p : list) {
    p.numel = 1;
    for (int64_t d : p.shape) p.numel *= d;
    p.offset = offset;
    offset += p.numel;
  }
  return list;
}

int64_t TotalParams(const std::vector<ParamSpec>& list) {
  return list.empty() ? 0 : list.back().offset + list.back().numel;
}

ParamGroupCounts CountParamGroups(const std::vector<ParamSpec>& list,
                                  int num_layers) {
  ParamGroupCounts counts;
  for (const ParamSpec& p : list) {
    const int64_t tensors = p.per_layer ? num_layers : 1;
    if (p.decayed) {
      counts.decayed_tensors += tensors;
      counts.decayed_params += p.numel;
    } else {
      counts.other_tensors += tensors;
      counts.other_params += p.numel;
    }
  }
  return counts;
}

void InitParamsEncoded(const ModelShape& shape,
                       const std::vector<ParamSpec>& list, uint64_t seed,
                       DType dtype, char* out) {
  const double std_dev = 0.02;
  const double residual_std = 0.02 / std::sqrt(2.0 * shape.num_layers);
  // Every element is written in pieces of at most kChunk, in parallel, so the
  // pages of `out` are first touched by many threads (124M values at
  // start-up). A random piece draws from its own stream seeded by (seed,
  // tensor, chunk of the tensor): the same numbers whatever the thread count.
  constexpr int64_t kChunk = int64_t{1} << 16;
  struct Piece {
    int64_t offset;
    int64_t count;
    double std_dev;  // 0: the constant `value`
    double value;
    uint64_t stream;
  };
  std::vector<Piece> pieces;
  auto add = [&](int64_t offset, int64_t count, double sd, double value,
                 uint64_t tensor) {
    for (int64_t c = 0; c * kChunk < count; ++c) {
      pieces.push_back({offset + c * kChunk,
                        std::min(kChunk, count - c * kChunk), sd, value,
                        (tensor << 32) | static_cast<uint64_t>(c)});
    }
  };
  for (size_t t = 0; t < list.size(); ++t) {
    const ParamSpec& p = list[t];
    // Padding rows (wte's past V) stay zero: they are never a target and are
    // masked in the loss.
    const int64_t count = p.model_numel();
    switch (p.init) {
      case ParamInit::kNormal:
      case ParamInit::kNormalResidual:
        add(p.offset, count,
            p.init == ParamInit::kNormal ? std_dev : residual_std, 0.0, t);
        break;
      case ParamInit::kOnes:
        add(p.offset, count, 0.0, 1.0, t);
        break;
      case ParamInit::kZeros:
        add(p.offset, count, 0.0, 0.0, t);
        break;
    }
    add(p.offset + count, p.numel - count, 0.0, 0.0, t);
  }
  const size_t size = DTypeSize(dtype);
#pragma omp parallel
  {
    std::vector<double> values(kChunk);
#pragma omp for schedule(dynamic)
    for (size_t i = 0; i < pieces.size(); ++i) {
      const Piece& piece = pieces[i];
      if (piece.std_dev == 0.0) {
        std::fill(values.begin(), values.begin() + piece.count, piece.value);
      } else {
        Rng rng(Rng::Mix(seed ^ Rng::Mix(piece.stream)));
        for (int64_t j = 0; j < piece.count; ++j)
          values[j] = piece.std_dev * rng.Normal();
      }
      EncodeValues(values.data(), piece.count, dtype,
                   out + piece.offset * size);
    }
  }
}

std::vector<std::vector<ParamSlice>> ForwardUpdateGroups(
    const std::vector<ParamSpec>& list, int num_layers) {
  std::vector<ParamSlice> front, back;
  std::vector<std::vector<ParamSlice>> layers(num_layers);
  bool seen_per_layer = false;
  const auto append = [](std::vector<ParamSlice>& group, ParamSlice slice) {
    if (slice.numel == 0) return;
    if (!group.empty() && group.back().decayed == slice.decayed &&
        group.back().offset + group.back().numel == slice.offset) {
      group.back().numel += slice.numel;
    } else {
      group.push_back(slice);
    }
  };
  for (const ParamSpec& p : list) {
    if (p.per_layer) {
      seen_per_layer = true;
      for (int l = 0; l < num_layers; ++l) {
        append(layers[l],
               {p.offset + l * p.layer_numel(), p.layer_numel(), p.decayed});
      }
    } else {
      append(seen_per_layer ? back : front, {p.offset, p.numel, p.decayed});
    }
  }
  std::vector<std::vector<ParamSlice>> groups;
  if (!front.empty()) groups.push_back(std::move(front));
  for (int l = 0; l < num_layers; ++l) {
    if (l == 0) {
      for (const ParamSlice& slice : layers[0]) groups.push_back({slice});
    } else if (!layers[l].empty()) {
      groups.push_back(std::move(layers[l]));
    }
  }
  if (!back.empty()) groups.push_back(std::move(back));
  return groups;
}

void InitParams(const ModelShape& shape, const std::vector<ParamSpec>& list,
                uint64_t seed, std::vector<double>* params) {
  params->resize(TotalParams(list));
  InitParamsEncoded(shape, list, seed, DType::kF64,
                    reinterpret_cast<char*>(params->data()));
}

}  // namespace gpt2
