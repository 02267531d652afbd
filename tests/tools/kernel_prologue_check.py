#!/usr/bin/env python3
"""Every __global__ function of the CUDA sources begins with KernelPrologue();.

    tests/tools/kernel_prologue_check.py REPO_ROOT

With GPT2_PDL=1 kernels are launched allowed to start before the kernel ahead of
them has finished (src/cuda/launch.h); the prologue's wait is what keeps a
kernel from reading that kernel's output early. A kernel without it would race
under the switch, so this check fails on one (CI, label cpu). Prints each
kernel without the prologue and exits 1; exits 0 when all have it.
"""
import glob
import os
import re
import sys


def kernels_without_prologue(path):
    text = open(path).read()
    # Comments out, so that a kernel's name in prose is not read as code.
    code = re.sub(r"//[^\n]*", lambda m: " " * len(m.group(0)), text)
    missing, count = [], 0
    for match in re.finditer(r"\b__global__\b", code):
        # The function's name: the identifier before the first "(" after it;
        # its body: from the first "{" after the parameter list's ")".
        start = match.end()
        paren = code.index("(", start)
        name = re.findall(r"[A-Za-z_]\w*", code[start:paren])[-1]
        depth, i = 0, paren
        while True:
            if code[i] == "(":
                depth += 1
            elif code[i] == ")":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        brace = code.index("{", i)
        if code[i + 1:brace].strip().endswith(";"):
            continue  # a declaration, not a definition
        count += 1
        body = code[brace + 1:].lstrip()
        if not body.startswith("KernelPrologue();"):
            line = text.count("\n", 0, match.start()) + 1
            missing.append(f"{path}:{line}: {name} does not begin with KernelPrologue();")
    return missing, count


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    root = argv[1]
    files = []
    for pattern in ("src/ops/*.cu", "src/cuda/*.cu", "src/cuda/*.cuh"):
        files += sorted(glob.glob(os.path.join(root, pattern)))
    missing, total = [], 0
    for path in files:
        m, n = kernels_without_prologue(path)
        missing += m
        total += n
    for line in missing:
        print(line)
    if total == 0:
        print("kernel_prologue_check: no kernels found (wrong root?)")
        return 1
    print(f"kernel_prologue_check: {total - len(missing)} of {total} kernels begin "
          "with KernelPrologue();")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
