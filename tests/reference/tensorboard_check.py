#!/usr/bin/env python3
"""Checks a gpt2_ddp run folder's TensorBoard event files against its metrics.jsonl.

Two readers, each on its own:
- a TFRecord and protobuf wire-format decoder written here from the formats'
  specifications (no gpt2_ddp code, no protobuf package): every record's length
  and masked CRC-32C, the first event's file_version, and the scalars
  train/loss, train/lr, train/grad_norm, train/step_ms, train/tokens_per_sec
  and val/loss (the final weights' too) at the steps and values (as float32)
  of metrics.jsonl, a resumed run's restart rows applied as TensorBoard applies
  its restart events; where the run wrote samples.txt, a text summary (plugin
  "text", a DT_STRING tensor) under "samples" holding each of its samples; and
  a text summary under "run" per event file holding the run's header;
- TensorBoard's own EventAccumulator, where the tensorboard package is
  installed (the GPU machine's PyTorch may bring it): it must find the same
  train/loss series.

Prints "tensorboard_check: ok ..." and exits 0, or names what differs and exits 1.

  tensorboard_check.py RUN_FOLDER
"""

import glob
import json
import math
import os
import struct
import sys

_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def records(path):
    with open(path, "rb") as f:
        data = f.read()
    at, out = 0, []
    while at < len(data):
        if len(data) - at < 12:
            raise ValueError(f"{path}: record {len(out)}: truncated header")
        (length,) = struct.unpack_from("<Q", data, at)
        (length_crc,) = struct.unpack_from("<I", data, at + 8)
        if masked(crc32c(data[at:at + 8])) != length_crc:
            raise ValueError(f"{path}: record {len(out)}: length CRC mismatch")
        body = data[at + 12:at + 12 + length]
        if len(body) != length or len(data) < at + 16 + length:
            raise ValueError(f"{path}: record {len(out)}: truncated")
        (data_crc,) = struct.unpack_from("<I", data, at + 12 + length)
        if masked(crc32c(body)) != data_crc:
            raise ValueError(f"{path}: record {len(out)}: data CRC mismatch")
        out.append(body)
        at += 16 + length
    return out


def fields(msg):
    """The (field number, value) pairs of a protobuf message's wire bytes."""
    at, out = 0, []

    def varint():
        nonlocal at
        shift = value = 0
        while True:
            byte = msg[at]
            at += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while at < len(msg):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, varint()))
        elif wire == 1:
            out.append((number, msg[at:at + 8]))
            at += 8
        elif wire == 2:
            n = varint()
            out.append((number, msg[at:at + n]))
            at += n
        elif wire == 5:
            out.append((number, msg[at:at + 4]))
            at += 4
        else:
            raise ValueError(f"wire type {wire} of field {number}")
    return out


def decode_event(data):
    """Event (tensorboard/compat/proto/event.proto): wall_time 1, step 2,
    file_version 3, summary 5 (Summary.value 1: tag 1, simple_value 2),
    session_log 7 (status 1)."""
    event = {"step": 0, "scalars": [], "texts": []}
    for number, value in fields(data):
        if number == 1:
            event["wall_time"] = struct.unpack("<d", value)[0]
        elif number == 2:
            event["step"] = value
        elif number == 3:
            event["file_version"] = value.decode()
        elif number == 5:
            for n, v in fields(value):
                if n != 1:
                    continue
                tag, simple, tensor, plugin = None, None, None, None
                for vn, vv in fields(v):
                    if vn == 1:
                        tag = vv.decode()
                    elif vn == 2:
                        simple = struct.unpack("<f", vv)[0]
                    elif vn == 8:  # TensorProto: dtype 1, string_val 8
                        tensor = fields(vv)
                    elif vn == 9:  # SummaryMetadata.plugin_data.plugin_name
                        data = dict(fields(vv)).get(1, b"")
                        plugin = dict(fields(data)).get(1, b"").decode()
                if tensor is not None:
                    strings = [x.decode("utf-8", "replace") for n, x in tensor if n == 8]
                    if plugin == "text" and dict(tensor).get(1) == 7 and strings:
                        event["texts"].append((tag, strings[0]))
                else:
                    event["scalars"].append((tag, simple))
        elif number == 7:
            event["session_status"] = dict(fields(value)).get(1, 0)
    return event


def as_float32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def same(a, b):
    """Equal as float32: metrics.jsonl holds the double to 9 digits, which may
    round to the float32 next to the one the writer cast the double to."""
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=2.5e-7)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    run = sys.argv[1]
    files = sorted(glob.glob(os.path.join(run, "events.out.tfevents.*")))
    if not files:
        sys.exit(f"tensorboard_check: FAIL: no event file in {run}")
    series, texts = {}, []
    for path in files:
        try:
            events = [decode_event(r) for r in records(path)]
        except (ValueError, IndexError, struct.error, UnicodeDecodeError) as e:
            sys.exit(f"tensorboard_check: FAIL: {path}: not an event file: {e}")
        if not events or events[0].get("file_version") != "brain.Event:2":
            sys.exit(f"tensorboard_check: FAIL: {path}: first event is not brain.Event:2")
        for e in events:
            if e.get("session_status") == 1:  # START: a resumed run redoes these steps
                for tag in series:
                    series[tag] = [(s, v) for s, v in series[tag] if s < e["step"]]
            for tag, value in e["scalars"]:
                series.setdefault(tag, []).append((e["step"], value))
            texts.extend(e["texts"])
    expected = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        rows = {}
        for line in f:
            row = json.loads(line)
            if row.get("restart"):  # a resumed run redoes the steps from here
                rows = {s: r for s, r in rows.items() if s < row["step"]}
            elif row["step"] in rows and row.get("final"):  # beside a step's row
                rows[row["step"]] = {**rows[row["step"]], **row}
            else:
                rows[row["step"]] = row
    for step in sorted(rows):
        row = rows[step]
        for tag, key in (("train/loss", "loss"), ("train/lr", "lr"),
                         ("train/grad_norm", "norm"), ("train/step_ms", "dt_ms"),
                         ("train/tokens_per_sec", "tok_per_sec"), ("val/loss", "val_loss")):
            if key in row:
                value = math.nan if row[key] is None else as_float32(row[key])
                expected.setdefault(tag, []).append((step, value))
    problems = []
    for tag, want in expected.items():
        got = series.get(tag, [])
        if len(got) != len(want) or any(
                gs != ws or not same(gv, wv) for (gs, gv), (ws, wv) in zip(got, want)):
            problems.append(f"{tag}: {len(got)} values, metrics.jsonl has {len(want)}"
                            f" (first event file value {got[:1]}, metrics {want[:1]})")
    samples_path = os.path.join(run, "samples.txt")
    if os.path.exists(samples_path):
        with open(samples_path, encoding="utf-8", errors="replace") as f:
            samples = [s for s in f.read().split("\n======\n") if s]
        shown = [t for tag, t in texts if tag == "samples"]
        if not shown:
            problems.append("no text summary 'samples' beside samples.txt")
        elif any("```\n" + s + "\n```" not in shown[-1] for s in samples):
            problems.append("the 'samples' text lacks samples.txt's samples")
    headers = [t for tag, t in texts if tag == "run"]
    if len(headers) != len(files):
        problems.append(f"{len(headers)} text summaries 'run' in {len(files)} event file(s)")
    elif any(not h.startswith("```\ngpt2_ddp | config ") for h in headers):
        problems.append("a 'run' text does not hold the run's header")
    if problems:
        sys.exit("tensorboard_check: FAIL: " + "; ".join(problems))
    summary = (f"{len(files)} event file(s), {len(series.get('train/loss', []))} train/loss "
               f"values, tags {sorted(series)}, {len(texts)} text summar"
               f"{'y' if len(texts) == 1 else 'ies'}")
    try:
        from tensorboard.backend.event_processing import event_accumulator
    except ImportError:
        print(f"tensorboard_check: ok: {summary} (our decoder; no tensorboard package here)")
        return
    acc = event_accumulator.EventAccumulator(run, size_guidance={"scalars": 0})
    acc.Reload()
    losses = [(s.step, s.value) for s in acc.Scalars("train/loss")]
    if len(losses) != len(expected["train/loss"]) or any(
            gs != ws or not same(gv, wv) for (gs, gv), (ws, wv) in zip(losses, expected["train/loss"])):
        sys.exit(f"tensorboard_check: FAIL: TensorBoard's reader found {len(losses)} train/loss "
                 f"values, metrics.jsonl {len(expected['train/loss'])}")
    print(f"tensorboard_check: ok: {summary}; TensorBoard's EventAccumulator read the same "
          f"{len(losses)} train/loss values")


if __name__ == "__main__":
    main()
