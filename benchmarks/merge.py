"""Benchmark `imm merge` against mergekit on the same inputs, side by side in one run.

    .venv/bin/python benchmarks/merge.py [--layers 6 12 24] [--methods task_arithmetic ties dare_ties]
                                         [--venv /tmp/mkvenv] [--work /tmp/imm_merge_bench] [--record]

Inputs: a base and two fine-tunes (base + N(0, 0.002²) noise) with random weights of the Qwen2-0.5B
configuration (vocab 151 936, hidden 896, MLP 4 864, 14 heads, 2 KV heads, tied embeddings) in
bfloat16, at three depths (6, 12 and 24 layers: 0.22B, 0.31B, 0.49B parameters), written to --work
and deleted afterwards. Each tool runs as its own process on the same YAML (`dtype: bfloat16`);
wall time and peak RSS come from /usr/bin/time. mergekit runs from its throwaway venv (see
benchmarks/mergekit_check.py). "I/O bound" is the time to read the three inputs and write one
output of the same size with plain file calls (page cache warm), no arithmetic; GB/s for a tool is
(bytes read + bytes written) / wall time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from _log import write_section

REPO = Path(__file__).resolve().parents[1]
QWEN2_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_attention_heads=14,
                 num_key_value_heads=2, tie_word_embeddings=True, max_position_embeddings=4096)
METHOD_PARAMS = {"task_arithmetic": {"weight": 0.5}, "ties": {"weight": 0.5, "density": 0.5},
                 "dare_ties": {"weight": 0.5, "density": 0.5}}


def write_family(root: Path, layers: int) -> tuple[list[Path], int]:
    """Base + 2 fine-tunes, one safetensors file each; returns the folders and bytes per model."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(num_hidden_layers=layers, architectures=["Qwen2ForCausalLM"], **QWEN2_05B)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in Qwen2ForCausalLM(config).state_dict().items() if k != "lm_head.weight"}
    generator = torch.Generator().manual_seed(layers)
    base = {k: (torch.randn(s, generator=generator) * 0.02).to(torch.bfloat16) for k, s in shapes.items()}
    folders = []
    for i in range(3):
        folder = root / f"L{layers}_m{i}"
        folder.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(folder)
        tensors = base if i == 0 else {
            k: (v.float() + torch.randn(v.shape, generator=generator) * 0.002).to(torch.bfloat16) for k, v in base.items()}
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
        folders.append(folder)
        del tensors
    return folders, sum(v.numel() * 2 for v in base.values())


def measure(cmd: list[str]) -> tuple[float, float]:
    """Run a command under /usr/bin/time; (wall seconds, peak RSS GiB) of that process alone.
    (wait4() from this process would count our own RSS at fork time into the child's peak.)"""
    proc = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr[-2000:]}")
    wall, kib = proc.stderr.strip().splitlines()[-1].split()
    return float(wall), int(kib) / 2**20


def io_bound(folders: list[Path], out: Path) -> float:
    start = time.perf_counter()
    size = 0
    for folder in folders:
        with open(folder / "model.safetensors", "rb", buffering=0) as f:
            while chunk := f.read(64 << 20):
                size += len(chunk)
    with open(out, "wb") as f:
        block = b"\0" * (64 << 20)
        for _ in range(size // 3 // len(block) + 1):
            f.write(block)
    elapsed = time.perf_counter() - start
    out.unlink()
    return elapsed


def bench_size(work: Path, layers: int, methods: list[str], mergekit: Path) -> list[dict]:
    folders, model_bytes = write_family(work, layers)
    params = model_bytes / 2
    rows = []
    bound = io_bound(folders, work / "io.bin")
    for method in methods:
        config = {"merge_method": method, "base_model": str(folders[0]), "dtype": "bfloat16",
                  "models": [{"model": str(f), "parameters": METHOD_PARAMS[method]} for f in folders[1:]]}
        yml = work / f"{method}.yml"
        yml.write_text(yaml.safe_dump(config, sort_keys=False))
        row = {"layers": layers, "params_B": params / 1e9, "method": method, "io_bound_s": bound}
        tools = {"mergekit": [str(mergekit), str(yml), str(work / "out_mk"), "--no-copy-tokenizer",
                              "--no-write-model-card", "--quiet", "--random-seed", "0"],
                 "imm": [str(REPO / ".venv" / "bin" / "imm"), "merge", str(yml), str(work / "out_imm"), "--quiet"]}
        for tool, cmd in tools.items():
            row[f"{tool}_s"], row[f"{tool}_rss"] = measure(cmd)
            shutil.rmtree(work / ("out_mk" if tool == "mergekit" else "out_imm"))
        row["gbps_imm"] = 4 * model_bytes / row["imm_s"] / 1e9
        row["gbps_mk"] = 4 * model_bytes / row["mergekit_s"] / 1e9
        row["gbps_bound"] = 4 * model_bytes / bound / 1e9
        rows.append(row)
        print(format_row(row), flush=True)
    for folder in folders:
        shutil.rmtree(folder)
    return rows


HEADER = ("| layers | params | method | imm s | mergekit s | time ratio | imm peak RSS GiB | mergekit peak RSS GiB "
          "| RSS ratio | imm GB/s | mergekit GB/s | I/O bound GB/s |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def format_row(r: dict) -> str:
    return (f"| {r['layers']} | {r['params_B']:.2f}B | {r['method']} | {r['imm_s']:.1f} | {r['mergekit_s']:.1f} | "
            f"{r['imm_s'] / r['mergekit_s']:.2f} | {r['imm_rss']:.2f} | {r['mergekit_rss']:.2f} | "
            f"{r['imm_rss'] / r['mergekit_rss']:.2f} | {r['gbps_imm']:.2f} | {r['gbps_mk']:.2f} | {r['gbps_bound']:.2f} |")


def record(rows: list[dict], argv: list[str], version: str) -> None:
    note = (f"mergekit {version} in a throwaway venv; base + 2 fine-tunes, random Qwen2-0.5B-shaped bf16 checkpoints, "
            "`dtype: bfloat16`. GB/s = (3 inputs read + 1 output written) / wall time.")
    write_section("Merge engine: `imm merge` vs mergekit", [HEADER] + [format_row(r) for r in rows], note,
                  command=f".venv/bin/python benchmarks/merge.py {' '.join(argv)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[6, 12, 24])
    parser.add_argument("--methods", nargs="+", default=list(METHOD_PARAMS), choices=list(METHOD_PARAMS))
    parser.add_argument("--venv", type=Path, default=Path("/tmp/mkvenv"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/imm_merge_bench"))
    parser.add_argument("--record", action="store_true", help="write its section of docs/benchmarks.md")
    args = parser.parse_args()
    mergekit = args.venv / "bin" / "mergekit-yaml"
    if not mergekit.exists():
        print(f"mergekit not found at {mergekit}; run benchmarks/mergekit_check.py once to create the venv")
        return 2
    version = subprocess.run([str(args.venv / "bin" / "pip"), "show", "mergekit"], capture_output=True,
                             text=True).stdout.split("Version: ")[1].split()[0]
    args.work.mkdir(parents=True, exist_ok=True)
    print(HEADER, flush=True)
    try:
        rows = [row for layers in args.layers for row in bench_size(args.work, layers, args.methods, mergekit)]
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    if args.record:
        record(rows, sys.argv[1:], version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
