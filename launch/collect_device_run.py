#!/usr/bin/env python3
"""Files a GPU run's output (what launch/device_check.sh wrote) under logs/ with a summary.

  python3 launch/collect_device_run.py FILES_DIR [FILES_DIR ...] [--logs logs] [--date 2026-11-26]
      [--compare logs/gpu_h100_2026-11-27_4 ...]

Several FILES_DIRs (the calls of one session, in order) are filed as one run: their
logs appended, their metrics files side by side.

Copies the run's files to logs/gpu_<card>_<date>/ (card from nvidia-smi.txt, e.g.
h100), draws loss.png from metrics.jsonl (launch/plot_loss.py), and writes SUMMARY.md:
the GPU tests' verdict, the benchmark table beside PyTorch, time and steps to the
loss target, decode speed, the two distributed runs' losses side by side, the HF
logits check and the samples. Every figure in it is copied from the run's own logs;
a section the run did not reach says so. --compare adds an earlier folder's metrics
files to the side-by-side loss tables (same seed and data order: curves of one card
differ only by their recipe). --reference names a run that reached loss < 0.1 (e.g.
logs/gpu_h100_2026-11-27_3/metrics.jsonl, the default recipe): every run's steps to
each mean loss are then put beside the reference's, and the ratio projects its steps
and seconds to < 0.1 (issue #8's 45 s question, answered from 45 s sweep runs).
"""
import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

from metrics_file import is_number, read_rows


def read(path):
    """The file's text without terminal colour codes (gtest under mpirun adds them)."""
    try:
        with open(path, errors="replace") as f:
            return re.sub(r"\x1b\[[0-9;]*m", "", f.read())
    except OSError:
        return ""


def card_of(smi, tests):
    """(short name for the folder, full name) from nvidia-smi -q or the tests' header."""
    m = (re.search(r"Product Name\s*:\s*(.+)", smi) or
         re.search(r"^\[ where +\] GPU: ([^(\n]+)", tests, re.M))
    name = m.group(1).strip() if m else "unknown GPU"
    short = re.search(r"(H100|H200|A100|L40S|B200|GH200)", name)
    return (short.group(1).lower() if short else "gpu"), name


def op_rows(section):
    """gpt2_bench's per-op lines: (op, calls, ms, %, TFLOP/s, GB/s), rates '' where not
    printed. Older runs printed attention's rate alone, as '(N TFLOP/s)'."""
    rows = []
    for m in re.finditer(r"^  (\S+) +(\d+) calls +([\d.]+) ms +([\d.]+)%(.*)$", section, re.M):
        tflops = re.search(r"(\d+) TFLOP/s", m.group(5))
        gbs = re.search(r"(\d+) GB/s", m.group(5))
        rows.append((m.group(1), m.group(2), m.group(3), m.group(4),
                     tflops.group(1) if tflops else "", gbs.group(1) if gbs else ""))
    return rows


def bench_table(bench):
    """Rows from gpt2_bench runs (one '===== name' section each) and the PyTorch lines."""
    rows, torch_rows = [], []
    for section in re.split(r"^===== ", bench, flags=re.M)[1:]:
        name = section.split(" ", 1)[0]
        head = re.search(r"^train step: .*B=(\d+) T=(\d+), (\w+)", section, re.M)
        med = re.search(r"^median over \d+ steps: ([\d.]+) ms/step, (\d+) tokens/s", section, re.M)
        mfu = re.search(r"^MFU: ([\d.]+)%", section, re.M)
        back = re.search(r"^back to back: ([\d.]+) ms/step", section, re.M)
        mem = re.search(r"^GPU memory in use: ([\d.]+) GiB", section, re.M)
        kern = re.search(r"kernels: ([^\n]*)", section)
        loss = re.search(r"^loss: ([\d.]+) at step 0, ([\d.]+) at step \d+", section, re.M)
        broken = re.search(r"^gpt2_bench: error: (the mean loss of step .*)$", section, re.M)
        attn = {op: (ms, tflops) for op, _, ms, _, tflops, _ in op_rows(section)
                if op in ("attention_fwd", "attention_bwd")}
        if head and broken:
            rows.append({"name": name, "B": int(head.group(1)), "dtype": head.group(3),
                         "attn": {}, "ms": 0.0, "tps": 0, "mfu": "-", "mem": "-", "back": "-",
                         "loss": f"**broken**: {broken.group(1)}", "kernels": "",
                         "broken": True})
        if head and med:
            rows.append({"name": name, "B": int(head.group(1)), "dtype": head.group(3),
                         "attn": attn,
                         "ms": float(med.group(1)), "tps": int(med.group(2)),
                         "mfu": mfu.group(1) if mfu else "-", "mem": mem.group(1) if mem else "-",
                         "back": back.group(1) if back else "-",
                         # The timed steps' first and last mean loss (older runs did not
                         # print it).
                         "loss": f"{loss.group(1)} -> {loss.group(2)}" if loss else "-",
                         "kernels": kern.group(1).strip() if kern else ""})
        t = re.search(r"^pytorch reference: .*B=(\d+) .*(torch\.compile|eager): median ([\d.]+) "
                      r"ms/step, (\d+) tokens/s(?:, MFU ([\d.]+)%)?.*peak memory ([\d.]+) GiB",
                      section, re.M)
        if t:
            torch_rows.append({"B": int(t.group(1)), "mode": t.group(2), "ms": float(t.group(3)),
                               "tps": int(t.group(4)), "mfu": t.group(5) or "-",
                               "mem": t.group(6)})
    return rows, torch_rows


def batch_fit(rows):
    """The bench_ours_B* steps (back to back where printed, else the synced median) as
    ms = F + s x B by least squares: F is what a step costs whatever the batch (the
    optimizer, launches, small-matmul waves), s what a sequence adds. '' with under three
    batch sizes."""
    points = {}
    for r in rows:
        m = re.fullmatch(r"bench_ours_B(\d+)", r["name"])
        if m and r["dtype"] == "bf16" and not r.get("broken"):
            ms = float(r["back"]) if r["back"] != "-" else r["ms"]
            points[int(m.group(1))] = ms
    if len(points) < 3:
        return ""
    xs, ys = list(points), [points[b] for b in points]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    s = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    f = my - s * mx
    worst = max(abs(y - (f + s * x)) / y for x, y in zip(xs, ys))
    smallest = min(xs)
    return (f"Step time against batch (bench_ours_B{{{','.join(str(b) for b in sorted(xs))}}}, "
            f"back to back where printed): ms = {f:.2f} + {s:.3f} x B (least squares; the "
            f"worst point {100 * worst:.1f}% off the line): {f:.2f} ms a step does not scale "
            f"with the batch, {100 * f / points[smallest]:.0f}% of the B={smallest} step.")


def metrics_rows(path):
    """The step rows of a metrics.jsonl with a loss, in order (metrics_file.read_rows:
    restart rows applied, lines that are not rows skipped; none for a missing file)."""
    try:
        rows = read_rows(path)
    except OSError:
        return []
    out = []
    for row in rows:
        if is_number(row.get("loss")):
            row["loss"] = float(row["loss"])
            out.append(row)
    return out


LAG_LEVELS = (4.0, 3.5, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5)
# One epoch of Tiny Shakespeare (330 sequences of 1,024 tokens): the lag table's means
# are over about that many tokens a run, since the text's sections differ in loss more
# than the runs do (20 steps of B=1 would be one section; of B=16, 320 sequences).
EPOCH_TOKENS = 337920
# The loss held against 0.1: the mean over the latest 16,384 tokens, the original recipe's
# B=16 step (train.stop_loss_tokens in the Shakespeare configs).
STOP_LOSS_TOKENS = 16384


def steps_to_levels(rows, window):
    """{level: the first step where the mean of the `window` logged losses up to it is
    at or below level}, for LAG_LEVELS."""
    found, recent = {}, []
    for row in rows:
        recent = (recent + [row["loss"]])[-window:]
        if len(recent) < window:
            continue
        mean = sum(recent) / window
        for level in LAG_LEVELS:
            if level not in found and mean <= level:
                found[level] = row["step"]
    return found


def median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else None


def tokens_and_window(rows):
    """A run's median tokens a step (tok_per_sec x dt_ms, past the first 10 rows) and
    the logged steps that hold about EPOCH_TOKENS (20 where the rows do not say)."""
    tokens = median([round(r["tok_per_sec"] * r["dt_ms"] / 1000) for r in rows[10:]
                     if r.get("tok_per_sec") and r.get("dt_ms")])
    return tokens, (max(1, round(EPOCH_TOKENS / tokens)) if tokens else 20)


def lag_table(runs, reference_path):
    """Markdown lines: each run's steps to the LAG_LEVELS beside the reference run's
    (the ratio), and what the ratio at the lowest level both reached projects for the
    run to go below 0.1: the reference's first step below it times the ratio, at the
    run's median ms a step, after the run's time to its second step. `runs`: (label,
    metrics path) pairs. Means over about an epoch's tokens a run."""
    ref_rows = metrics_rows(reference_path)
    ref_levels = steps_to_levels(ref_rows, tokens_and_window(ref_rows)[1])
    ref_below = next((r["step"] for r in ref_rows if r["loss"] < 0.1), None)
    if ref_below is None:
        return [f"(--reference {reference_path}: no step below 0.1 there)", ""]
    levels = [l for l in LAG_LEVELS if l in ref_levels]
    out = [f"Steps to each mean loss (over about one epoch's tokens up to it: the window "
           "column's steps) against the reference "
           f"`{reference_path}` (below 0.1 first at step {ref_below:,}), and what that lag "
           "projects for going below 0.1 (the lag at the lowest mean reached, held to the end; "
           "the run's median ms a step; its time to the end of step 1 added):", "",
           "| run | tokens a step | window | ms a step | "
           + " | ".join(f"{l:g}" for l in levels) + " | projected to < 0.1 |",
           "|---" * (5 + len(levels)) + "|"]
    for label, path in runs:
        rows = metrics_rows(path)
        tokens, window = tokens_and_window(rows)
        reached = steps_to_levels(rows, window)
        dts = [r["dt_ms"] for r in rows[10:] if r.get("dt_ms") is not None]
        ms = median(dts)
        start = next((r.get("elapsed_s") for r in rows if r["step"] == 1), None)
        cells, ratio = [], None
        for level in levels:
            if level in reached:
                ratio = reached[level] / ref_levels[level]
                cells.append(f"{reached[level]:,} ({ratio:.2f}x)")
            else:
                cells.append("-")
        if ratio is not None and ms is not None and start is not None:
            steps = ref_below * ratio
            projected = f"{steps:,.0f} steps, {start + steps * ms / 1000:.1f} s"
        else:
            projected = "-"
        out.append(f"| {label} | {tokens if tokens is not None else '?'} | {window} | "
                   f"{f'{ms:.2f}' if ms is not None else '?'} | " + " | ".join(cells)
                   + f" | {projected} |")
    out.append("")
    return out


def step_losses(text):
    return {int(m.group(1)): float(m.group(2))
            for m in re.finditer(r"^step (\d+) \| loss: ([\d.]+)", text, re.M)}


def run_files(folder):
    """{name: bytes} of one device_check output folder: its loose files, and the members
    of device_check.tar.gz (a device run returns at most 8 files, so device_check.sh
    packs its logs; the packed copy wins over a loose one of the same name)."""
    if not os.path.isdir(folder):
        sys.exit(f"collect_device_run: {folder}: not a folder")
    files = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name != "device_check.tar.gz" and os.path.isfile(path):
            with open(path, "rb") as fh:
                files[name] = fh.read()
    tarball = os.path.join(folder, "device_check.tar.gz")
    if os.path.exists(tarball):
        with tarfile.open(tarball) as tar:
            for member in tar.getmembers():
                base = os.path.basename(member.name)
                if member.isfile() and re.fullmatch(r"[\w.-]+", base):
                    with tar.extractfile(member) as src:
                        files[base] = src.read()
    return files


def merge_runs(folders):
    """One folder holding the runs' files: logs of several calls (a session may split
    device_check's groups over calls) are appended in call order; a second metrics
    file of the same name is kept beside the first as NAME_2.jsonl (a third as NAME_3, ...)."""
    merged = tempfile.mkdtemp()
    for folder in folders:
        for name, data in run_files(folder).items():
            path = os.path.join(merged, name)
            if os.path.exists(path) and name.endswith((".txt", ".csv", ".tsv")):
                with open(path, "ab") as fh:
                    fh.write(data)
                continue
            if os.path.exists(path):
                stem, ext = os.path.splitext(name)
                n = 2
                while os.path.exists(os.path.join(merged, f"{stem}_{n}{ext}")):
                    n += 1
                path = os.path.join(merged, f"{stem}_{n}{ext}")
                print(f"collect_device_run: another {name}: kept as {os.path.basename(path)}")
            with open(path, "wb") as fh:
                fh.write(data)
    return merged


def first_table(bench, heading, row):
    """(run name, heading line, rows) of the first section of a bench log with a line
    matching `heading` followed by lines matching `row` (their groups), or None."""
    for section in re.split(r"^===== ", bench, flags=re.M)[1:]:
        head = re.search(heading, section, re.M)
        if not head:
            continue
        rows = re.findall(row, section[head.end():], re.M)
        if rows:
            return section.split(" ", 1)[0], head.group(0), rows
    return None


def kernels_alone(bench):
    """(run name, what was timed, [(kernel, ms, TFLOP/s)]) of the first 'attention kernels
    alone' table in a bench log, or None."""
    found = first_table(bench, r"^attention kernels alone, one layer.*$",
                        r"^  (\S.*?) +([\d.]+) ms +(\d+) TFLOP/s$")
    if not found:
        return None
    name, head, rows = found
    return name, head.split("(", 1)[-1].rstrip("):"), rows


def pipelined_twins(kern):
    """[(kernel, ms, plain twin's ms)] for each 'pipelined' kernel of an 'attention
    kernels alone' table whose twin (the same name without ', pipelined') is there."""
    ms_of = {k: ms for k, ms, _ in kern}
    twins = []
    for k, ms, _ in kern:
        plain = k.replace(", pipelined", "")
        if plain != k and plain in ms_of and float(ms) > 0:
            twins.append((k, ms, ms_of[plain]))
    return twins


def matmul_shapes(bench):
    """(run name, [(op, shape, calls, ms, TFLOP/s)]) of the first 'matmuls by shape'
    table in a bench log, or None."""
    found = first_table(bench, r"^matmuls by shape.*$",
                        r"^  (\S+) +(\d+ x \d+ -> \d+) +(\d+) calls +([\d.]+) ms +(\d+) TFLOP/s$")
    return (found[0], found[2]) if found else None


def previous_run(logs, card, dest):
    """The latest other logs/gpu_<card>_* folder with a bench.txt, or None."""
    pattern = re.compile(rf"gpu_{re.escape(card)}_\d{{4}}-\d{{2}}-\d{{2}}(_\d+)?")
    runs = [os.path.join(logs, n) for n in os.listdir(logs)
            if pattern.fullmatch(n) and os.path.join(logs, n) != dest and
            os.path.exists(os.path.join(logs, n, "bench.txt"))]
    # Sessions of one date: gpu_h100_D, gpu_h100_D_2, ...: by date, then number.
    key = lambda path: (os.path.basename(path).split("_")[2],
                        int(os.path.basename(path).split("_")[3])
                        if os.path.basename(path).count("_") >= 3 else 1)
    return max(runs, key=key) if runs else None


def unused_folder(logs, card, date):
    """logs/gpu_<card>_<date>, or with _2, _3, ... where an earlier run of that card and
    date is already filed (a second session of the same day must not overwrite it)."""
    dest = os.path.join(logs, f"gpu_{card}_{date}")
    n = 2
    while os.path.exists(dest):
        dest = os.path.join(logs, f"gpu_{card}_{date}_{n}")
        n += 1
    return dest


def before_second_step(log_text, metrics_path):
    """A run's start-up phases, step 0's seconds, the kernel-timing seconds and when step 1
    ended (strings, '-' where not printed), or None without a start-up line."""
    start = re.search(r"^start-up: [\d.]+ s before the first step \(launch ([\d.]+), backend "
                      r"([\d.]+), data ([\d.]+), model ([\d.]+), optimizer ([\d.]+)", log_text, re.M)
    if not start:
        return None
    attention = re.search(r"the attention timing took ([\d.]+) s", log_text)
    matmuls = re.search(r"shapes timed took another algorithm.*the timing took ([\d.]+) s",
                        log_text)
    step0, step1 = "-", "-"
    for row in metrics_rows(metrics_path):
        try:
            if row["step"] == 0 and row.get("dt_ms") is not None:
                step0 = f"{float(row['dt_ms']) / 1000:.2f}"
            if row["step"] == 1 and row.get("elapsed_s") is not None:
                step1 = f"{float(row['elapsed_s']):.2f}"
        except (ValueError, TypeError):
            continue
    return list(start.groups()) + [step0, attention.group(1) if attention else "-",
                                   matmuls.group(1) if matmuls else "-", step1]


# nvidia-smi's clocks_event_reasons bits (nvml.h's nvmlClocksEventReason*).
CLOCK_REASONS = {0x1: "idle", 0x2: "application clocks", 0x4: "power cap", 0x8: "hardware slowdown",
                 0x10: "sync boost", 0x20: "thermal (software)", 0x40: "thermal (hardware)",
                 0x80: "power brake", 0x100: "display clocks"}


def clock_samples(text):
    """[(timestamp string, SM MHz, W, deg C, reasons bitmask)] of device_check's clocks.csv
    (nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu,
    utilization.gpu,clocks_event_reasons.active --format=csv), header lines and unreadable
    rows skipped."""
    samples = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 7 or not re.fullmatch(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+", cells[0]):
            continue
        try:
            samples.append((cells[0], float(cells[1].split()[0]), float(cells[3].split()[0]),
                            float(cells[4]), int(cells[6], 16)))
        except (ValueError, IndexError):
            continue
    return samples


def clock_table(clocks, runs_tsv):
    """Markdown lines: each run of runs.tsv (NAME, start, end, rc in nvidia-smi's timestamp
    format) with the clocks.csv samples inside its window: the SM clock's median and
    lowest, the power's median and highest, the hottest reading, and the reasons the
    driver gave for holding the clocks down, with their share of the samples."""
    samples = clock_samples(clocks)
    rows = []
    for line in runs_tsv.splitlines():
        cells = line.split("\t")
        if len(cells) < 3:
            continue
        name, start, end = cells[:3]
        inside = [x for x in samples if start <= x[0] <= end]
        if len(inside) < 3:
            continue
        mhz, watts = [x[1] for x in inside], [x[2] for x in inside]
        seen = []
        for bit, what in CLOCK_REASONS.items():
            share = sum(1 for x in inside if x[4] & bit) / len(inside)
            if share > 0 and bit != 0x1:
                seen.append(f"{what} {share:.0%}")
        rows.append(f"| `{name}` | {len(inside)} | {median(mhz):.0f} | {min(mhz):.0f} | "
                    f"{median(watts):.0f} | {max(watts):.0f} | {max(x[3] for x in inside):.0f} | "
                    f"{', '.join(seen) or 'none'} |")
    if not rows:
        return []
    return ["## Clocks and power during each run", "",
            "nvidia-smi every 200 ms (`clocks.csv`), the samples inside each run's window "
            "(`runs.tsv`); runs shorter than 3 samples left out:", "",
            "| run | samples | SM MHz median | SM MHz lowest | W median | W highest | °C highest | "
            "clocks held down by |",
            "|---|---|---|---|---|---|---|---|"] + rows + [""]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="+",
                        help="the folder(s) device_check.sh wrote (files_at), in call order")
    parser.add_argument("--logs", default="logs")
    parser.add_argument("--date", default=datetime.date.today().isoformat())
    parser.add_argument("--compare", action="append", default=[],
                        help="an earlier logs/ folder whose metrics*.jsonl join the loss tables")
    parser.add_argument("--reference",
                        help="a metrics.jsonl that went below 0.1: every run's lag against it, "
                        "and its projected steps and seconds to < 0.1")
    args = parser.parse_args()
    args.files = merge_runs(args.files)
    smi = (read(os.path.join(args.files, "nvidia-smi.txt")) +
           read(os.path.join(args.files, "machine.txt")))
    card, card_name = card_of(smi, read(os.path.join(args.files, "gpu_tests.txt")))
    dest = unused_folder(args.logs, card, args.date)
    os.makedirs(dest)
    for name in sorted(os.listdir(args.files)):
        src = os.path.join(args.files, name)
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(dest, name))
    f = lambda name: read(os.path.join(dest, name))
    machine, tests, bench = f("machine.txt"), f("gpu_tests.txt"), f("bench.txt")
    train, dist = f("train.txt"), f("dist.txt")
    out = [f"# GPU run on {card_name}, {args.date}", ""]
    commit = re.search(r"commit ([0-9a-f]+)", machine)
    out += [f"Commit {commit.group(1) if commit else '(unknown)'}; files in this folder are the "
            "run's own logs (launch/device_check.sh), this summary is drawn from them by "
            "launch/collect_device_run.py.", ""]

    out += ["## GPU tests", ""]
    where = re.search(r"^\[ where +\] (.*)$", tests, re.M)
    verdict = re.findall(r"^\[  (PASSED|FAILED|SKIPPED) +\] (\d+) tests?", tests, re.M)
    failed = re.findall(r"^\[  FAILED  \] ([^\s,]+)", tests, re.M)
    out.append(f"- where: {where.group(1) if where else '(not in this run)'}")
    for kind, count in verdict:
        out.append(f"- {kind.lower()}: {count}")
    for name in sorted(set(failed)):
        out.append(f"- failed: `{name}`")
    out.append("")

    out += ["## Benchmark (GPT-2 124M, T=1024)", ""]
    rows, torch_rows = bench_table(bench)
    if rows or torch_rows:
        out += ["| run | B | precision | ms/step | tokens/s | MFU % | GPU memory GiB | "
                "back to back ms/step | loss, first -> last timed step |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            out.append(f"| gpt2_ddp `{r['name']}` | {r['B']} | {r['dtype']} | {r['ms']:.1f} | "
                       f"{r['tps']:,} | {r['mfu']} | {r['mem']} | {r['back']} | {r['loss']} |")
        for t in torch_rows:
            out.append(f"| PyTorch reference ({t['mode']}) | {t['B']} | bf16 autocast | {t['ms']:.1f} | "
                       f"{t['tps']:,} | {t['mfu']} | {t['mem']} (peak) | - | - |")
        for t in torch_rows:
            ours = [r for r in rows if r["B"] == t["B"] and r["name"].startswith("bench_ours")
                    and not r.get("broken")]
            if ours:
                out.append("")
                out.append(f"Ratio to PyTorch ({t['mode']}) at B={t['B']}: "
                           f"{ours[0]['tps'] / t['tps']:.2f}x (tokens/s, same card, same run).")
        with_attn = [r for r in rows if r["attn"]]
        if with_attn:
            out += ["", "Attention per profiled step (all layers; backward counted as 2.5x the forward's "
                    "flops):", "", "| run | B | kernels | forward ms (TFLOP/s) | backward ms (TFLOP/s) |",
                    "|---|---|---|---|---|"]
            for r in with_attn:
                cell = lambda op: (f"{r['attn'][op][0]} ({r['attn'][op][1]})" if op in r["attn"] else "-")
                out.append(f"| `{r['name']}` | {r['B']} | {r['kernels'] or '-'} | "
                           f"{cell('attention_fwd')} | {cell('attention_bwd')} |")
        fit = batch_fit(rows)
        if fit:
            out += ["", fit]
        kernels = {r["kernels"] for r in rows if r["kernels"]}
        if kernels:
            out += ["", "Kernels: " + "; ".join(sorted(kernels))]
        ops = []
        for section in re.split(r"^===== ", bench, flags=re.M)[1:]:
            ops = op_rows(section)
            if ops:
                break
        if ops:
            out += ["", "Per-op time of one profiled step (first profiled run, CUDA events):", "",
                    "| op | calls | ms | % | TFLOP/s | GB/s |", "|---|---|---|---|---|---|"]
            for op, calls, ms, pct, tflops, gbs in ops:
                out.append(f"| {op} | {calls} | {ms} | {pct} | {tflops} | {gbs} |")
        # The A/B runs side by side: each B=16 run's ms for the ops the pairs are about.
        per_run = []
        for section in re.split(r"^===== ", bench, flags=re.M)[1:]:
            name = section.split(" ", 1)[0]
            if name.startswith("bench_") and "_B16" in name and not name.startswith(
                    "bench_pytorch"):
                ms = {op: v for op, _, v, _, _, _ in op_rows(section)}
                if ms:
                    per_run.append((name, ms))
        if len(per_run) > 1:
            wanted = ["attention_fwd", "attention_bwd", "layernorm_bwd", "classifier",
                      "matmul_gelu_fwd", "matmul_gelu_bwd", "matmul_fwd", "matmul_bwd"]
            out += ["", "The B=16 runs' per-op ms side by side (one profiled step each; the A/B "
                    "pairs differ from `bench_ours_B16` in one switch):", "",
                    "| op | " + " | ".join(f"`{n}`" for n, _ in per_run) + " |",
                    "|---|" + "---|" * len(per_run)]
            for op in wanted:
                out.append(f"| {op} | " + " | ".join(ms.get(op, "-") for _, ms in per_run) + " |")
        for part in ("forward", "backward"):
            chosen = re.search(rf"^attention {part} kernels chosen: (.*)$", bench, re.M)
            if chosen:
                out += ["", f"Attention {part} version chosen by timing at the first step: "
                        f"{chosen.group(1)}."]
        alone = kernels_alone(bench)
        if alone:
            name, how, kern = alone
            before = previous_run(args.logs, card, dest)
            old = kernels_alone(read(os.path.join(before, "bench.txt"))) if before else None
            old_ms = {k: ms for k, ms, _ in old[2]} if old else {}
            out += ["", f"Attention kernels alone (`{name}`; {how}; each kernel charged "
                    "for the products it computes)" +
                    (f", beside the previous run on this kind of card ({os.path.basename(before)}, "
                     "its first such table)" if old_ms else "") + ":", ""]
            if old_ms:
                out += ["| kernel | ms | TFLOP/s | previous ms | previous / now |",
                        "|---|---|---|---|---|"]
                out += [f"| {k} | {ms} | {rate} | {old_ms.get(k, '-')} | " +
                        (f"{float(old_ms[k]) / float(ms):.2f}x" if k in old_ms and float(ms) > 0
                         else "-") + " |" for k, ms, rate in kern]
            else:
                out += ["| kernel | ms | TFLOP/s |", "|---|---|---|"]
                out += [f"| {k} | {ms} | {rate} |" for k, ms, rate in kern]
            twins = pipelined_twins(kern)
            if twins:
                out += ["", "Pipelined kernels against their plain twins (the same products: "
                        "the ratio is the overlap's effect):", "",
                        "| kernel | ms | plain twin ms | plain / pipelined |",
                        "|---|---|---|---|"]
                out += [f"| {k} | {ms} | {plain} | {float(plain) / float(ms):.2f}x |"
                        for k, ms, plain in twins]
        shapes = matmul_shapes(bench)
        if shapes:
            name, rows = shapes
            out += ["", f"Matmuls by shape (`{name}`, one profiled step; N x C -> OC in the "
                    "forward's terms):", "", "| op | shape | calls | ms | TFLOP/s |",
                    "|---|---|---|---|---|"]
            out += [f"| {op} | {shape} | {calls} | {ms} | {rate} |"
                    for op, shape, calls, ms, rate in rows]
    else:
        out.append("(no benchmark in this run)")
    for section in re.split(r"^===== ", bench, flags=re.M)[1:]:
        decode = re.findall(r"^decode batch (\d+): ([\d.]+) tokens/s", section, re.M)
        name = section.split(" ", 1)[0]
        if decode:
            how = ", ".join(
                what for key, what in (("no_graphs", "without CUDA graphs"),
                                       ("long", "1,000 positions"),
                                       ("sample_global", "top-k rows read from global memory"),
                                       ("warp", "warp-per-position decode attention"))
                if key in name)
            one = re.findall(r"^decode batch (\d+) \(one draw per wait\): ([\d.]+) tokens/s",
                             section, re.M)
            out += ["", f"Decode (`{name}`), 124M with random weights"
                    f"{', ' + how if how else ''}: " +
                    ", ".join(f"batch {b}: {tps} tokens/s" for b, tps in decode) +
                    ("; one draw per wait for the device: " +
                     ", ".join(f"batch {b}: {tps} tokens/s" for b, tps in one) if one else "")]
        per_op = re.search(r"^device time per token at batch 1.*$", section, re.M)
        if per_op:
            ops = re.findall(r"^  (\S+) +([\d.]+) calls +([\d.]+) us$",
                             section[per_op.end():], re.M)
            out += ["", f"`{name}`: " + per_op.group(0) + ":", "",
                    "| op | calls per token | us per token |", "|---|---|---|"]
            out += [f"| {op} | {calls} | {us} |" for op, calls, us in ops]
    out.append("")

    # What device_check adopted for later groups and calls (A/B verdicts), as it logged it.
    decisions = re.findall(r"^\[device_check [\d:]+\] (.*(?:from now on \(|not adopted \(|"
                           r"fastest of bench_ours_B4).*)$", machine, re.M)
    out += clock_table(f("clocks.csv"), f("runs.tsv"))
    if decisions:
        out += ["## Switches device_check adopted (or not)", ""]
        out += [f"- {d}" for d in decisions] + [""]

    out += ["## Tiny Shakespeare", ""]
    # One training run per metrics{suffix}.jsonl; its log is train{suffix}.txt, or the
    # section 'shakespeare{suffix}' of train.txt (device_check.sh runs two configs there).
    runs = sorted(n for n in os.listdir(dest) if re.fullmatch(r"metrics(_[\w.-]+)?\.jsonl", n))
    sections = {}  # run name -> its sections in call order (a run may be repeated)
    for p in re.split(r"^===== ", train, flags=re.M)[1:]:
        sections.setdefault(p.split(" ", 1)[0], []).append(p)

    def section(name):
        """The section of run `name`, where merge_runs kept the n-th metrics file of a
        repeated run as NAME_n: that run's n-th section."""
        if name in sections:
            return sections[name][0]
        repeat = re.fullmatch(r"(.+)_(\d+)", name)
        if repeat and len(sections.get(repeat.group(1), [])) >= int(repeat.group(2)):
            return sections[repeat.group(1)][int(repeat.group(2)) - 1]
        return ""

    first_steps = []  # (run, its row of the table of what came before its second step)
    for metrics_name in runs:
        suffix = metrics_name[len("metrics"):-len(".jsonl")]
        log_text = f(f"train{suffix}.txt") if suffix else ""
        if not log_text:  # device_check.sh's run names: shakespeare, shakespeare_fp32, sweep_x
            log_text = section(f"shakespeare{suffix}") or section(suffix[1:])
        config = re.search(r"^gpt2_ddp \| config (\S+)", log_text, re.M)
        out += [f"### {metrics_name}" + (f" ({os.path.basename(config.group(1))})" if config else ""),
                ""]
        # What the run set over its config (the command line's --set, less logging).
        overrides = [o for o in re.findall(r"--set (\S+)", log_text.split("\n", 1)[0])
                     if not o.startswith(("log.", "checkpoint."))]
        if overrides:
            out.append("- settings over the config: `" + " ".join(overrides) + "`")
        for pattern in (r"^loss [\d.]+ < .* first at step .*$",
                        r"^loss below .* at every step since.*$", r"^  max_seconds: .*$",
                        r"^start-up: .*$",
                        r"^done: .*$", r"^backend: .*$", r"^kernels: .*$",
                        r"^kernels chosen by timing: .*$", r"^cuBLASLt \d+ .* opened in .*$"):
            for m in re.finditer(pattern, log_text, re.M):
                out.append(f"- `{m.group(0).strip()}`")
        row = before_second_step(log_text, os.path.join(dest, metrics_name))
        if row:
            first_steps.append((metrics_name, row))
        png = f"loss{suffix}.png"
        plot = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "plot_loss.py"),
                               os.path.join(dest, metrics_name), "--out", os.path.join(dest, png),
                               "--target", "0.1", "--window_tokens", str(STOP_LOSS_TOKENS),
                               "--title", f"GPT-2 124M on Tiny Shakespeare, {card_name}"],
                              capture_output=True, text=True)
        out += [f"- {line}" for line in (plot.stdout + plot.stderr).strip().splitlines()]
        if os.path.exists(os.path.join(dest, png)):
            out += ["", f"![loss]({png})"]
        out.append("")
    if first_steps:
        # Issue #8 counts from process start: the seconds before training runs at pace.
        out += ["What each run spent before its second step (seconds: the phases of its start-up "
                "line, step 0's dt from its metrics, of which the timing of kernel versions from "
                "its \"kernels chosen by timing\" line, and when step 1 ended after process start):",
                "", "| run | launch | backend | data | model | optimizer | step 0 | attention timing "
                "| matmul timing | step 1 ended at |", "|---" * 10 + "|"]
        out += [f"| {name} | " + " | ".join(row) + " |" for name, row in first_steps]
        out.append("")
    # (label, path) of the compared folders' metrics files.
    compared = [(os.path.basename(os.path.normpath(folder)) + "/" + name,
                 os.path.abspath(os.path.join(folder, name)))
                for folder in args.compare for name in sorted(os.listdir(folder))
                if re.fullmatch(r"metrics(_[\w.-]+)?\.jsonl", name)]
    if not runs:
        out.append("(no training metrics in this run)")
    elif len(runs) + len(compared) > 1:
        # The runs side by side: the mean loss of the 20 steps up to each milestone.
        curves, timed = {}, {}
        for metrics_name, path in [(n, os.path.join(dest, n)) for n in runs] + compared:
            losses, at = {}, []
            for row in metrics_rows(path):
                losses[row["step"]] = row["loss"]
                try:
                    if row.get("elapsed_s") is not None:
                        at.append((float(row["elapsed_s"]), row["loss"]))
                except (ValueError, TypeError):
                    continue
            curves[metrics_name] = losses
            timed[metrics_name] = at
        milestones = [m for m in (100, 250, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000)
                      if any(m in c for c in curves.values())]
        out += ["Mean loss over the 20 steps up to each step (all runs of this folder"
                + (", and of " + ", ".join(args.compare) if args.compare else "") + "):", "",
                "| run | " + " | ".join(str(m) for m in milestones) + " |",
                "|---" * (1 + len(milestones)) + "|"]
        for name, losses in curves.items():
            cells = []
            for m in milestones:
                window = [losses[s] for s in range(m - 19, m + 1) if s in losses]
                cells.append(f"{sum(window) / len(window):.3f}" if len(window) == 20 else "-")
            out.append(f"| {name} | " + " | ".join(cells) + " |")
        out.append("")
        # Runs of different batch sizes compare at equal time, which is what the 45 s
        # target counts: the mean of the 20 logged losses up to each time.
        times = [t for t in (10, 20, 30, 40, 45, 60, 90, 120, 180, 240)
                 if any(rows and rows[-1][0] >= t for rows in timed.values())]
        if times:
            out += ["Mean loss over the 20 logged steps up to each time after process start "
                    "(seconds; runs of any batch side by side):", "",
                    "| run | " + " | ".join(f"{t} s" for t in times) + " |",
                    "|---" * (1 + len(times)) + "|"]
            for name, rows in timed.items():
                cells = []
                for t in times:
                    window = [loss for (e, loss) in rows if e <= t][-20:]
                    cells.append(f"{sum(window) / len(window):.3f}"
                                 if len(window) == 20 and rows[-1][0] >= t else "-")
                out.append(f"| {name} | " + " | ".join(cells) + " |")
            out.append("")
    if runs and args.reference:
        out += lag_table([(n, os.path.join(dest, n)) for n in runs] + compared,
                         args.reference)
    hf = re.search(r"^hf_logits_check: .*$", train, re.M)
    out += ["", f"HF export check: {hf.group(0) if hf else '(not in this run)'}", ""]
    hf_in = re.search(r"^hf_import_check: .*$", train, re.M)
    if hf_in:
        out += [f"HF import check: {hf_in.group(0)}", ""]

    out += ["## Distributed paths on one GPU (20 steps)", ""]
    parts = re.split(r"^===== ", dist, flags=re.M)[1:]
    runs = {p.split(" ", 1)[0]: step_losses(p) for p in parts}
    one = runs.get("dist_single", {})
    others = [(label, runs.get(name, {})) for name, label in
              (("dist_nccl_np1", "NCCL, world 1"), ("dist_mpi_np2", "mpirun -np 2, ZeRO-1"))]
    others = [(label, r) for label, r in others if r]
    if one and others:
        common = sorted(set(one).intersection(*[set(r) for _, r in others]))
        out += ["| step | one process | " + " | ".join(l for l, _ in others) + " |",
                "|---" * (2 + len(others)) + "|"]
        out += [f"| {s} | {one[s]:.6f} | " + " | ".join(f"{r[s]:.6f}" for _, r in others) + " |"
                for s in common]
        out.append("")
        for label, r in others:
            worst = max((abs(one[s] - r[s]) / one[s] for s in common), default=float("nan"))
            out.append(f"- {label}: largest relative difference from one process {worst:.2e} "
                       f"over {len(common)} steps.")
    else:
        out.append("(not in this run)")
    comm = re.findall(r"^(?:comm \(GPU\)|overlap): .*$", dist, re.M)
    if comm:
        out += ["", "Gradient collectives on GPU buffers (`gpt2_bench --comm --device cuda`):", ""]
        out += [f"- `{line}`" for line in comm]
    out.append("")

    for name in sorted(n for n in os.listdir(dest) if re.fullmatch(r"samples(_\w+)?\.txt", n)):
        text = f(name)
        out += [f"## Samples: {name} (final checkpoint of that run)", ""]
        out += ["```", text.strip()[:6000] if text.strip() else "(empty)", "```", ""]
    summary = re.search(r"===== device_check summary.*", machine, re.S)
    out += ["## device_check summary", "", "```", summary.group(0).strip() if summary else "(none)",
            "```", ""]
    with open(os.path.join(dest, "SUMMARY.md"), "w") as fh:
        fh.write("\n".join(out))
    print(f"collect_device_run: {dest}/SUMMARY.md ({len(os.listdir(dest))} files)")
    # A GPU number that is not committed did not happen: make sure git will see it.
    ignored = subprocess.run(["git", "check-ignore", "-q", os.path.join(dest, "SUMMARY.md")],
                             capture_output=True)
    if ignored.returncode == 0:
        print(f"collect_device_run: warning: git ignores {dest}; add it to .gitignore's exceptions")


if __name__ == "__main__":
    main()
