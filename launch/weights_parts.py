#!/usr/bin/env python3
"""Brings trained weights back from the GPU machine in pieces a device run can return.

A device run returns at most 64 MiB (files of at most 16 MiB), and 124M weights are
~500 MB in fp32. On the GPU machine, `split` turns an llm.c fp32 model file (what
`gpt2_ckpt export --format llmc` writes) into an llm.c bf16 file (version 5, ~250 MB,
round to nearest even) cut into numbered parts, with SHA256SUMS. Consecutive short
runs copy the parts back; here, `join` checks every part and the whole file against
SHA256SUMS and writes the bf16 model file, which `gpt2_ckpt import --from llmc` reads.

  weights_parts.py split MODEL_F32.bin OUT_DIR [--part_bytes N]
  weights_parts.py join PARTS_DIR [PARTS_DIR ...] --out MODEL_BF16.bin
"""
import argparse
import hashlib
import os
import sys

MAGIC = 20240326
HEADER_BYTES = 256 * 4


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fail(msg):
    print(f"weights_parts: error: {msg}", file=sys.stderr)
    sys.exit(1)


def split(args):
    import numpy as np
    header = np.fromfile(args.model, dtype="<i4", count=256)
    if header.size != 256 or header[0] != MAGIC:
        fail(f"{args.model} is not an llm.c model file (bad magic)")
    if header[1] != 3:
        fail(f"{args.model} is llm.c version {header[1]}; split wants version 3 (fp32)")
    body = np.fromfile(args.model, dtype="<u4", offset=HEADER_BYTES)
    if (os.path.getsize(args.model) - HEADER_BYTES) % 4:
        fail(f"{args.model}: body is not a whole number of fp32 values")
    # fp32 -> bf16, round to nearest even; NaN stays NaN (quiet bit kept).
    nan = (body & 0x7FFFFFFF) > 0x7F800000
    rounded = (body + 0x7FFF + ((body >> 16) & 1)) >> 16
    bf16 = np.where(nan, (body >> 16) | 0x40, rounded).astype("<u2")
    header = header.copy()
    header[1] = 5
    os.makedirs(args.out_dir, exist_ok=True)
    whole = os.path.join(args.out_dir, "model_bf16.bin")
    with open(whole, "wb") as f:
        f.write(header.tobytes())
        f.write(bf16.tobytes())
    sums = [f"{sha256(whole)}  model_bf16.bin"]
    size = os.path.getsize(whole)
    with open(whole, "rb") as f:
        index = 0
        while True:
            chunk = f.read(args.part_bytes)
            if not chunk:
                break
            name = f"part_{index:02d}"
            with open(os.path.join(args.out_dir, name), "wb") as p:
                p.write(chunk)
            sums.append(f"{hashlib.sha256(chunk).hexdigest()}  {name}")
            index += 1
    os.remove(whole)
    with open(os.path.join(args.out_dir, "SHA256SUMS"), "w") as f:
        f.write("\n".join(sums) + "\n")
    print(f"weights_parts: {size} bytes of bf16 weights in {index} parts of at most "
          f"{args.part_bytes} bytes in {args.out_dir}")


def join(args):
    found = {}
    sums_path = None
    for d in args.parts_dirs:
        for name in os.listdir(d):
            if name.startswith("part_"):
                found[name] = os.path.join(d, name)
            elif name == "SHA256SUMS":
                sums_path = os.path.join(d, name)
    if sums_path is None:
        fail("no SHA256SUMS in " + ", ".join(args.parts_dirs))
    expected = {}
    with open(sums_path, errors="replace") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or len(fields[0]) != 64:
                fail(f"{sums_path}:{number}: not a 'SHA256  NAME' line: {line.strip()[:80]!r}")
            expected[fields[1]] = fields[0]
    names = sorted(n for n in expected if n.startswith("part_"))
    if not names or "model_bf16.bin" not in expected:
        fail(f"{sums_path} names no parts, or not model_bf16.bin's sha256: not written by split")
    missing = [n for n in names if n not in found]
    if missing:
        fail(f"missing parts: {', '.join(missing)}")
    h = hashlib.sha256()
    tmp = args.out + ".tmp"
    try:
        with open(tmp, "wb") as out:
            for name in names:
                with open(found[name], "rb") as part:
                    data = part.read()
                if hashlib.sha256(data).hexdigest() != expected[name]:
                    os.remove(tmp)
                    fail(f"{found[name]}: sha256 does not match SHA256SUMS")
                h.update(data)
                out.write(data)
    except OSError:  # a full disk: no half-written file left
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if h.hexdigest() != expected.get("model_bf16.bin"):
        os.remove(tmp)
        fail("the joined file's sha256 does not match SHA256SUMS")
    os.replace(tmp, args.out)
    print(f"weights_parts: {len(names)} parts checked, wrote {args.out} "
          f"({os.path.getsize(args.out)} bytes, sha256 {h.hexdigest()[:16]}...)")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("split", help="fp32 llm.c file -> bf16 parts + SHA256SUMS")
    s.add_argument("model")
    s.add_argument("out_dir")
    s.add_argument("--part_bytes", type=int, default=16_000_000)
    j = sub.add_parser("join", help="parts + SHA256SUMS -> bf16 llm.c file")
    j.add_argument("parts_dirs", nargs="+")
    j.add_argument("--out", required=True)
    args = ap.parse_args()
    try:
        if args.cmd == "split":
            if args.part_bytes <= 0:
                fail("--part_bytes must be positive")
            split(args)
        else:
            join(args)
    except OSError as e:  # a missing file or folder, a full disk: said, not a traceback
        fail(f"{e.filename or ''}: {e.strerror}" if e.filename else str(e))


if __name__ == "__main__":
    main()
