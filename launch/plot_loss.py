#!/usr/bin/env python3
"""Plots a run's loss curve from its metrics.jsonl (written by gpt2_ddp) to a PNG.

  python3 launch/plot_loss.py logs/RUN/metrics.jsonl --out logs/RUN/loss.png [--target 0.1]
      [--window_tokens 16384]

Train loss per step, val loss where measured (the final weights' too), a dashed line
at --target, and the first step below it marked; it also prints the first step below
the target and the step the loss has stayed below it since (to the end of the log),
with the seconds since process start of each (on a resumed run, since the start of
the process that ran that step, named by the step it resumed at). With --window_tokens the loss held against the target is
the mean over the latest steps holding that many tokens (the trainer's
train.stop_loss_tokens; a step's tokens read from its tok_per_sec x dt_ms), drawn
beside the per-step curve. A resumed run's restart row drops the steps it redoes.
Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import os
import sys

from metrics_file import BadLine, is_number, read_rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("metrics", help="metrics.jsonl of a run, or the run's folder")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--target", type=float, default=0.0,
                        help="draw this loss as a dashed line (0 = none)")
    parser.add_argument("--title", default="")
    parser.add_argument("--window_tokens", type=int, default=0,
                        help="hold the mean over the latest steps with this many tokens "
                        "against --target (0 = each step's own loss)")
    args = parser.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_loss: needs matplotlib (apt-get install python3-matplotlib)")

    def check(row):  # a step row has its loss (null where not finite); numbers are numbers
        if not (row.get("restart") or row.get("final")) and "loss" not in row:
            raise ValueError("no loss")
        for key in ("loss", "val_loss", "elapsed_s", "tok_per_sec", "dt_ms"):
            if row.get(key) is not None and not is_number(row[key]):
                raise ValueError(f"{key} {row[key]!r} is not a number")

    if os.path.isdir(args.metrics):  # a run folder, as the binaries take one
        args.metrics = os.path.join(args.metrics, "metrics.jsonl")
    try:
        restarts = []  # the steps resumed runs started at, still in the curve
        rows = read_rows(args.metrics, check, restarts)  # restart rows applied
    except OSError as e:
        sys.exit(f"plot_loss: {e}")
    except BadLine as e:
        sys.exit(f"plot_loss: {args.metrics}:{e.line}: not a metrics line ({e.why})")
    steps, losses, val_steps, val_losses, elapsed = [], [], [], [], {}
    step_tokens = []
    for row in rows:
        step, loss = row["step"], row.get("loss")
        if loss is not None:
            steps.append(step)
            losses.append(loss)
            if row.get("tok_per_sec") and row.get("dt_ms"):
                step_tokens.append(row["tok_per_sec"] * row["dt_ms"] / 1000)
        if row.get("elapsed_s") is not None:
            elapsed[step] = row["elapsed_s"]
        if row.get("val_loss") is not None:
            val_steps.append(step)
            val_losses.append(row["val_loss"])
    if not steps:
        sys.exit(f"plot_loss: {args.metrics}: no steps with a finite loss")
    held, held_label = losses, "loss"
    if args.window_tokens > 0 and not step_tokens:
        print(f"plot_loss: {args.metrics}: no tok_per_sec/dt_ms to count a step's tokens; "
              "holding each step's own loss against the target")
    elif args.window_tokens > 0:
        per_step = sorted(step_tokens)[len(step_tokens) // 2]  # the median step
        window = max(1, round(args.window_tokens / per_step))
        held = [sum(losses[max(0, i + 1 - window):i + 1]) / min(window, i + 1)
                for i in range(len(losses))]
        held_label = f"mean loss of the last {window} steps ({window * per_step:,.0f} tokens)"
        print(f"plot_loss: holding the {held_label} against the target")
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    ax.plot(steps, losses, lw=1.2, label="train loss", alpha=0.5 if held is not losses else 1)
    if held is not losses:
        ax.plot(steps, held, lw=1.2, label=held_label)
    if val_steps:
        ax.plot(val_steps, val_losses, "o-", ms=3, lw=1, label="val loss")
    if args.target > 0:
        ax.axhline(args.target, ls="--", c="gray", lw=1, label=f"target {args.target:g}")
        below = [s for s, l in zip(steps, held) if l < args.target]
        if below:
            ax.axvline(below[0], ls=":", c="red", lw=1, label=f"first below at step {below[0]}")
            since = steps[-1]
            for s, l in zip(reversed(steps), reversed(held)):
                if l >= args.target:
                    break
                since = s
            def when(s):  # elapsed_s counts from the start of the process that ran step s
                if s not in elapsed:
                    return ""
                resumed = [r for r in restarts if r <= s]
                if resumed:
                    return (f" ({elapsed[s]:.1f} s after the start of the process resumed "
                            f"at step {resumed[-1]})")
                return f" ({elapsed[s]:.1f} s after process start)"
            print(f"plot_loss: {held_label} < {args.target:g} first at step {below[0]}"
                  f"{when(below[0])}")
            if held[-1] < args.target:
                print(f"plot_loss: below {args.target:g} at every step since step {since}"
                      f"{when(since)}, to the last logged step {steps[-1]}")
        else:
            print(f"plot_loss: {held_label} never below {args.target:g} (lowest {min(held):.4f})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(args.title or args.metrics)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(args.out)
    except (OSError, ValueError) as e:
        sys.exit(f"plot_loss: cannot write {args.out}: {e}")
    print(f"plot_loss: wrote {args.out} ({len(steps)} steps, last loss {losses[-1]:.4f})")


if __name__ == "__main__":
    main()
