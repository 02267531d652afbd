#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora, tests/fuzz/corpus/<target>/.

The seeds are small valid inputs (and a few near misses) of each format, from
which the drivers' mutations start: text seeds written here, binary ones (token
shards, llm.c model files, safetensors) built with the formats' own layouts at
a tiny model shape. Deterministic but for the checkpoints' creation times.

  python3 tests/fuzz/make_seeds.py [--bin build/bin]

The checkpoint seeds are written by the project's own gpt2_ckpt (imports of
the llm.c seeds) and the resume seeds by gpt2_ddp (3 steps of resume_fuzz's
tiny run, one process and two ZeRO-1 ranks), found in --bin; without them
they are left as they are.
"""
import argparse
import shutil
import subprocess
import tempfile
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


# A tiny GPT-2: L=1, NH=1, C=4, maxT=4, V=8 (padded to 8).
L, NH, C, T, V, VP = 1, 1, 4, 4, 8, 8


def llmc_params(rng):
    """The parameters in llm.c's order and shapes (ours: (out, in) weights)."""
    shapes = [("wte", (VP, C)), ("wpe", (T, C)), ("ln1w", (L, C)),
              ("ln1b", (L, C)), ("qkvw", (L, 3 * C, C)), ("qkvb", (L, 3 * C)),
              ("attprojw", (L, C, C)), ("attprojb", (L, C)), ("ln2w", (L, C)),
              ("ln2b", (L, C)), ("fcw", (L, 4 * C, C)), ("fcb", (L, 4 * C)),
              ("fcprojw", (L, C, 4 * C)), ("fcprojb", (L, C)), ("lnfw", (C,)),
              ("lnfb", (C,))]
    return [(name, (rng.standard_normal(shape) * 0.02).astype(np.float32))
            for name, shape in shapes]


def json_seeds():
    write("json", "object", '{"a": 1, "b": [true, false, null], "c": {"d": "e"}}')
    write("json", "numbers", "[0, -1, 1.5, -2.25e-3, 1E10, 123456789012345678, 0.1]")
    write("json", "strings",
          r'["plain", "esc \" \\ \/ \b \f \n \r \t", "\u00e9\u4e2d", "\ud83d\ude00", ""]')
    write("json", "safetensors_header", json.dumps({
        "wte.weight": {"dtype": "F32", "shape": [8, 4], "data_offsets": [0, 128]},
        "__metadata__": {"format": "pt"}}))
    write("json", "config", json.dumps({
        "model_type": "gpt2", "n_layer": 12, "n_head": 12, "n_embd": 768,
        "n_positions": 1024, "vocab_size": 50257, "n_inner": None,
        "activation_function": "gelu_new", "tie_word_embeddings": True}))
    write("json", "lines", '{"ctx": "a"}\n\n[1, 2]\n"x"\n')
    write("json", "nested", "[" * 30 + "{}" + "]" * 30)


def tokenizer_seeds():
    write("tokenizer", "play", "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
          "All:\nSpeak, speak.\n")
    write("tokenizer", "contractions", "I'm you're we've they'll he'd it's 'S 'T ''s")
    write("tokenizer", "spaces", "a  b\t\tc \n\n  \r\n   x   ")
    write("tokenizer", "digits", "1 22 333 4444 3.14159 1,000,000 ٣٤٥")
    write("tokenizer", "unicode", "héllo 中文 😀 Ωmega ﬁ \u200b \u00a0end")
    write("tokenizer", "special", "a<|endoftext|>b<|endoftext|><|endoftext|>")
    write("tokenizer", "invalid_utf8", b"ok \xff\xfe \xc3 \xe2\x82 \xf0\x9f\x98 \x80end")
    write("tokenizer", "long_run", "a" * 300 + " " + "!" * 100)


def serve_seeds():
    # The first byte picks the model shape (odd: a 64-position model).
    write("serve_request", "generate", b"\x00" + json.dumps({
        "prompt": "ROMEO:", "num_samples": 2, "max_new_tokens": 20, "top_k": 40,
        "temperature": 0.8, "seed": 7, "stream": True}).encode())
    write("serve_request", "generate_small", b"\x01" + json.dumps({
        "prompt": "First Citizen:\n" * 5, "max_new_tokens": 60}).encode())
    write("serve_request", "completions", b"\x00" + json.dumps({
        "model": "gpt2", "prompt": ["Hello"], "max_tokens": 16, "n": 1,
        "temperature": 0, "stream": True, "stream_options": {"include_usage": True},
        "top_p": 1, "stop": None, "echo": False, "logprobs": None, "best_of": 1,
        "presence_penalty": 0, "frequency_penalty": 0, "logit_bias": {},
        "suffix": None, "user": "u", "top_k": 5}).encode())
    write("serve_request", "generate_stop", b"\x00" + json.dumps({
        "prompt": "ROMEO:", "num_samples": 2, "top_k": 40, "top_p": 0.9,
        "stop": ["\n\n", "END"], "seed": 7}).encode())
    write("serve_request", "completions_stop", b"\x00" + json.dumps({
        "prompt": "Hello", "max_tokens": 8, "top_p": 0.5, "stop": "\n",
        "stream": True}).encode())
    write("serve_request", "bad", b"\x00" + b'{"prompt": 5, "n": -1}')


def config_seeds():
    for name in ("tiny_cpu", "gpt2_124m_shakespeare", "gpt2_124m_shakespeare_fast"):
        with open(os.path.join(ROOT, "configs", name + ".pbtxt"), "rb") as f:
            write("config", name, f.read())
    write("config", "overrides",
          "model { num_layers: 2 num_heads: 2 channels: 32 max_seq_len: 16 "
          "vocab_size: 50257 }\ntrain { micro_batch_size: 2 seq_len: 16 "
          "total_batch_tokens: 96 }\n--set--\ntrain.max_steps=20\noptim.lr=3e-4\n"
          "log.sample_prompts=ROMEO:\nlog.sample_prompts+=JULIET:\n"
          "train.stop_loss_tokens=64\nschedule.decay_steps=5\n")


def hellaswag_seeds():
    line = {"ind": 4, "activity_label": "Removing ice from car",
            "ctx": "Then, the man writes over the snow covering the window of a car, "
                   "and a woman wearing winter clothes smiles. then",
            "endings": [", the man adds wax to the windshield and cuts it.",
                        ", a person board a ski lift, while two men supporting the head "
                        "of the person wearing winter clothes snow as the we girls sled.",
                        ", the man puts on a christmas coat, knitted with netting.",
                        ", the man continues removing the snow on his car."],
            "label": 3, "split": "val"}
    write("hellaswag", "one", json.dumps(line) + "\n")
    two = dict(line, ctx="A man is sitting on a roof. he", label=0,
               endings=[" is using wrap to wrap a pair of skis.", " is ripping level tiles off.",
                        " is holding a rubik's cube.", " starts pulling up roofing on a roof."])
    write("hellaswag", "two", json.dumps(line) + "\n" + json.dumps(two) + "\n")


def shard_seeds():
    header = np.zeros(256, dtype=np.int32)
    header[0], header[1], header[2] = 20240520, 1, 20
    tokens = (np.arange(20, dtype=np.uint16) * 2503) % 50257
    write("token_shard", "twenty", header.tobytes() + tokens.tobytes())
    header[2] = 0
    write("token_shard", "empty", header.tobytes())


def llmc_seeds():
    rng = np.random.default_rng(1)
    params = llmc_params(rng)
    header = np.zeros(256, dtype=np.int32)
    header[:8] = [20240326, 3, T, V, L, NH, C, VP]
    body = b"".join(p.tobytes() for _, p in params)
    write("llmc_import", "tiny_f32", header.tobytes() + body)
    header[1] = 5
    bf16 = b"".join((p.view(np.uint32) >> 16).astype(np.uint16).tobytes()
                    for _, p in params)
    write("llmc_import", "tiny_bf16", header.tobytes() + bf16)


def safetensors(tensors, dtype="F32"):
    """tensors: [(name, array)] -> bytes of a .safetensors file."""
    header, blobs, offset = {}, [], 0
    for name, array in tensors:
        if dtype == "F32":
            blob = array.astype(np.float32).tobytes()
        elif dtype == "F16":
            blob = array.astype(np.float16).tobytes()
        else:  # BF16
            blob = (array.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def hf_seeds():
    rng = np.random.default_rng(2)
    p = dict(llmc_params(rng))
    tensors = [("wte.weight", p["wte"][:V]), ("wpe.weight", p["wpe"])]
    hf = {"ln1w": "ln_1.weight", "ln1b": "ln_1.bias", "qkvw": "attn.c_attn.weight",
          "qkvb": "attn.c_attn.bias", "attprojw": "attn.c_proj.weight",
          "attprojb": "attn.c_proj.bias", "ln2w": "ln_2.weight", "ln2b": "ln_2.bias",
          "fcw": "mlp.c_fc.weight", "fcb": "mlp.c_fc.bias",
          "fcprojw": "mlp.c_proj.weight", "fcprojb": "mlp.c_proj.bias"}
    for ours, theirs in hf.items():
        value = p[ours][0]
        if value.ndim == 2:  # Conv1D stores (in, out)
            value = value.T.copy()
        tensors.append(("h.0." + theirs, value))
    tensors += [("ln_f.weight", p["lnfw"]), ("ln_f.bias", p["lnfb"]),
                ("h.0.attn.bias", np.tril(np.ones((1, 1, T, T), np.float32)))]
    config = json.dumps({"model_type": "gpt2", "n_layer": L, "n_head": NH, "n_embd": C,
                         "n_positions": T, "vocab_size": V, "n_inner": None,
                         "activation_function": "gelu_new",
                         "tie_word_embeddings": True}).encode()
    sep = b"\n--config.json--\n"
    write("hf_import", "tiny_f32", safetensors(tensors) + sep + config)
    write("hf_import", "tiny_bf16", safetensors(tensors, "BF16") + sep + config)
    prefixed = [("transformer." + n if not n.startswith("lm_head") else n, a)
                for n, a in tensors]
    write("hf_import", "tiny_f16_prefixed", safetensors(prefixed, "F16") + sep + config)
    write("hf_import", "no_config", safetensors(tensors[:2]))
    # Findings kept as seeds: a config.json asking for L=1000, C=8192 beside
    # two tiny tensors (ReadHf allocated 3.2 TB), and two tensors over the
    # same bytes.
    write("hf_import", "huge_config_tiny_file", safetensors(tensors[:2]) + sep + json.dumps({
        "model_type": "gpt2", "n_layer": 1000, "n_head": 64, "n_embd": 8192,
        "n_positions": 4, "vocab_size": 8}).encode())
    overlap = json.dumps({
        "wte.weight": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "wpe.weight": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode()
    write("hf_import", "overlapping_tensors",
          struct.pack("<Q", len(overlap)) + overlap + bytes(12))


def data_loader_seeds():
    # B-1, T-1, world-1, rank, accum-1, shards-1; each shard's length / 4; the
    # tokens; optionally a cursor (shard, position, micro-step as int64s).
    tokens = bytes((k * 37 + 11) % 256 for k in range(300))
    write("data_loader", "one_shard", bytes([1, 7, 0, 0, 0, 0, 20]) + tokens[:80])
    write("data_loader", "ranks_accum", bytes([0, 3, 1, 1, 1, 1, 12, 9]) + tokens[:84])
    write("data_loader", "short_first_shard", bytes([0, 1, 0, 0, 0, 2, 1, 10, 6]) + tokens[:68])
    write("data_loader", "with_cursor", bytes([0, 3, 0, 0, 1, 0, 16]) + tokens[:64] +
          struct.pack("<qqq", 0, 8, 1))
    # A cursor whose position + the window overflowed the loader's check.
    write("data_loader", "cursor_near_int64_max", bytes([0, 3, 0, 0, 0, 0, 16]) + bytes(64) +
          struct.pack("<qqq", 0, 2**63 - 1, 0))


def corpus_seeds():
    # The first byte: bit 0 picks .jsonl, the rest the piece size - 1.
    play = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
            "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather "
            "to die than to famish?\n")
    write("corpus", "text", bytes([2 * 16]) + play.encode())
    write("corpus", "text_edges", bytes([2 * 3]) +
          b"a\nb  \n c\r\nd\n\n\n e \t\nf\xc3\xa9\ng\xe4\xb8\xad\n's\n")
    lines = [json.dumps({"text": "First Citizen:\nSpeak."}),
             json.dumps({"id": 2, "text": "ROMEO:\nHe jests at scars"}), "",
             json.dumps({"text": "\u00e9t\u00e9 <|endoftext|>"})]
    write("corpus", "jsonl", bytes([2 * 8 + 1]) + "\n".join(lines).encode() + b"\n")
    write("corpus", "jsonl_bad_line", bytes([1]) +
          (json.dumps({"text": "ok"}) + "\n" + json.dumps({"body": "no text"}) + "\n").encode())


def checkpoint_seeds(bin_dir):
    tool = os.path.join(bin_dir, "gpt2_ckpt")
    if not os.path.exists(tool):
        print(f"make_seeds: no {tool}: the checkpoint seeds are left as they are")
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("tiny_f32", "tiny_bf16"):
            out = os.path.join(tmp, name + ".ckpt")
            subprocess.run([tool, "import", "--from", "llmc", "--out", out, "--step", "7",
                            os.path.join(HERE, "corpus", "llmc_import", name)],
                           check=True, stdout=subprocess.DEVNULL)
            with open(out, "rb") as f:
                data = f.read()
            # The header records when it was written: these two seeds change
            # with each run of this script (the others do not).
            write("checkpoint", name, data)


RESUME_CONFIG = """
model { num_layers: 1 num_heads: 1 channels: 4 max_seq_len: 4 vocab_size: 8 padded_vocab_size: 8 }
data { train_shards: "tiny.bin" }
train { micro_batch_size: 1 seq_len: 4 total_batch_tokens: 8 max_steps: 3 precision: FP32 seed: 1
        device: CPU }
optim { lr: 1e-3 beta1: 0.9 beta2: 0.95 eps: 1e-8 weight_decay: 0.1 grad_clip: 1.0 }
schedule { warmup_steps: 1 min_lr: 1e-4 }
log { run_name: "tiny" every_steps: 1 }
checkpoint { save_at_end: true }
"""


def resume_seeds(bin_dir):
    """resume_fuzz's run config trained 3 steps by gpt2_ddp: one process, and
    two ZeRO-1 ranks under mpirun where there is one."""
    tool = os.path.join(bin_dir, "gpt2_ddp")
    if not os.path.exists(tool):
        print(f"make_seeds: no {tool}: the resume seeds are left as they are")
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "data"))
        header = np.zeros(256, dtype=np.int32)
        header[:3] = [20240520, 1, 64]
        tokens = ((np.arange(64) * 5 + 3) % 8).astype(np.uint16)
        with open(os.path.join(tmp, "data", "tiny.bin"), "wb") as f:
            f.write(header.tobytes() + tokens.tobytes())
        config = os.path.join(tmp, "tiny.pbtxt")
        with open(config, "w") as f:
            f.write(RESUME_CONFIG)
        common = ["--config", config, "--data_dir", os.path.join(tmp, "data"),
                  "--set", "log.sample_prompts=", "--set", "log.run_dir=" + tmp]
        env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
                   OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
        runs = [("one_process", [tool] + common)]
        if shutil.which("mpirun"):
            runs.append(("zero1_two_ranks", ["mpirun", "-np", "2", tool] + common +
                         ["--set", "log.run_name=zero", "--set", "distributed.zero_stage=1"]))
        for name, command in runs:
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
            run_name = "zero" if name.startswith("zero") else "tiny"
            with open(os.path.join(tmp, run_name, "checkpoints", "step_00000003.ckpt"),
                      "rb") as f:
                write("resume", name, f.read())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    args = parser.parse_args()
    json_seeds()
    tokenizer_seeds()
    serve_seeds()
    config_seeds()
    hellaswag_seeds()
    shard_seeds()
    llmc_seeds()
    hf_seeds()
    data_loader_seeds()
    corpus_seeds()
    checkpoint_seeds(args.bin)
    resume_seeds(args.bin)
