"""Layer-analysis cost: update tables against model size (streaming keeps memory flat), ablation cost per layer.

    .venv/bin/python benchmarks/analysis.py                      # both parts
    .venv/bin/python benchmarks/analysis.py --part updates --layers 4 8 16 32
    .venv/bin/python benchmarks/analysis.py --part importance --probe-size 64 --max-new-tokens 64
    python3 benchmarks/analysis.py --part gpu           # on a CUDA machine, with PYTHONPATH=src
    .venv/bin/python benchmarks/analysis.py --part big  # only the 1.5B-shaped bf16 pair (needs ~8 GB disk)

Part 1 writes pairs of random Llama-shaped checkpoints (hidden 512, vocab 8192; fp32 safetensors) with a
growing number of blocks, then times the update table (`stream_stats`) in a fresh process and reports its peak
anonymous RSS (sampled every 2 ms; mmap'd weight pages are reclaimable page cache) above the RSS after imports; for
contrast, the same figures for copying both state dicts into RAM, as loading two models would.
Part 2 times ablation (one greedy probe pass per skipped block) and gradient importance on a small random
Llama of the built-in model's shape (8 blocks, hidden 128, MLP 384) with the world tokenizer, on the `arith`
probe; a random model seldom writes a stop string, so answers run to about --max-new-tokens.
Part gpu: on CUDA, checks that skipping block 0 under a KV cache equals a cacheless forward, times full
ablation and gradient importance of a Qwen2.5-0.5B-shaped random Llama in bf16, and streams the update
table of a Qwen2.5-1.5B-shaped bf16 checkpoint pair.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HIDDEN, INTERMEDIATE, VOCAB = 512, 1376, 8192

CHILD = r"""
import json, sys, threading, time
import torch
torch.set_num_threads(1)
from safetensors.torch import load_file
from imm.analysis.updates import layer_rows, stream_stats
def anon_mib():  # private (anonymous) resident memory; mmap'd file pages are page cache, reclaimable
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
peak, done = [0.0], [False]
def watch():
    while not done[0]:
        peak[0] = max(peak[0], anon_mib()); time.sleep(0.002)
mode, a, b = sys.argv[1:]
before = anon_mib()
watcher = threading.Thread(target=watch); watcher.start()
start = time.perf_counter()
if mode == "stream":
    rows = layer_rows(*stream_stats(a, {"model": b}), "model")
else:  # whole: both state dicts copied into RAM, as loading two models does, then one norm per tensor
    sa = {k: v.clone() for k, v in load_file(a + "/model.safetensors").items()}
    sb = {k: v.clone() for k, v in load_file(b + "/model.safetensors").items()}
    rows = {k: float((sb[k].double() - sa[k].double()).norm()) for k in sa}
seconds = time.perf_counter() - start
done[0] = True; watcher.join()
print(json.dumps({"seconds": seconds, "peak_above_start_mib": max(peak[0], anon_mib()) - before}))
"""


def llama_shapes(layers: int) -> dict[str, tuple[int, ...]]:
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,), "lm_head.weight": (VOCAB, HIDDEN)}
    for l in range(layers):
        p = f"model.layers.{l}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[p + f"self_attn.{name}.weight"] = (HIDDEN, HIDDEN)
        shapes[p + "mlp.gate_proj.weight"] = shapes[p + "mlp.up_proj.weight"] = (INTERMEDIATE, HIDDEN)
        shapes[p + "mlp.down_proj.weight"] = (HIDDEN, INTERMEDIATE)
        shapes[p + "input_layernorm.weight"] = shapes[p + "post_attention_layernorm.weight"] = (HIDDEN,)
    return shapes


def write_pair(folder: Path, layers: int) -> tuple[Path, Path, int]:
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(layers)
    a, b, n = {}, {}, 0
    for name, shape in llama_shapes(layers).items():
        a[name] = torch.randn(shape, generator=gen) * 0.02
        b[name] = a[name] + torch.randn(shape, generator=gen) * 1e-3
        n += a[name].numel()
    for side, tensors in (("a", a), ("b", b)):
        (folder / side).mkdir(parents=True)
        save_file(tensors, str(folder / side / "model.safetensors"))
        (folder / side / "config.json").write_text("{}")
    return folder / "a", folder / "b", n


def run_child(mode: str, a: Path, b: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(a), str(b)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_updates(layer_counts: list[int]) -> None:
    print("| blocks | params (M) | fp32 size per checkpoint (MiB) | stream: s | stream: peak anon RSS above start (MiB) "
          "| whole: s | whole: peak anon RSS above start (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for layers in layer_counts:
        with tempfile.TemporaryDirectory() as tmp:
            a, b, n = write_pair(Path(tmp), layers)
            stream, whole = run_child("stream", a, b), run_child("whole", a, b)
        print(f"| {layers} | {n / 1e6:.1f} | {n * 4 / 2**20:.0f} | {stream['seconds']:.2f} | "
              f"{stream['peak_above_start_mib']:.0f} | {whole['seconds']:.2f} | {whole['peak_above_start_mib']:.0f} |")


def time_importance(model, tok, probe, max_new_tokens: int) -> tuple[dict, float, float]:
    """Ablation importances and the seconds the ablation and the gradient measurement each take."""
    from imm.analysis import importance as imp

    start = time.perf_counter()
    ablation = imp.ablation_importance(model, tok, probe, max_new_tokens=max_new_tokens)
    ablation_s = time.perf_counter() - start
    start = time.perf_counter()
    imp.gradient_importance(model, tok, probe)
    return ablation, ablation_s, time.perf_counter() - start


def bench_importance(probe_size: int, max_new_tokens: int, layers: int) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from imm.analysis import importance as imp
    from imm.world.tokenizer import train_tokenizer

    torch.set_num_threads(1)
    probe = imp.probe_set("arith", probe_size)
    tok = train_tokenizer([probe.task.prompt(p) + " " + p.solution for p in probe.task.problems("train")[:2000]], 512)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=384, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=4, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=None)
    model = LlamaForCausalLM(config).eval()
    ablation, ablation_s, gradient_s = time_importance(model, tok, probe, max_new_tokens)
    n = sum(p.numel() for p in model.parameters())
    print(f"| blocks | params (M) | probe | new tokens | ablation total s | s per skipped block | gradient s |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {layers} | {n / 1e6:.2f} | {probe_size} | {max_new_tokens} | {ablation_s:.1f} | "
          f"{ablation_s / (layers + 1):.2f} | {gradient_s:.2f} |")
    assert set(ablation.values) == set(range(layers))


def random_llama(tok, hidden: int, inter: int, layers: int, heads: int, kv: int, dtype, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=kv, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=None)
    return LlamaForCausalLM(config).to(device=device, dtype=dtype).eval()


def gpu_cache_check(tok, probe, device: str) -> bool:
    from imm.analysis import importance as imp

    model = random_llama(tok, 256, 688, 4, 4, 4, torch.float32, device)
    ids = tok(probe.task.prompt(probe.problems[0]), return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
    with imp.skipped_block(model, 0), torch.no_grad():
        cached = model.generate(ids, max_new_tokens=16, do_sample=False, eos_token_id=None)
        manual = ids
        for _ in range(16):
            manual = torch.cat([manual, model(manual, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)], 1)
    return bool(torch.equal(cached, manual))


def bench_gpu(probe_size: int, max_new_tokens: int, device: str = "cuda") -> None:
    from imm.analysis import importance as imp
    from imm.world.tokenizer import train_tokenizer

    probe = imp.probe_set("arith", probe_size)
    tok = train_tokenizer([probe.task.prompt(p) + " " + p.solution for p in probe.task.problems("train")[:2000]], 512)
    print(f"skip block 0 under KV cache == cacheless forward on {device}: {gpu_cache_check(tok, probe, device)}")
    model = random_llama(tok, 896, 4864, 24, 14, 2, torch.bfloat16, device)  # Qwen2.5-0.5B block shapes
    imp.probe_accuracy(model, tok, probe, max_new_tokens=8, batch_size=64)  # warm-up
    ablation, ablation_s, gradient_s = time_importance(model, tok, probe, max_new_tokens)
    n = sum(p.numel() for p in model.parameters())
    print("| blocks | params (M) | dtype | probe | new tokens | ablation total s | s per skipped block | gradient s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| 24 | {n / 1e6:.0f} | bf16 | {probe_size} | {max_new_tokens} | {ablation_s:.1f} | "
          f"{ablation_s / 25:.2f} | {gradient_s:.2f} |")
    assert set(ablation.values) == set(range(24))
    del model
    bench_big_pair()


def bench_big_pair() -> None:
    """A Qwen2.5-1.5B-shaped pair (hidden 1536, 28 blocks, MLP 8960, vocab 151936) saved in bf16."""
    global HIDDEN, INTERMEDIATE, VOCAB
    HIDDEN, INTERMEDIATE, VOCAB = 1536, 8960, 151936
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory() as tmp:
        n = 0
        for side, noise in (("a", 0.0), ("b", 1e-3)):
            gen = torch.Generator().manual_seed(0)
            tensors = {}
            for name, shape in llama_shapes(28).items():
                t = torch.randn(shape, generator=gen) * 0.02 + noise * torch.randn(shape)
                tensors[name] = t.to(torch.bfloat16)
                n += t.numel() if side == "a" else 0
            (Path(tmp) / side).mkdir()
            save_file(tensors, str(Path(tmp) / side / "model.safetensors"))
            (Path(tmp) / side / "config.json").write_text("{}")
            del tensors
        stream = run_child("stream", Path(tmp) / "a", Path(tmp) / "b")
    print(f"| blocks | params (M) | bf16 size per checkpoint (MiB) | stream: s | stream: peak anon RSS above start (MiB) |")
    print("|---|---|---|---|---|")
    print(f"| 28 | {n / 1e6:.0f} | {n * 2 / 2**20:.0f} | {stream['seconds']:.2f} | {stream['peak_above_start_mib']:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("updates", "importance", "both", "gpu", "big"), default="both")
    parser.add_argument("--layers", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--probe-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--probe-layers", type=int, default=8)  # the built-in model has 8
    args = parser.parse_args()
    if args.part in ("updates", "both"):
        bench_updates(args.layers)
    if args.part in ("importance", "both"):
        bench_importance(args.probe_size, args.max_new_tokens, args.probe_layers)
    if args.part == "gpu":
        bench_gpu(args.probe_size, args.max_new_tokens)
    if args.part == "big":
        bench_big_pair()


if __name__ == "__main__":
    main()
