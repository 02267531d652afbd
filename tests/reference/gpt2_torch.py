#!/usr/bin/env python3
"""PyTorch reference GPT-2 for same-card speed comparisons with gpt2_bench.

Our own minimal GPT-2 (the same shape and init as gpt2_ddp: tied wte, padded vocab
50304, pre-LayerNorm blocks, tanh GELU), trained with bf16 autocast, SDPA (flash)
attention, fused AdamW and torch.compile: the strong PyTorch baseline. It times the
train step on random tokens and prints the median, like gpt2_bench.

  python3 tests/reference/gpt2_torch.py --batch 16 --seq_len 1024 --steps 20

With --ready_file and --go_file it compiles and warms up, creates the first file, and
waits for the second before its timed steps: launch/device_check.sh compiles it in the
background while the GPU runs work whose timing does not matter, and times it alone.
"""
import argparse
import math
import os
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, channels, heads, layers):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(channels)
        self.c_attn = nn.Linear(channels, 3 * channels)
        self.attn_proj = nn.Linear(channels, channels)
        self.ln_2 = nn.LayerNorm(channels)
        self.c_fc = nn.Linear(channels, 4 * channels)
        self.mlp_proj = nn.Linear(4 * channels, channels)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).contiguous().view(b, t, c))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, layers=12, heads=12, channels=768, max_seq=1024, vocab=50304):
        super().__init__()
        self.wte = nn.Embedding(vocab, channels)
        self.wpe = nn.Embedding(max_seq, channels)
        self.blocks = nn.ModuleList(Block(channels, heads, layers) for _ in range(layers))
        self.ln_f = nn.LayerNorm(channels)
        self.mask_padded_vocab = 0  # > 0: only the first this many logits enter the loss
        # GPT-2's init: N(0, 0.02), residual projections scaled by 1/sqrt(2L), zero biases.
        for name, module in self.named_modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                residual = name.endswith(("attn_proj", "mlp_proj"))
                nn.init.normal_(module.weight, std=0.02 / math.sqrt(2 * layers) if residual else 0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1], device=idx.device))
        for block in self.blocks:
            x = block(x)
        logits = self.ln_f(x) @ self.wte.weight.t()  # tied LM head
        if self.mask_padded_vocab:  # as gpt2_ddp: the padded vocab is not in the softmax
            logits = logits[..., :self.mask_padded_vocab]
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.view(-1))


def make_optimizer(model, lr=6e-4, weight_decay=0.1, params=None):
    """The recipe's AdamW: (0.9, 0.95), eps 1e-8, decay on the 2-D weights only, fused.
    `params` (default: the model's) lets it update fp32 master copies instead."""
    params = list(model.parameters()) if params is None else params
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--no_compile", action="store_true")
    parser.add_argument("--ready_file", help="created once compiled and warmed up")
    parser.add_argument("--go_file", help="waited for (up to --go_wait_s) before the timed steps")
    parser.add_argument("--go_wait_s", type=float, default=600)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpt2_torch.py: no CUDA device")
    torch.manual_seed(1337)
    torch.backends.cuda.matmul.allow_tf32 = True
    device = "cuda"
    model = GPT2().to(device)
    params = sum(p.numel() for p in model.parameters())
    opt = make_optimizer(model)
    step_model = model if args.no_compile else torch.compile(model)
    x = torch.randint(0, 50257, (args.batch, args.seq_len), device=device)
    y = torch.randint(0, 50257, (args.batch, args.seq_len), device=device)
    times = []
    start = time.perf_counter()
    warmup = 3  # the first steps compile and warm up
    for i in range(args.steps + warmup):
        if i == warmup and (args.ready_file or args.go_file):
            print(f"  compiled and warmed up in {time.perf_counter() - start:.1f} s", flush=True)
            if args.ready_file:
                open(args.ready_file, "w").close()
            waited = time.perf_counter()
            while args.go_file and not os.path.exists(args.go_file):
                if time.perf_counter() - waited > args.go_wait_s:
                    raise SystemExit(f"gpt2_torch.py: no {args.go_file} after {args.go_wait_s:.0f} s")
                time.sleep(0.1)
            print(f"  went on after waiting {time.perf_counter() - waited:.1f} s", flush=True)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
            loss = step_model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times.append(dt)
        print(f"  step {i}: {dt * 1000:.1f} ms, loss {loss.item():.4f}", flush=True)
    ms = statistics.median(times) * 1000
    tokens = args.batch * args.seq_len / (ms / 1000)
    flops_per_token = 6 * params + 6 * 12 * 768 * args.seq_len
    props = torch.cuda.get_device_properties(0)
    peak = 989e12 if (props.major, props.minor) == (9, 0) and props.multi_processor_count >= 132 else 0
    mfu = f", MFU {100 * flops_per_token * tokens / peak:.1f}% of 989 TFLOP/s" if peak else ""
    print(f"pytorch reference: {props.name}, {params} params, B={args.batch} T={args.seq_len}, "
          f"bf16 autocast, {'eager' if args.no_compile else 'torch.compile'}: median {ms:.1f} "
          f"ms/step, {tokens:.0f} tokens/s{mfu}, peak memory "
          f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
