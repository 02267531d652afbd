#!/usr/bin/env python3
"""An independent GPT-2 trainer in numpy (float64), for checking the whole training
algorithm of gpt2_ddp's CPU reference step by step: forward, a hand-written backward,
AdamW with decay on the 2-D weights only, global-norm clipping and the warmup + cosine
schedule, on the same tokens in the same order as gpt2_ddp's loader. It shares no code
with gpt2_ddp; it follows PyTorch's definitions (tests/reference/shakespeare_torch.py).

  python3 tests/reference/gpt2_numpy.py --tokens train.bin --init init.bin \\
      --layers 2 --heads 2 --channels 32 --seq_len 16 --vocab 256 --batch 4 \\
      --steps 30 --lr 1e-3 --min_lr 1e-4 --warmup 3 --losses losses.txt

--init writes the initial weights (GPT-2's init from --seed) as an llm.c model file
(version 3, fp32) for `gpt2_ddp --init_from`; the run then starts from them, rounded to
fp32 as gpt2_ddp reads them. --check_grads compares the backward with central finite
differences on a few weights of each tensor first.
"""
import argparse
import math
import sys

import numpy as np

NAMES = ["wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb", "attprojw", "attprojb",
         "ln2w", "ln2b", "fcw", "fcb", "fcprojw", "fcprojb", "lnfw", "lnfb"]
EPS = 1e-5
# PyTorch's 2-D weights (the layers' tensors are stacked here, so ndim does not tell).
DECAYED = ("wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw")


def shapes(L, C, maxT, Vp):
    return {"wte": (Vp, C), "wpe": (maxT, C), "ln1w": (L, C), "ln1b": (L, C),
            "qkvw": (L, 3 * C, C), "qkvb": (L, 3 * C), "attprojw": (L, C, C),
            "attprojb": (L, C), "ln2w": (L, C), "ln2b": (L, C), "fcw": (L, 4 * C, C),
            "fcb": (L, 4 * C), "fcprojw": (L, C, 4 * C), "fcprojb": (L, C),
            "lnfw": (C,), "lnfb": (C,)}


def init_params(L, C, maxT, V, Vp, seed):
    rng = np.random.default_rng(seed)
    p = {}
    for name, shape in shapes(L, C, maxT, Vp).items():
        if name.startswith("ln") and name.endswith("w"):
            p[name] = np.ones(shape)
        elif name.endswith("b"):
            p[name] = np.zeros(shape)
        else:
            std = 0.02 / math.sqrt(2 * L) if name in ("attprojw", "fcprojw") else 0.02
            p[name] = rng.normal(0.0, std, shape)
    p["wte"][V:] = 0.0
    return p


def write_llmc(path, p, L, NH, C, maxT, V, Vp):
    header = np.zeros(256, dtype="<i4")
    header[:8] = [20240326, 3, maxT, V, L, NH, C, Vp]
    with open(path, "wb") as fh:
        fh.write(header.tobytes())
        for name in NAMES:
            fh.write(p[name].astype("<f4").tobytes())


def layernorm(x, w, b):
    mean = x.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mean) ** 2).mean(-1, keepdims=True) + EPS)
    norm = (x - mean) * rstd
    return norm * w + b, (norm, rstd)


def layernorm_back(dout, w, cache):
    norm, rstd = cache
    dnorm = dout * w
    dx = (dnorm - dnorm.mean(-1, keepdims=True)
          - norm * (dnorm * norm).mean(-1, keepdims=True)) * rstd
    return dx, (dout * norm).reshape(-1, w.shape[-1]).sum(0), dout.reshape(-1, w.shape[-1]).sum(0)


GELU_K = math.sqrt(2.0 / math.pi)


def gelu(x):
    return 0.5 * x * (1.0 + np.tanh(GELU_K * (x + 0.044715 * x ** 3)))


def gelu_back(x):
    u = GELU_K * (x + 0.044715 * x ** 3)
    t = np.tanh(u)
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3 * 0.044715 * x * x)


def forward_backward(p, x_ids, y_ids, L, NH, V, want_grads=True):
    B, T = x_ids.shape
    C = p["wte"].shape[1]
    hs = C // NH
    x = p["wte"][x_ids] + p["wpe"][:T]
    caches = []
    mask = np.triu(np.ones((T, T), dtype=bool), 1)
    for l in range(L):
        ln1, c_ln1 = layernorm(x, p["ln1w"][l], p["ln1b"][l])
        qkv = ln1 @ p["qkvw"][l].T + p["qkvb"][l]
        q, k, v = (qkv[..., i * C:(i + 1) * C].reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
                   for i in range(3))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hs)
        s = np.where(mask, -np.inf, s)
        att = np.exp(s - s.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        y = (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)
        x1 = x + y @ p["attprojw"][l].T + p["attprojb"][l]
        ln2, c_ln2 = layernorm(x1, p["ln2w"][l], p["ln2b"][l])
        h = ln2 @ p["fcw"][l].T + p["fcb"][l]
        g = gelu(h)
        x2 = x1 + g @ p["fcprojw"][l].T + p["fcprojb"][l]
        caches.append((x, ln1, c_ln1, q, k, v, att, y, x1, ln2, c_ln2, h, g))
        x = x2
    lnf, c_lnf = layernorm(x, p["lnfw"], p["lnfb"])
    logits = lnf @ p["wte"][:V].T
    logits = logits - logits.max(-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(-1, keepdims=True)
    n = B * T
    loss = -np.log(probs.reshape(n, V)[np.arange(n), y_ids.reshape(n)]).mean()
    if not want_grads:
        return loss, None
    grads = {name: np.zeros_like(value) for name, value in p.items()}
    dlogits = probs.reshape(n, V).copy()
    dlogits[np.arange(n), y_ids.reshape(n)] -= 1.0
    dlogits = (dlogits / n).reshape(B, T, V)
    grads["wte"][:V] += dlogits.reshape(n, V).T @ lnf.reshape(n, C)
    dlnf = dlogits @ p["wte"][:V]
    dx, grads["lnfw"], grads["lnfb"] = layernorm_back(dlnf, p["lnfw"], c_lnf)
    for l in reversed(range(L)):
        x0, ln1, c_ln1, q, k, v, att, y, x1, ln2, c_ln2, h, g = caches[l]
        # MLP
        grads["fcprojw"][l] = dx.reshape(n, C).T @ g.reshape(n, 4 * C)
        grads["fcprojb"][l] = dx.reshape(n, C).sum(0)
        dg = dx @ p["fcprojw"][l]
        dh = dg * gelu_back(h)
        grads["fcw"][l] = dh.reshape(n, 4 * C).T @ ln2.reshape(n, C)
        grads["fcb"][l] = dh.reshape(n, 4 * C).sum(0)
        dln2 = dh @ p["fcw"][l]
        d, grads["ln2w"][l], grads["ln2b"][l] = layernorm_back(dln2, p["ln2w"][l], c_ln2)
        dx1 = dx + d
        # attention
        grads["attprojw"][l] = dx1.reshape(n, C).T @ y.reshape(n, C)
        grads["attprojb"][l] = dx1.reshape(n, C).sum(0)
        dy = (dx1 @ p["attprojw"][l]).reshape(B, T, NH, hs).transpose(0, 2, 1, 3)
        datt = dy @ v.transpose(0, 1, 3, 2)
        dv = att.transpose(0, 1, 3, 2) @ dy
        ds = att * (datt - (datt * att).sum(-1, keepdims=True)) / math.sqrt(hs)
        dq = ds @ k
        dk = ds.transpose(0, 1, 3, 2) @ q
        dqkv = np.concatenate([z.transpose(0, 2, 1, 3).reshape(B, T, C) for z in (dq, dk, dv)], -1)
        grads["qkvw"][l] = dqkv.reshape(n, 3 * C).T @ ln1.reshape(n, C)
        grads["qkvb"][l] = dqkv.reshape(n, 3 * C).sum(0)
        dln1 = dqkv @ p["qkvw"][l]
        d, grads["ln1w"][l], grads["ln1b"][l] = layernorm_back(dln1, p["ln1w"][l], c_ln1)
        dx = dx1 + d
    np.add.at(grads["wte"], x_ids.reshape(n), dx.reshape(n, C))
    grads["wpe"][:T] += dx.sum(0)
    return loss, grads


def lr_at(step, lr, min_lr, warmup, max_steps):
    if step < warmup:
        return lr * (step + 1) / warmup
    ratio = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


def check_grads(p, x_ids, y_ids, L, NH, V):
    _, grads = forward_backward(p, x_ids, y_ids, L, NH, V)
    rng = np.random.default_rng(0)
    worst = 0.0
    for name in NAMES:
        flat = p[name].reshape(-1)
        rows = p[name].shape[0] if name != "wte" else V
        limit = rows * (flat.size // p[name].shape[0])
        for i in rng.integers(0, limit, 3):
            keep = flat[i]
            h = 1e-5
            flat[i] = keep + h
            up, _ = forward_backward(p, x_ids, y_ids, L, NH, V, False)
            flat[i] = keep - h
            down, _ = forward_backward(p, x_ids, y_ids, L, NH, V, False)
            flat[i] = keep
            numeric = (up - down) / (2 * h)
            analytic = grads[name].reshape(-1)[i]
            err = abs(numeric - analytic) / (abs(numeric) + 1e-6)
            worst = max(worst, err)
            if err > 1e-4:
                raise SystemExit(f"gpt2_numpy: gradient of {name}[{i}]: {analytic} "
                                 f"against finite differences {numeric}")
    print(f"gpt2_numpy: backward matches finite differences (worst relative error {worst:.1e})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--seq_len", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--padded_vocab", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min_lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--weight_decay", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--losses", default="")
    ap.add_argument("--check_grads", action="store_true")
    a = ap.parse_args()
    L, NH, C, T, V, B = a.layers, a.heads, a.channels, a.seq_len, a.vocab, a.batch
    Vp = a.padded_vocab or V
    header = np.fromfile(a.tokens, dtype="<i4", count=256)
    if header.size != 256 or header[0] != 20240520:
        raise SystemExit(f"gpt2_numpy: {a.tokens}: not an llm.c token shard")
    tokens = np.fromfile(a.tokens, dtype="<u2", offset=1024).astype(np.int64)
    p = init_params(L, C, T, V, Vp, a.seed)
    write_llmc(a.init, p, L, NH, C, T, V, Vp)
    p = {name: value.astype(np.float32).astype(np.float64) for name, value in p.items()}
    window = B * T
    if a.check_grads:
        chunk = tokens[:window + 1]
        check_grads(p, chunk[:-1].reshape(B, T), chunk[1:].reshape(B, T), L, NH, V)
    m = {name: np.zeros_like(v) for name, v in p.items()}
    v2 = {name: np.zeros_like(v) for name, v in p.items()}
    position, losses = 0, []
    for step in range(a.steps):
        if position + window + 1 > tokens.size:
            position = 0
        chunk = tokens[position:position + window + 1]
        position += window
        loss, grads = forward_backward(p, chunk[:-1].reshape(B, T), chunk[1:].reshape(B, T),
                                       L, NH, V)
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        scale = a.clip / (norm + 1e-6) if norm > a.clip else 1.0
        lr = lr_at(step, a.lr, a.min_lr, a.warmup, a.steps)
        t = step + 1
        for name in NAMES:
            g = grads[name] * scale
            m[name] = 0.9 * m[name] + 0.1 * g
            v2[name] = 0.95 * v2[name] + 0.05 * g * g
            update = (m[name] / (1 - 0.9 ** t)) / (np.sqrt(v2[name] / (1 - 0.95 ** t)) + 1e-8)
            decay = a.weight_decay if name in DECAYED else 0.0
            p[name] = p[name] - lr * (update + decay * p[name])
        losses.append(loss)
        print(f"step {step} | loss: {loss:.6f} | lr: {lr:.4e} | norm: {norm:.4f}", flush=True)
    if a.losses:
        with open(a.losses, "w") as fh:
            fh.write("".join(f"{x:.10f}\n" for x in losses))


if __name__ == "__main__":
    sys.exit(main())
