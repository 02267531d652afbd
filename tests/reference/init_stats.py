#!/usr/bin/env python3
"""Statistics of a GPT-2 llm.c model file's initial weights (issue #8's init-draw question).

    python3 tests/reference/init_stats.py MODEL.bin

Per weight tensor: mean, std (against GPT-2's 0.02 and 0.02/sqrt(2L) for the residual
projections), kurtosis (3 for a normal draw), largest value; per-layer stds; correlations
across layers and tensors and along a tensor (0 for independent draws); the chunks of the
draw being distinct; LayerNorm weights of one, biases of zero and wte's padded rows.
MODEL.bin from `gpt2_ckpt export --format llmc` of a checkpoint (ours) or
`shakespeare_torch.py --save_init` (PyTorch's).
"""
import sys
import numpy as np
f = open(sys.argv[1], 'rb')
h = np.frombuffer(f.read(1024), dtype='<i4')
maxT, V, L, NH, C, Vp = (int(v) for v in h[2:8])
w = np.frombuffer(f.read(), dtype='<f4')
shapes = [('wte', (Vp, C)), ('wpe', (maxT, C)), ('ln1w', (L, C)), ('ln1b', (L, C)),
          ('qkvw', (L, 3 * C, C)), ('qkvb', (L, 3 * C)), ('attprojw', (L, C, C)),
          ('attprojb', (L, C)), ('ln2w', (L, C)), ('ln2b', (L, C)), ('fcw', (L, 4 * C, C)),
          ('fcb', (L, 4 * C)), ('fcprojw', (L, C, 4 * C)), ('fcprojb', (L, C)),
          ('lnfw', (C,)), ('lnfb', (C,))]
off, T = 0, {}
for n, s in shapes:
    k = int(np.prod(s))
    T[n] = w[off:off + k].reshape(s).astype(np.float64)
    off += k
print(f"header {h[:8].tolist()}; {off} parameters")
print("expected std: 0.02, residual projections 0.02/sqrt(2L) = %.5f; normal kurtosis 3" % (0.02 / np.sqrt(2 * L)))
for n in ['wte', 'wpe', 'qkvw', 'attprojw', 'fcw', 'fcprojw']:
    x = T[n][:V] if n == 'wte' else T[n]
    m, sd = x.mean(), x.std()
    print(f"{n:9s} mean {m:+.2e} std {sd:.5f} kurtosis {((x - m) ** 4).mean() / sd ** 4:.3f} absmax {np.abs(x).max():.4f}")
for n in ['qkvw', 'attprojw', 'fcw', 'fcprojw']:
    print(f"{n:9s} std by layer: " + ' '.join(f"{T[n][l].std():.5f}" for l in range(L)))
for n in ['ln1w', 'ln2w', 'lnfw']:
    print(f"{n}: all ones {np.all(T[n] == 1)}")
print("biases, max |b| (zero at init; a file saved after one step at lr 1e-30 has ~1e-31): " +
      ', '.join(f"{n} {np.abs(T[n]).max():.1e}" for n in ['ln1b', 'ln2b', 'lnfb', 'qkvb', 'attprojb', 'fcb', 'fcprojb']))
def corr(a, b):
    return np.corrcoef(a.ravel()[:1000000], b.ravel()[:1000000])[0, 1]
print(f"correlation qkvw layer 0 / layer 1 {corr(T['qkvw'][0], T['qkvw'][1]):+.4f}, "
      f"fcw 0 / fcprojw 0 {corr(T['fcw'][0], T['fcprojw'][0]):+.4f}, "
      f"wte rows 0-1023 / wpe {corr(T['wte'][:1024], T['wpe']):+.4f}")
x = T['fcw'].ravel()
print("fcw autocorrelation at lags 1, 2, 65536, 2^20: " + ', '.join(
    f"{np.corrcoef(x[:-g][:2000000], x[g:][:2000000])[0, 1]:+.4f}" for g in (1, 2, 65536, 1 << 20)))
heads = {tuple(x[i:i + 4]) for i in range(0, len(x) - 4, 1 << 16)}
print(f"fcw: {len(range(0, len(x) - 4, 1 << 16))} chunks of 65536, {len(heads)} distinct first values")
print(f"wte padded rows (V..Vp) max |w|: {np.abs(T['wte'][V:]).max()}")
