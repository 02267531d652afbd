#!/usr/bin/env python3
"""Checks an HF export of a gpt2_ddp checkpoint against our own logits.

Loads DIR (written by `gpt2_ckpt export --format hf`) with transformers'
GPT2LMHeadModel in fp32, runs the prompt, and compares with the logits that
`gpt2_ckpt logits CKPT --prompt PROMPT --out OURS.bin` wrote (float32, T x V).

  python3 hf_logits_check.py --hf_dir DIR --ours OURS.bin --prompt "ROMEO:"
"""
import argparse
import sys

import numpy as np
import torch
from transformers import GPT2LMHeadModel, GPT2TokenizerFast


def compare(ours_path, theirs, tolerance, tool):
    """Our logits (float32 file, T x V) against transformers' (T x V): the max |difference|,
    the logits' scale, and whether the difference is within tolerance of that scale."""
    ours = np.fromfile(ours_path, dtype=np.float32).reshape(-1, theirs.shape[-1])
    if ours.shape != theirs.shape:
        sys.exit(f"{tool}: shapes differ: ours {ours.shape}, transformers {theirs.shape}")
    diff = np.abs(ours - theirs).max()
    scale = np.abs(theirs).max()
    return ours, diff, scale, diff <= tolerance * max(scale, 1.0)


def transformers_logits(model, tokenizer_dir, prompt):
    """The prompt's token ids (1 x T) and the fp32 logits (T x V) of a
    GPT2LMHeadModel, with the tokenizer of tokenizer_dir."""
    tokenizer = GPT2TokenizerFast.from_pretrained(tokenizer_dir)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        return ids, model.float()(ids).logits[0].numpy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hf_dir", required=True)
    parser.add_argument("--ours", required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="max |difference| allowed, relative to the logits' range")
    args = parser.parse_args()
    model = GPT2LMHeadModel.from_pretrained(args.hf_dir, torch_dtype=torch.float32).eval()
    ids, theirs = transformers_logits(model, args.hf_dir, args.prompt)
    ours, diff, scale, ok = compare(args.ours, theirs, args.tolerance, "hf_logits_check")
    same_argmax = (ours.argmax(-1) == theirs.argmax(-1)).mean()
    print(f"hf_logits_check: {ids.shape[1]} tokens {ids[0].tolist()}; max |ours - transformers| = "
          f"{diff:.3e} (logit scale {scale:.2f}); argmax agreement {same_argmax:.0%}: "
          f"{'ok' if ok else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
