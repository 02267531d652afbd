#!/usr/bin/env python3
"""Picks the best of several short training runs, from their metrics.jsonl files.

    launch/pick_recipe.py [--baseline NAME --margin F] NAME=METRICS.jsonl ...

launch/device_check.sh uses it between its groups, on the GPU machine, to choose
what the next group trains: the sweep's candidate for the fast recipe, and the
compare group's precision switch for the proof.

The rule, in order:
  1. a run whose loss went below --target (0.1): the one that got there first
     (elapsed_s after process start) wins; with --target_tokens N the loss is
     the mean of the latest steps holding about N tokens (train.stop_loss_tokens:
     16384 holds a small batch to what one B=16 step's loss says);
  2. otherwise, at the time every run reached (the smallest of their last
     elapsed_s), the lowest mean of the last --window (20) logged losses up to
     that time wins (runs of any batch size compare at equal time, which is
     what the 45 s target counts). With --window_tokens N, each run's window is
     the steps that hold about N tokens (its tokens a step from tok_per_sec and
     dt_ms): the text's sections differ in loss by more than the runs do, so a
     window of one epoch compares a B=1 run with a B=16 one fairly, where 20
     steps would be 20 sequences against 320. A run that ended before 80% of the longest one's time (cut
     short by the time budget, or failed) is left out of this rule, so that it
     does not pull the comparison back to an early time.
With --baseline, the winner under rule 2 must beat the baseline's mean by more
than --margin (relative), or the baseline is picked: a switch is adopted only
for a clear gain.

Prints a table, then one line "pick: NAME (why)", or "pick: none (why)" when no
run has enough logged steps. Exit 0 either way; 2 on bad arguments.

    launch/pick_recipe.py --behind NAME [--margin F] [--min_s S] NAME=METRICS.jsonl ...

asks instead whether run NAME, still running, is clearly behind: at its latest
logged time t (at least --min_s, 25 s by default) its mean of the last --window
losses is over (1 + --margin) times the lowest such mean of the other runs at t
(runs that reached t). Prints one line "behind: ..." and exits 0 if so, else
"not behind: ..." and exits 1. device_check's sweep stops a candidate that is
behind, to leave the time to the next ones.
"""
import argparse
import math
import sys

from metrics_file import is_number, read_rows


def metric_rows(path):
    """The rows of a metrics.jsonl (metrics_file.read_rows: restart rows applied, lines
    that are not rows skipped); a file that cannot be read is a run that logged nothing
    (said once on stderr)."""
    try:
        return read_rows(path)
    except OSError as e:
        if path not in _UNREADABLE:
            _UNREADABLE.add(path)
            print(f"pick_recipe: {path}: {e.strerror}: a run that logged nothing",
                  file=sys.stderr)
        return []


_UNREADABLE = set()  # said once each


def read_run(path):
    """[(elapsed_s, loss)] of the step rows of a metrics.jsonl, in order; a
    non-finite loss (null) counts as infinite: a run that diverged never wins."""
    rows = []
    for row in metric_rows(path):
        if "loss" not in row or not is_number(row.get("elapsed_s")):
            continue
        loss = row["loss"]
        rows.append((float(row["elapsed_s"]), float(loss) if is_number(loss) else math.inf))
    return rows


def median_of_rows(path, value):
    """The median of value(row) over a metrics.jsonl's step rows past the first 10
    (the warm-up) where it is not None, or None."""
    values = []
    for row in metric_rows(path):
        try:
            v = value(row) if row.get("step", 0) >= 10 else None
        except (TypeError, ValueError):
            v = None
        if v is not None:
            values.append(v)
    values.sort()
    return values[len(values) // 2] if values else None


def median_step_ms(path):
    """The median dt_ms past the warm-up, or None."""
    return median_of_rows(path, lambda r: float(r["dt_ms"]) if "dt_ms" in r else None)


def tokens_per_step(path):
    """The median tokens a step (tok_per_sec x dt_ms) past the warm-up, or None."""
    return median_of_rows(path, lambda r: float(r["tok_per_sec"]) * float(r["dt_ms"]) / 1000
                          if r.get("tok_per_sec") and r.get("dt_ms") else None)


def windows_of(paths, window, window_tokens, at_least=False):
    """{name: the logged steps each run's mean is over}: `window`, or with
    window_tokens those that hold about that many tokens (at_least: the fewest
    that hold them all, as the trainer's train.stop_loss_tokens counts)."""
    out = {}
    for name, path in paths.items():
        tokens = tokens_per_step(path) if window_tokens > 0 else None
        if not tokens:
            out[name] = window
        elif at_least:
            out[name] = max(1, math.ceil(window_tokens / tokens - 1e-9))
        else:
            out[name] = max(1, round(window_tokens / tokens))
    return out


def mean_at(rows, t, window):
    losses = [loss for (e, loss) in rows if e <= t][-window:]
    return sum(losses) / len(losses) if len(losses) == window else None


def behind(runs, name, margin, min_s, windows):
    """0 (and a "behind:" line) if run `name` is clearly behind the others now."""
    rows = runs[name]
    t = rows[-1][0] if rows else 0.0
    mine = mean_at(rows, t, windows[name])
    if t < min_s or mine is None:
        print(f"not behind: {name} at {t:.1f} s, too early to tell")
        return 1
    others = {n: mean_at(r, t, windows[n]) for n, r in runs.items()
              if n != name and r and r[-1][0] >= t}
    others = {n: m for n, m in others.items() if m is not None}
    if not others:
        print(f"not behind: {name} at {t:.1f} s, no other run got that far")
        return 1
    best = min(others, key=others.get)
    verdict = mine > (1 + margin) * others[best]
    print(f"{'behind' if verdict else 'not behind'}: {name} at {t:.1f} s, mean loss "
          f"{mine:.4f} against {best}'s {others[best]:.4f} (margin {100 * margin:g}%)")
    return 0 if verdict else 1


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="NAME=METRICS.jsonl")
    parser.add_argument("--target", type=float, default=0.1)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--window_tokens", type=float, default=0)
    parser.add_argument("--target_tokens", type=float, default=0)
    parser.add_argument("--baseline", default=None)
    parser.add_argument("--margin", type=float, default=0.0)
    parser.add_argument("--behind", default=None)
    parser.add_argument("--min_s", type=float, default=25.0)
    args = parser.parse_args(argv)
    if args.window < 1:
        parser.error(f"--window must be >= 1, got {args.window}")
    runs, paths = {}, {}
    for spec in args.runs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            parser.error(f"expected NAME=METRICS.jsonl, got '{spec}'")
        runs[name] = read_run(path)
        paths[name] = path
    if args.baseline is not None and args.baseline not in runs:
        parser.error(f"--baseline {args.baseline} is not one of the runs")
    if args.behind is not None and args.behind not in runs:
        parser.error(f"--behind {args.behind} is not one of the runs")
    windows = windows_of(paths, args.window, args.window_tokens)
    if args.behind is not None:
        return behind(runs, args.behind, args.margin, args.min_s, windows)

    usable = {n: r for n, r in runs.items() if len(r) >= windows[n]}
    reached = {}
    held = windows_of(paths, 1, args.target_tokens, at_least=True)
    for name, rows in usable.items():
        # rows[i]'s held loss: the mean of rows[i - w + 1 .. i] (w = held[name]).
        w, below = held[name], None
        for i in range(w - 1, len(rows)):
            if sum(loss for (_, loss) in rows[i - w + 1:i + 1]) / w < args.target:
                below = rows[i][0]
                break
        if below is not None:
            reached[name] = below
    longest = max((r[-1][0] for r in usable.values()), default=0.0)
    compared = {n: r for n, r in usable.items() if r[-1][0] >= 0.8 * longest}
    t = min((r[-1][0] for r in compared.values()), default=None)
    means = {n: mean_at(r, t, windows[n]) for n, r in compared.items()}
    print(f"{'run':32s} {'steps':>6s} {'last s':>7s} {'ms/step':>8s} {'window':>6s}"
          f" {'mean loss at %.1f s' % t if t else '':>20s} {'below %g at' % args.target:>12s}")
    for name, rows in runs.items():
        mean = means.get(name)
        ms = median_step_ms(paths[name])
        print(f"{name:32s} {len(rows):6d} {rows[-1][0] if rows else 0:7.1f} "
              f"{'%.2f' % ms if ms is not None else '-':>8s} {windows[name]:6d} "
              f"{'%.4f' % mean if mean is not None else '-':>20s} "
              f"{'%.1f s' % reached[name] if name in reached else '-':>12s}")

    if reached:
        best = min(reached, key=reached.get)
        print(f"pick: {best} (loss below {args.target:g} first, {reached[best]:.1f} s after start)")
        return 0
    scored = {n: m for n, m in means.items() if m is not None}
    if not scored:
        print("pick: none (no run logged the steps of its window)")
        return 0
    best = min(scored, key=scored.get)
    why = f"lowest mean loss at {t:.1f} s: {scored[best]:.4f}"
    if args.baseline is not None and best != args.baseline:
        base = scored.get(args.baseline)
        if base is None:
            print(f"pick: none (the baseline {args.baseline} logged too few steps)")
            return 0
        if scored[best] >= base * (1 - args.margin):
            print(f"pick: {args.baseline} (the best, {best} at {scored[best]:.4f}, is within "
                  f"{100 * args.margin:g}% of {base:.4f})")
            return 0
        why += f", {100 * (1 - scored[best] / base):.1f}% below {args.baseline}'s {base:.4f}"
    print(f"pick: {best} ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
