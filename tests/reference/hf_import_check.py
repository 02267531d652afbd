#!/usr/bin/env python3
"""Checks `gpt2_ckpt import --from hf` on a folder written by transformers itself.

Loads DIR (a GPT-2 folder transformers can read, e.g. our HF export), saves it again
with transformers' own save_pretrained in fp16 (its real names and layout), imports that
folder with gpt2_ckpt, and compares gpt2_ckpt's logits on the prompt with transformers'
logits of the same fp16 weights (run in fp32).

  python3 hf_import_check.py --hf_dir DIR --gpt2_ckpt BIN --data_dir D --work W --prompt "ROMEO:"
"""
import argparse
import os
import subprocess
import sys

import torch
from transformers import GPT2LMHeadModel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_logits_check import compare, transformers_logits  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hf_dir", required=True)
    parser.add_argument("--gpt2_ckpt", required=True)
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="max |difference| allowed, relative to the logits' range")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    saved = os.path.join(args.work, "hf_fp16")
    model = GPT2LMHeadModel.from_pretrained(args.hf_dir, torch_dtype=torch.float32).eval()
    model.half().save_pretrained(saved, safe_serialization=True)
    names = sorted(os.listdir(saved))
    ckpt = os.path.join(args.work, "imported.ckpt")
    ours_path = os.path.join(args.work, "imported_logits.bin")
    for cmd in ([args.gpt2_ckpt, "import", "--from", "hf", "--out", ckpt, saved],
                [args.gpt2_ckpt, "logits", ckpt, "--prompt", args.prompt,
                 "--data_dir", args.data_dir, "--out", ours_path]):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"hf_import_check: {' '.join(cmd[:3])} failed ({names}): "
                     f"{done.stdout}{done.stderr}")
    _, theirs = transformers_logits(model, args.hf_dir, args.prompt)
    _, diff, scale, ok = compare(ours_path, theirs, args.tolerance, "hf_import_check")
    print(f"hf_import_check: transformers' fp16 save_pretrained ({', '.join(names)}) imported; "
          f"max |ours - transformers| = {diff:.3e} (logit scale {scale:.2f}): "
          f"{'ok' if ok else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
