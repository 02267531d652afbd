#!/usr/bin/env python3
"""The Shakespeare recipe in PyTorch, for a same-card, same-recipe convergence comparison.

Trains tests/reference/gpt2_torch.py's GPT-2 124M (same shape and init distribution as
gpt2_ddp) on the same tokens in the same order as gpt2_ddp's loader (contiguous
B*T+1 windows from token 0, 20 per epoch, wrapping), with configs/
gpt2_124m_shakespeare.pbtxt's recipe: AdamW (0.9, 0.95, eps 1e-8), weight decay 0.1 on
2-D weights, clip 1.0, lr 6e-4 -> 6e-5 cosine over 5000 steps after 10 linear warmup
steps. It prints gpt2_ddp's per-step line and its "first at step" / "at every step
since" lines, and writes a metrics.jsonl that launch/plot_loss.py reads, so the two
curves can be laid side by side: where they part, the difference is ours to explain.

  python3 tests/reference/shakespeare_torch.py --tokens tinyshakespeare_train.bin \\
      --max_seconds 90 --metrics metrics_torch.jsonl [--precision bf16|bf16_pure|fp32] [--no_compile]

--precision bf16 is autocast (fp32 weights and residual stream, bf16 matmuls); bf16_pure
stores the model, its activations and gradients in bf16 and keeps fp32 master weights in
the optimizer, as gpt2_ddp's bf16 mode does: the two side by side say whether bf16
storage alone costs steps.

--save_init FILE writes the model's initial weights as an llm.c model file (version 3,
fp32) before the first step, wte's padded rows zeroed and the padded vocab masked out of
the loss as gpt2_ddp does; `gpt2_ddp --init_from FILE` then starts from the very same
weights, so the two curves differ only by the implementation, not by the init's random
draw.

--tokens is an llm.c token shard (gpt2_prepro writes one; 256 x int32 header, magic
20240520, then uint16 tokens).
"""
import argparse
import json
import math
import os
import sys
import time

START = time.time()

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import GPT2, make_optimizer  # noqa: E402


def load_tokens(path):
    header = np.fromfile(path, dtype="<i4", count=256)
    if header.size != 256 or header[0] != 20240520:
        raise SystemExit(f"shakespeare_torch: {path}: not an llm.c token shard")
    tokens = np.fromfile(path, dtype="<u2", offset=1024)
    if tokens.size != header[2]:
        raise SystemExit(f"shakespeare_torch: {path}: header says {header[2]} tokens, "
                         f"file has {tokens.size}")
    return torch.from_numpy(tokens.astype(np.int64))


def lr_at(step, lr=6e-4, min_lr=6e-5, warmup=10, max_steps=5000):
    if step < warmup:
        return lr * (step + 1) / warmup
    ratio = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


VOCAB = 50257  # GPT-2's tokens; rows and logits beyond are padding


def save_llmc(model, path, vocab=VOCAB):
    """llm.c's model file, version 3 (fp32): 256 int32 header, then the tensors in its
    order, each layer's tensors stacked."""
    blocks = model.blocks
    c = model.wte.weight.shape[1]
    header = np.zeros(256, dtype="<i4")
    header[:8] = [20240326, 3, model.wpe.weight.shape[0], vocab, len(blocks),
                  blocks[0].heads, c, model.wte.weight.shape[0]]

    def stack(get):
        return torch.stack([get(b).detach().float().cpu() for b in blocks])
    tensors = [model.wte.weight, model.wpe.weight,
               stack(lambda b: b.ln_1.weight), stack(lambda b: b.ln_1.bias),
               stack(lambda b: b.c_attn.weight), stack(lambda b: b.c_attn.bias),
               stack(lambda b: b.attn_proj.weight), stack(lambda b: b.attn_proj.bias),
               stack(lambda b: b.ln_2.weight), stack(lambda b: b.ln_2.bias),
               stack(lambda b: b.c_fc.weight), stack(lambda b: b.c_fc.bias),
               stack(lambda b: b.mlp_proj.weight), stack(lambda b: b.mlp_proj.bias),
               model.ln_f.weight, model.ln_f.bias]
    with open(path, "wb") as fh:
        fh.write(header.tobytes())
        for t in tensors:
            fh.write(t.detach().float().cpu().contiguous().numpy().astype("<f4").tobytes())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq_len", type=int, default=1024)
    parser.add_argument("--max_steps", type=int, default=5000)
    parser.add_argument("--max_seconds", type=float, default=0.0, help="0 = no limit")
    parser.add_argument("--target", type=float, default=0.099999)
    parser.add_argument("--stop_after_steps_below", type=int, default=100)
    parser.add_argument("--precision", choices=("bf16", "bf16_pure", "fp32"), default="bf16")
    parser.add_argument("--no_compile", action="store_true")
    parser.add_argument("--tf32", action="store_true",
                        help="with --precision fp32: TF32 matmuls (as GPT2_FP32_MATMUL=tf32)")
    parser.add_argument("--metrics", default="")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--save_init", default="",
                        help="write the initial weights here (llm.c v3) for gpt2_ddp --init_from")
    parser.add_argument("--init_only", action="store_true",
                        help="with --save_init: write the initial weights and stop (no training)")
    args = parser.parse_args()
    if args.init_only and not args.save_init:
        parser.error("--init_only needs --save_init")
    if not torch.cuda.is_available():
        raise SystemExit("shakespeare_torch: no CUDA device")
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = args.precision != "fp32" or args.tf32
    torch.backends.cudnn.allow_tf32 = args.precision != "fp32" or args.tf32
    device = "cuda"
    tokens = load_tokens(args.tokens)
    window = args.batch * args.seq_len
    per_epoch = (tokens.numel() - 1) // window
    print(f"shakespeare_torch: {tokens.numel()} tokens, 1 epoch = {per_epoch} batches, "
          f"{args.precision}, {'eager' if args.no_compile else 'torch.compile'}", flush=True)
    model = GPT2().to(device)
    if args.save_init:
        with torch.no_grad():
            model.wte.weight[VOCAB:].zero_()
        model.mask_padded_vocab = VOCAB
        save_llmc(model, args.save_init)
        print(f"shakespeare_torch: initial weights written to {args.save_init}", flush=True)
        if args.init_only:
            return
    master = None
    if args.precision == "bf16_pure":
        # fp32 master weights in the optimizer; the model, its activations and its
        # gradients in bf16.
        master = [torch.nn.Parameter(p.detach().clone().float()) for p in model.parameters()]
        model = model.to(torch.bfloat16)
        opt = make_optimizer(model, params=master)
    else:
        opt = make_optimizer(model)
    step_model = model if args.no_compile else torch.compile(model)
    metrics = open(args.metrics, "w") if args.metrics else None
    position, first_below, below_since = 0, None, None
    for step in range(args.max_steps):
        if position + window + 1 > tokens.numel():
            position = 0
        chunk = tokens[position:position + window + 1].to(device, non_blocking=True)
        position += window
        x = chunk[:-1].view(args.batch, args.seq_len)
        y = chunk[1:].view(args.batch, args.seq_len)
        t0 = time.perf_counter()
        lr = lr_at(step, max_steps=args.max_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        if args.precision == "bf16":
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                loss = step_model(x, y)
        else:
            loss = step_model(x, y)
        loss.backward()
        if master is not None:
            for m, p in zip(master, model.parameters()):
                m.grad = p.grad.float()
            norm = torch.nn.utils.clip_grad_norm_(master, 1.0)
            opt.step()
            with torch.no_grad():
                for m, p in zip(master, model.parameters()):
                    p.copy_(m)  # rounded to bf16
        else:
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        loss_value = loss.item()  # waits for the step
        dt = time.perf_counter() - t0
        elapsed = time.time() - START
        print(f"step {step} | loss: {loss_value:.6f} | lr: {lr:.4e} | dt: {dt * 1000:.2f}ms | "
              f"tok/sec: {window / dt:.2f} | norm: {norm.item():.4f}", flush=True)
        if metrics:
            metrics.write(json.dumps({"step": step, "loss": loss_value, "lr": lr,
                                      "norm": norm.item(), "dt_ms": dt * 1000,
                                      "elapsed_s": elapsed}) + "\n")
        if loss_value < args.target:
            if first_below is None:
                first_below = step
                print(f"loss {loss_value:.6f} < {args.target} first at step {step}, "
                      f"{elapsed:.1f} s after process start", flush=True)
            if below_since is None:
                below_since = (step, elapsed)
            if step - below_since[0] + 1 >= args.stop_after_steps_below:
                print(f"loss below {args.target} at every step since step {below_since[0]} "
                      f"({below_since[1]:.1f} s after process start): "
                      f"{args.stop_after_steps_below} steps; stopping", flush=True)
                break
        else:
            below_since = None
        if args.max_seconds and elapsed > args.max_seconds:
            print(f"stopping: {args.max_seconds:g} s after process start", flush=True)
            break
    print(f"done: {step + 1} steps in {time.time() - START:.1f} s, final loss {loss_value:.6f}")


if __name__ == "__main__":
    main()
