#!/usr/bin/env python3
"""Plots a run's loss curve from its metrics.jsonl (written by gpt2_ddp) to a PNG.

  python3 launch/plot_loss.py logs/RUN/metrics.jsonl --out logs/RUN/loss.png [--target 0.1]

Train loss per step, val loss where measured, a dashed line at --target, and the
first step below it marked; it also prints the first step below the target and the
step the loss has stayed below it since (to the end of the log), with the seconds
since process start of each. Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import json
import sys


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("metrics", help="metrics.jsonl of a run")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--target", type=float, default=0.0,
                        help="draw this loss as a dashed line (0 = none)")
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("plot_loss: needs matplotlib (apt-get install python3-matplotlib)")
    steps, losses, val_steps, val_losses, elapsed = [], [], [], [], {}
    try:
        with open(args.metrics) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    step, loss = int(row["step"]), row["loss"]
                except (ValueError, KeyError, TypeError) as e:
                    sys.exit(f"plot_loss: {args.metrics}:{number}: not a metrics line ({e})")
                if loss is not None:
                    steps.append(step)
                    losses.append(loss)
                if row.get("elapsed_s") is not None:
                    elapsed[step] = row["elapsed_s"]
                if row.get("val_loss") is not None:
                    val_steps.append(step)
                    val_losses.append(row["val_loss"])
    except OSError as e:
        sys.exit(f"plot_loss: {e}")
    if not steps:
        sys.exit(f"plot_loss: {args.metrics}: no steps with a finite loss")
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    ax.plot(steps, losses, lw=1.2, label="train loss")
    if val_steps:
        ax.plot(val_steps, val_losses, "o-", ms=3, lw=1, label="val loss")
    if args.target > 0:
        ax.axhline(args.target, ls="--", c="gray", lw=1, label=f"target {args.target:g}")
        below = [s for s, l in zip(steps, losses) if l < args.target]
        if below:
            ax.axvline(below[0], ls=":", c="red", lw=1, label=f"first below at step {below[0]}")
            since = steps[-1]
            for s, l in zip(reversed(steps), reversed(losses)):
                if l >= args.target:
                    break
                since = s
            when = lambda s: f" ({elapsed[s]:.1f} s after process start)" if s in elapsed else ""
            print(f"plot_loss: loss < {args.target:g} first at step {below[0]}{when(below[0])}")
            if losses[-1] < args.target:
                print(f"plot_loss: below {args.target:g} at every step since step {since}"
                      f"{when(since)}, to the last logged step {steps[-1]}")
        else:
            print(f"plot_loss: loss never below {args.target:g} (lowest {min(losses):.4f})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(args.title or args.metrics)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"plot_loss: wrote {args.out} ({len(steps)} steps, last loss {losses[-1]:.4f})")


if __name__ == "__main__":
    main()
