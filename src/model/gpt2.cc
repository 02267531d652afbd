#include "src/model/gpt2.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <utility>

#include "src/core/env.h"
#include "src/core/error.h"

namespace gpt2 {

struct Gpt2Model::LayerActs {
  // (B,T,C) unless noted.
  Tensor residual_in, ln1, ln1_mean, ln1_rstd /* (B,T) */, qkv /* (B,T,3C) */,
      atty, att_lse /* (B,NH,T) */, residual2, ln2, ln2_mean, ln2_rstd,
      fch /* (B,T,4C) */, fch_gelu /* (B,T,4C) */, residual3;
};

// Every activation buffer (and the token inputs) with its type and size:
// visit(&Gpt2Model::member, dtype, numel), in allocation order. The one list
// the constructor allocates from, the destructor frees and ActivationBytes
// sums.
template <typename Visit>
void Gpt2Model::ForEachActivation(const ActivationSizes& s, Visit&& visit) {
  const int64_t BT = int64_t{s.max_batch} * s.max_seq;
  const int64_t L = s.shape.num_layers, C = s.shape.channels;
  const int64_t ln_layers = s.recompute_layernorm ? 1 : L;
  // Per-row statistics and losses stay in full precision when the data is
  // bf16; the residual stream (and its gradient) has its own type.
  const DType act = s.dtype, stats = StatsDType(s.dtype), stream = s.residual;
  visit(&Gpt2Model::tokens_, DType::kI32, BT);
  visit(&Gpt2Model::targets_, DType::kI32, BT);
  visit(&Gpt2Model::encoded_, stream, BT * C);
  visit(&Gpt2Model::ln1_, act, ln_layers * BT * C);
  visit(&Gpt2Model::ln1_mean_, stats, L * BT);
  visit(&Gpt2Model::ln1_rstd_, stats, L * BT);
  visit(&Gpt2Model::qkv_, act, L * BT * 3 * C);
  visit(&Gpt2Model::atty_, act, L * BT * C);
  visit(&Gpt2Model::att_lse_, stats, L * BT * s.shape.num_heads);
  visit(&Gpt2Model::residual2_, stream, L * BT * C);
  visit(&Gpt2Model::ln2_, act, ln_layers * BT * C);
  visit(&Gpt2Model::ln2_mean_, stats, L * BT);
  visit(&Gpt2Model::ln2_rstd_, stats, L * BT);
  visit(&Gpt2Model::fch_, act, L * BT * 4 * C);
  visit(&Gpt2Model::fch_gelu_, act, (s.recompute_gelu ? 1 : L) * BT * 4 * C);
  visit(&Gpt2Model::residual3_, stream, L * BT * C);
  visit(&Gpt2Model::lnf_, act, BT * C);
  visit(&Gpt2Model::lnf_mean_, stats, BT);
  visit(&Gpt2Model::lnf_rstd_, stats, BT);
  visit(&Gpt2Model::logits_, act, BT * s.shape.padded_vocab_size);
  visit(&Gpt2Model::losses_, stats, BT);
  visit(&Gpt2Model::branch_out_, act, BT * C);
  visit(&Gpt2Model::d_residual_, stream, BT * C);
  if (stream != act) visit(&Gpt2Model::d_residual_cast_, act, BT * C);
  visit(&Gpt2Model::d_ln_, act, BT * C);
  visit(&Gpt2Model::d_qkv_, act, BT * 3 * C);
  visit(&Gpt2Model::d_atty_, act, BT * C);
  visit(&Gpt2Model::d_fch_, act, BT * 4 * C);
  visit(&Gpt2Model::d_fch_gelu_, act, BT * 4 * C);
}

Gpt2Model::Gpt2Model(Backend* backend, const ModelShape& shape, DType dtype,
                     int max_batch, int max_seq, int64_t buffer_elems,
                     bool recompute_gelu, bool recompute_layernorm,
                     bool residual_fp32)
    : backend_(backend),
      shape_(shape),
      dtype_(dtype),
      max_batch_(max_batch),
      max_seq_(max_seq),
      param_list_(BuildParamList(shape)),
      num_params_(TotalParams(param_list_)) {
  recompute_gelu_ = recompute_gelu;
  recompute_layernorm_ = recompute_layernorm;
  if (const char* rows = std::getenv("GPT2_LM_HEAD_ROWS")) {
    lm_head_rows_ = std::max<int64_t>(0, std::atoll(rows));
  }
  residual_dtype_ = ResidualDType(dtype, residual_fp32);
  GPT2_CHECK_MSG(backend_->SupportsDType(dtype), "backend ", backend_->name(),
                 " cannot train in ", DTypeName(dtype));
  GPT2_CHECK(max_seq_ <= shape_.max_seq_len);
  GPT2_CHECK(param_list_.size() == kNumParamTensors);
  GPT2_CHECK(buffer_elems == 0 || buffer_elems >= num_params_);
  const int64_t buffer = buffer_elems == 0 ? num_params_ : buffer_elems;
  params_ = backend_->Alloc(dtype_, buffer);
  grads_ = backend_->Alloc(dtype_, buffer);

  ForEachActivation(
      ActivationSizes{shape_, dtype_, residual_dtype_, max_batch_, max_seq_,
                      recompute_gelu_, recompute_layernorm_},
      [&](Tensor Gpt2Model::*buffer, DType type, int64_t numel) {
        this->*buffer = backend_->Alloc(type, numel);
        activation_bytes_ += (this->*buffer).bytes();
      });
}

int64_t Gpt2Model::ActivationBytes(const ModelShape& shape, DType dtype,
                                   int max_batch, int max_seq,
                                   bool recompute_gelu,
                                   bool recompute_layernorm,
                                   bool residual_fp32) {
  int64_t bytes = 0;
  ForEachActivation(
      ActivationSizes{shape, dtype, ResidualDType(dtype, residual_fp32),
                      max_batch, max_seq, recompute_gelu, recompute_layernorm},
      [&](Tensor Gpt2Model::*, DType type, int64_t numel) {
        bytes += numel * static_cast<int64_t>(DTypeSize(type));
      });
  return bytes;
}

Gpt2Model::~Gpt2Model() {
  backend_->Free(params_);
  backend_->Free(grads_);
  ForEachActivation(
      ActivationSizes{shape_, dtype_, residual_dtype_, max_batch_, max_seq_,
                      recompute_gelu_, recompute_layernorm_},
      [&](Tensor Gpt2Model::*buffer, DType, int64_t) {
        backend_->Free(this->*buffer);
      });
}

void Gpt2Model::InitParams(uint64_t seed) {
  UploadDrawn(DrawParams(shape_, dtype_, seed).get());
}

std::unique_ptr<char[]> Gpt2Model::DrawParams(const ModelShape& shape,
                                              DType dtype, uint64_t seed) {
  const std::vector<ParamSpec> list = BuildParamList(shape);
  // Not a std::vector: its zeroing would touch every page on one thread.
  std::unique_ptr<char[]> bytes(new char[TotalParams(list) * DTypeSize(dtype)]);
  gpt2::InitParamsEncoded(shape, list, seed, dtype, bytes.get());
  return bytes;
}

void Gpt2Model::UploadDrawn(const char* bytes) {
  backend_->Upload(params(), bytes);
}

void Gpt2Model::SetParams(const std::vector<double>& host) {
  GPT2_CHECK(static_cast<int64_t>(host.size()) == num_params_);
  const std::vector<char> bytes = EncodeHost(host, dtype_);
  backend_->Upload(params(), bytes.data());
}

std::vector<double> Gpt2Model::GetParams() const {
  std::vector<char> bytes(params().bytes());
  backend_->Download(bytes.data(), params());
  return DecodeHost(bytes, dtype_);
}

std::vector<double> Gpt2Model::GetGrads() const {
  std::vector<char> bytes(grads().bytes());
  backend_->Download(bytes.data(), grads());
  return DecodeHost(bytes, dtype_);
}

Tensor Gpt2Model::ViewOf(Tensor buffer, int index, int layer) const {
  const ParamSpec& p = param_list_[index];
  if (layer < 0) return buffer.Slice(p.offset, p.numel);
  GPT2_CHECK(p.per_layer && layer < shape_.num_layers);
  return buffer.Slice(p.offset + layer * p.layer_numel(), p.layer_numel());
}

Tensor Gpt2Model::Param(int index, int layer) const {
  return ViewOf(params_, index, layer);
}
Tensor Gpt2Model::Grad(int index, int layer) const {
  return ViewOf(grads_, index, layer);
}

std::vector<std::pair<int64_t, int64_t>> Gpt2Model::LmHeadChunks(
    int64_t rows, int Vp, int64_t max_rows) {
  // Below 2^31 elements per operand: the logits' rows x Vp (wte's Vp x C and
  // the rows x C inputs are smaller).
  const int64_t span_rows = ((int64_t{1} << 31) - 1) / Vp;
  const int64_t cap = max_rows > 0 ? std::min(max_rows, span_rows) : span_rows;
  const int64_t chunks = std::max<int64_t>(1, (rows + cap - 1) / cap);
  const int64_t each = (rows + chunks - 1) / chunks;
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t row = 0; row < rows; row += each) {
    out.emplace_back(row, std::min(each, rows - row));
  }
  return out;
}

Tensor Gpt2Model::logits() const {
  return logits_.Slice(0,
                       int64_t{last_B_} * last_T_ * shape_.padded_vocab_size);
}

Gpt2Model::LayerActs Gpt2Model::Layer(int l, int B, int T) const {
  const int64_t stride =
      int64_t{max_batch_} * max_seq_;  // per-layer slot, in rows
  const int64_t BT = int64_t{B} * T, C = shape_.channels;
  auto rows = [&](Tensor t, int64_t width) {
    return t.Slice(l * stride * width, BT * width);
  };
  LayerActs a;
  a.residual_in = l == 0 ? encoded_.Slice(0, BT * C)
                         : residual3_.Slice((l - 1) * stride * C, BT * C);
  // With recompute_layernorm every layer shares one slot of each.
  a.ln1 = recompute_layernorm_ ? ln1_.Slice(0, BT * C) : rows(ln1_, C);
  a.ln1_mean = rows(ln1_mean_, 1);
  a.ln1_rstd = rows(ln1_rstd_, 1);
  a.qkv = rows(qkv_, 3 * C);
  a.atty = rows(atty_, C);
  a.att_lse = rows(att_lse_, shape_.num_heads);
  a.residual2 = rows(residual2_, C);
  a.ln2 = recompute_layernorm_ ? ln2_.Slice(0, BT * C) : rows(ln2_, C);
  a.ln2_mean = rows(ln2_mean_, 1);
  a.ln2_rstd = rows(ln2_rstd_, 1);
  a.fch = rows(fch_, 4 * C);
  a.fch_gelu =
      recompute_gelu_ ? fch_gelu_.Slice(0, BT * 4 * C) : rows(fch_gelu_, 4 * C);
  a.residual3 = rows(residual3_, C);
  return a;
}

void Gpt2Model::Forward(const int32_t* tokens, const int32_t* targets, int B,
                        int T, double dloss, bool write_grad) {
  GPT2_CHECK(!write_grad || targets != nullptr);
  SetInputs(tokens, targets, B, T);
  QueueForward(B, T, dloss, write_grad, targets != nullptr);
}

void Gpt2Model::SetInputs(const int32_t* tokens, const int32_t* targets, int B,
                          int T) {
  GPT2_CHECK_MSG(B >= 1 && B <= max_batch_ && T >= 1 && T <= max_seq_,
                 "batch (", B, ", ", T, ") exceeds the model's (", max_batch_,
                 ", ", max_seq_, ")");
  const int64_t BT = int64_t{B} * T;
  for (int64_t i = 0; i < BT; ++i) {
    GPT2_CHECK_MSG(tokens[i] >= 0 && tokens[i] < shape_.vocab_size, "token ",
                   tokens[i], " at ", i, " outside the vocab");
  }
  backend_->Upload(tokens_.Slice(0, BT), tokens);
  host_tokens_.assign(tokens, tokens + BT);
  if (targets != nullptr) backend_->Upload(targets_.Slice(0, BT), targets);
}

void Gpt2Model::QueueForward(int B, int T, double dloss, bool write_grad,
                             bool with_targets) {
  GPT2_CHECK(!write_grad || with_targets);
  GPT2_CHECK_MSG(int64_t{B} * T == static_cast<int64_t>(host_tokens_.size()),
                 "QueueForward's batch (", B, ", ", T,
                 ") is not the one SetInputs copied");
  const int64_t BT = int64_t{B} * T;
  const int C = shape_.channels, NH = shape_.num_heads, L = shape_.num_layers;
  const int Vp = shape_.padded_vocab_size;
  last_B_ = B;
  last_T_ = T;
  have_dlogits_ = false;

  Tensor tok = tokens_.Slice(0, BT);
  backend_->EncoderForward(encoded_.Slice(0, BT * C), tok, Param(kWte),
                           Param(kWpe), B, T, C);
  Tensor branch = branch_out_.Slice(0, BT * C);
  Tensor lnf = lnf_.Slice(0, BT * C);
  // Each residual add is fused with the LayerNorm that reads it: the next
  // layer's ln1, or the final one.
  {
    const LayerActs first = Layer(0, B, T);
    backend_->LayerNormForward(first.ln1, first.ln1_mean, first.ln1_rstd,
                               first.residual_in, Param(kLn1w, 0),
                               Param(kLn1b, 0), BT, C);
  }
  for (int l = 0; l < L; ++l) {
    const LayerActs a = Layer(l, B, T);
    backend_->MatmulForward(a.qkv, a.ln1, Param(kQkvw, l), Param(kQkvb, l), BT,
                            C, 3 * C);
    backend_->AttentionForward(a.atty, a.att_lse, a.qkv, B, T, C, NH);
    backend_->MatmulForward(branch, a.atty, Param(kAttprojw, l),
                            Param(kAttprojb, l), BT, C, C);
    backend_->ResidualLayerNormForward(a.residual2, a.ln2, a.ln2_mean,
                                       a.ln2_rstd, a.residual_in, branch,
                                       Param(kLn2w, l), Param(kLn2b, l), BT, C);
    backend_->MatmulGeluForward(a.fch, a.fch_gelu, a.ln2, Param(kFcw, l),
                                Param(kFcb, l), BT, C, 4 * C);
    backend_->MatmulForward(branch, a.fch_gelu, Param(kFcprojw, l),
                            Param(kFcprojb, l), BT, 4 * C, C);
    if (l + 1 < L) {
      const LayerActs next = Layer(l + 1, B, T);
      backend_->ResidualLayerNormForward(
          a.residual3, next.ln1, next.ln1_mean, next.ln1_rstd, a.residual2,
          branch, Param(kLn1w, l + 1), Param(kLn1b, l + 1), BT, C);
    } else {
      backend_->ResidualLayerNormForward(
          a.residual3, lnf, lnf_mean_.Slice(0, BT), lnf_rstd_.Slice(0, BT),
          a.residual2, branch, Param(kLnfw), Param(kLnfb), BT, C);
    }
  }
  Tensor logits = logits_.Slice(0, BT * Vp);
  // The LM head is wte itself (tied), with no bias.
  for (const auto& [row, rows] : LmHeadChunks(BT, Vp, lm_head_rows_)) {
    backend_->MatmulForward(logits_.Slice(row * Vp, rows * Vp),
                            lnf.Slice(row * C, rows * C), Param(kWte), Tensor{},
                            rows, C, Vp);
  }
  if (!with_targets) return;
  Tensor tgt = targets_.Slice(0, BT);
  backend_->ClassifierForward(logits, losses_.Slice(0, BT), tgt, BT,
                              shape_.vocab_size, Vp, dloss, write_grad);
  have_dlogits_ = write_grad;
}

std::vector<std::pair<int64_t, int64_t>> Gpt2Model::GradRegions(
    int layer) const {
  std::vector<std::pair<int64_t, int64_t>> regions;
  for (const ParamSpec& p : param_list_) {
    if (layer >= 0 && p.per_layer) {
      regions.emplace_back(p.offset + layer * p.layer_numel(), p.layer_numel());
    } else if (layer < 0 && !p.per_layer) {
      regions.emplace_back(p.offset, p.numel);
    }
  }
  return regions;
}

void Gpt2Model::Backward(const std::function<void(int layer)>& grads_done,
                         ParamGrads grads) {
  GPT2_CHECK_MSG(have_dlogits_, "Backward needs a Forward with write_grad");
  // GPT2_GRADS_OVERWRITE=0: the zeroing pass, then adding (the same bits; a
  // fallback should a backend's overwriting ops fail their test on a device).
  if (grads == ParamGrads::kOverwrite && EnvIs("GPT2_GRADS_OVERWRITE", "0")) {
    ZeroGrads();
    grads = ParamGrads::kAccumulate;
  }
  const int B = last_B_, T = last_T_;
  const int64_t BT = int64_t{B} * T;
  const int C = shape_.channels, NH = shape_.num_heads, L = shape_.num_layers;
  const int Vp = shape_.padded_vocab_size;

  // d_res carries the gradient of the residual stream down through the layers;
  // each branch adds its input gradient into it (the residual add's backward).
  Tensor d_res = d_residual_.Slice(0, BT * C);
  Tensor d_ln = d_ln_.Slice(0, BT * C);
  Tensor d_qkv = d_qkv_.Slice(0, BT * 3 * C);
  Tensor d_atty = d_atty_.Slice(0, BT * C);
  Tensor d_fch = d_fch_.Slice(0, BT * 4 * C);
  Tensor d_fch_gelu = d_fch_gelu_.Slice(0, BT * 4 * C);
  // Matmul input gradients overwrite their buffers (no zeroing pass);
  // LayerNorm input gradients add into d_res. Weight gradients may run beside
  // (Backend::JoinWeightGradients). Each LayerNorm backward rewrites d_res,
  // which the fcproj and attproj weight gradients read (directly or through
  // its cast): it waits for all but the last one queued, the fc / qkv weight
  // gradient, which reads d_fch and ln2 / d_qkv and ln1. Those are rewritten
  // (by the next layer's products, attention and recomputed activations) only
  // after the next LayerNorm backward's wait. A layer handed on (grads_done)
  // and the end wait for all.
  backend_->Zero(d_res);

  // Every parameter's gradient is written by exactly one op below, except
  // wte's: the lm_head's product writes it (as `grads` says; its first chunk,
  // the others add), the encoder's backward adds to it.
  ParamGrads lm_head_grads = grads;
  for (const auto& [row, rows] : LmHeadChunks(BT, Vp, lm_head_rows_)) {
    backend_->MatmulBackward(d_ln.Slice(row * C, rows * C), Grad(kWte),
                             Tensor{}, logits_.Slice(row * Vp, rows * Vp),
                             lnf_.Slice(row * C, rows * C), Param(kWte), rows,
                             C, Vp, /*accumulate_dinp=*/false, lm_head_grads);
    lm_head_grads = ParamGrads::kAccumulate;
  }
  backend_->JoinWeightGradients(1);
  backend_->LayerNormBackward(d_res, Grad(kLnfw), Grad(kLnfb), d_ln,
                              Layer(L - 1, B, T).residual3, Param(kLnfw),
                              lnf_mean_.Slice(0, BT), lnf_rstd_.Slice(0, BT),
                              BT, C, grads);
  for (int l = L - 1; l >= 0; --l) {
    const LayerActs a = Layer(l, B, T);
    // MLP branch: residual3 = residual2 + fcproj(gelu(fc(ln2(residual2)))).
    if (recompute_gelu_) backend_->GeluForward(a.fch_gelu, a.fch);
    // Recomputing a LayerNorm rewrites its mean and rstd with the same values.
    if (recompute_layernorm_) {
      backend_->LayerNormForward(a.ln2, a.ln2_mean, a.ln2_rstd, a.residual2,
                                 Param(kLn2w, l), Param(kLn2b, l), BT, C);
    }
    backend_->MatmulBackwardGelu(d_fch, Grad(kFcprojw, l), Grad(kFcprojb, l),
                                 ResidualGradForMatmul(d_res), a.fch_gelu,
                                 Param(kFcprojw, l), a.fch, d_fch_gelu, BT,
                                 4 * C, C, grads);
    backend_->MatmulBackward(d_ln, Grad(kFcw, l), Grad(kFcb, l), d_fch, a.ln2,
                             Param(kFcw, l), BT, C, 4 * C, false, grads);
    backend_->JoinWeightGradients(1);
    backend_->LayerNormBackward(d_res, Grad(kLn2w, l), Grad(kLn2b, l), d_ln,
                                a.residual2, Param(kLn2w, l), a.ln2_mean,
                                a.ln2_rstd, BT, C, grads);
    // Attention branch: residual2 = residual_in +
    // attproj(attn(qkv(ln1(residual_in)))).
    backend_->MatmulBackward(d_atty, Grad(kAttprojw, l), Grad(kAttprojb, l),
                             ResidualGradForMatmul(d_res), a.atty,
                             Param(kAttprojw, l), BT, C, C, false, grads);
    backend_->AttentionBackward(d_qkv, d_atty, a.qkv, a.atty, a.att_lse, B, T,
                                C, NH);
    if (recompute_layernorm_) {
      backend_->LayerNormForward(a.ln1, a.ln1_mean, a.ln1_rstd, a.residual_in,
                                 Param(kLn1w, l), Param(kLn1b, l), BT, C);
    }
    backend_->MatmulBackward(d_ln, Grad(kQkvw, l), Grad(kQkvb, l), d_qkv, a.ln1,
                             Param(kQkvw, l), BT, C, 3 * C, false, grads);
    backend_->JoinWeightGradients(1);
    backend_->LayerNormBackward(d_res, Grad(kLn1w, l), Grad(kLn1b, l), d_ln,
                                a.residual_in, Param(kLn1w, l), a.ln1_mean,
                                a.ln1_rstd, BT, C, grads);
    if (grads_done) {
      backend_->JoinWeightGradients(0);
      grads_done(l);
    }
  }
  backend_->JoinWeightGradients(0);  // lm_head's wrote wte's gradient too
  backend_->EncoderBackward(Grad(kWte), Grad(kWpe), d_res, tokens_.Slice(0, BT),
                            host_tokens_.data(), B, T, C, grads);
  if (grads_done) grads_done(-1);
  have_dlogits_ = false;
}

Tensor Gpt2Model::ResidualGradForMatmul(Tensor d_res) {
  if (residual_dtype_ == dtype_) return d_res;
  Tensor cast = d_residual_cast_.Slice(0, d_res.numel);
  backend_->Cast(cast, d_res);
  return cast;
}

void Gpt2Model::ZeroGrads() { backend_->Zero(grads_); }

}  // namespace gpt2
