// The tensor-core path of the CUDA attention (src/ops/attention_tc.cu, and
// Hopper's wgmma versions in src/ops/attention_wgmma.cu): bf16
// storage, head sizes 16, 32 and 64, sm_80 or newer. Used by attention.cu,
// which falls back to its portable kernels where these do not apply.
#ifndef GPT2_OPS_ATTENTION_TC_H_
#define GPT2_OPS_ATTENTION_TC_H_

#include <cstddef>
#include <string>

#include "src/core/tensor.h"

struct CUstream_st;

namespace gpt2::cuda::tc {

// Whether the tensor-core kernels handle this storage type and head size on
// the current device: bf16, a compiled head size, compute capability 8.0 or
// newer. Their tensors must also be 16-byte aligned.
bool Supports(DType dtype, int head_size);

// The contracts of gpt2::cuda::AttentionForward / AttentionBackward; `delta`
// is (B, NH, T) f32 holding dout . out for each row, from the caller.
// ldmatrix: the second products read their streamed tiles as rows through
// ldmatrix.trans; false: through transposed copies of those tiles.
void AttentionForward(Tensor out, Tensor lse, Tensor qkv, int B, int T, int C,
                      int NH, bool ldmatrix, CUstream_st* stream);
// parts: which of the two kernels run (both for the op; one at a time for
// ProfileAttentionKernels).
enum BackwardParts { kKeyValuePart = 1, kQueryPart = 2, kBothParts = 3 };
// lean (with ldmatrix): the backward kernels read the block's own rows from
// shared memory each tile instead of holding them in registers (more blocks
// per SM; the same results, bit for bit).
void AttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv, const float* lse,
                       const float* delta, int B, int T, int C, int NH,
                       bool ldmatrix, bool lean, CUstream_st* stream,
                       int parts = kBothParts);

// Hopper's versions of the forward and of the two backward kernels, through
// warpgroup wgmma (src/cuda/wgmma.cuh): bf16, head size 64, a device of
// compute capability 9.0 and a build with sm_90a code, and the device's
// layout self-check passed (asked once per process; WgmmaWhyNot says why
// not, "" when they run). Same contracts as above; results agree with the
// mma.sync kernels to rounding. The forward's own_rows_in_registers: each
// block's queries as A fragments in registers instead of read from shared
// memory at every product (more registers, fewer blocks an SM; the same
// bits). The forward also comes pipelined: each key tile's scores overlapping
// the previous tile's output products (the same bits again); and wide: two
// warpgroups a block sharing each key and value tile (half the L2 traffic;
// the same bits again; its queries in shared memory, not pipelined); and
// split: two warpgroups a block taking its key tiles in turn, half the
// longest chain of tiles (for small batches; not the same bits: the tiles
// are added in another grouping; queries in shared memory, not pipelined).
bool WgmmaSupports(DType dtype, int head_size);
const std::string& WgmmaWhyNot();
struct WgmmaForwardForm {
  bool own_rows_in_registers = false;
  bool pipelined = false;
  bool wide = false;
  bool split = false;
};
void WgmmaAttentionForward(Tensor out, Tensor lse, Tensor qkv, int B, int T,
                           int C, int NH, WgmmaForwardForm form,
                           CUstream_st* stream);
// The dQ kernel (all give the same bits): plain (3 blocks an SM); pipelined
// (each tile's score math overlapping the previous tile's dQ products; the
// default where GPT2_ATTENTION_WGMMA_DQ_PIPELINED=1 and not
// GPT2_ATTENTION_WGMMA_PIPELINED=0: DefaultWgmmaDq); the plain arithmetic
// within 128 registers for 4 blocks an SM; wide (two warpgroups a block
// sharing each key and value tile, as the wide forward); split (two
// warpgroups a block taking its key tiles in turn, as the split forward: not
// the same bits).
enum class WgmmaDq { kPlain, kPipelined, kFourBlocks, kWide, kSplit };
WgmmaDq DefaultWgmmaDq();
// The dK/dV kernel: plain, or split (two warpgroups a block taking its query
// tiles in turn, one block an SM: not the same bits).
enum class WgmmaKv { kPlain, kSplit };
void WgmmaAttentionBackward(Tensor dqkv, Tensor dout, Tensor qkv,
                            const float* lse, const float* delta, int B, int T,
                            int C, int NH, CUstream_st* stream,
                            int parts = kBothParts,
                            WgmmaDq dq = DefaultWgmmaDq(),
                            WgmmaKv kv = WgmmaKv::kPlain);

// The kernels' blocks start the longest row blocks of this many (batch, head)
// pairs first, then their next longest, and so on, pair group by pair group
// (the largest divisor of B * NH up to it): the kernel ends on short blocks
// instead of the long ones of its last heads. 1: pair after pair (the order
// measured on the H100). Default kDefaultBlockGroup, or GPT2_ATTENTION_GROUP
// at start-up (BlockGroupFixed: it was set; else the first backward times the
// two orders, gpt2::cuda::AttentionBackward). The same results whatever the
// order.
constexpr int kDefaultBlockGroup = 32;
void SetBlockGroup(int pairs);
int BlockGroup();
bool BlockGroupFixed();

}  // namespace gpt2::cuda::tc

#endif  // GPT2_OPS_ATTENTION_TC_H_
