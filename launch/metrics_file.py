"""A run's metrics.jsonl as gpt2_ddp writes it (src/train/run_log.h), for the launch
scripts that read one (plot_loss.py, pick_recipe.py, collect_device_run.py).

Its rows are JSON objects with an integer "step": a training step's (its "loss", null
where not finite), the final weights' ({"final": true, "val_loss" / "hellaswag"}), and
a resumed run's {"step": N, "restart": true} before its first step N, after which the
rows of steps >= N already there are abandoned (TensorBoard drops them likewise).
"""
import json


class BadLine(ValueError):
    """A line `check` refused, or that is not a row: its number and why."""

    def __init__(self, line, why):
        super().__init__(f"line {line}: {why}")
        self.line, self.why = line, why


def read_rows(path, check=None, restarts=None):
    """The rows of the metrics.jsonl at `path`, in order, restart rows applied (and
    not returned; with `restarts`, a list, their steps are appended to it). A line that
    is not a row (a line cut short by a timeout, bytes that are not text) is skipped;
    with `check`, a function that raises ValueError on a row it refuses, any such line
    raises BadLine instead. OSError (a missing or unreadable file) is the caller's."""
    rows = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
                if not isinstance(row, dict):
                    raise ValueError("not a JSON object")
                if not isinstance(row.get("step"), int) or isinstance(row["step"], bool):
                    raise ValueError(f"step {row.get('step')!r} is not an integer")
                if check is not None:
                    check(row)
            except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                if check is not None:
                    raise BadLine(number, e) from None
                continue
            if row.get("restart"):
                rows = [r for r in rows if r["step"] < row["step"]]
                if restarts is not None:
                    restarts[:] = [r for r in restarts if r < row["step"]] + [row["step"]]
            else:
                rows.append(row)
    return rows


def is_number(value):
    """A JSON number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
