"""Check that `imm merge` reproduces mergekit on the deterministic merge methods.

    .venv/bin/python benchmarks/mergekit_check.py [--venv /tmp/mkvenv] [--record]

mergekit is never a dependency of this project: it is installed into its own throwaway virtual
environment (created on first use: `python3 -m venv DIR; DIR/bin/pip install torch==2.13.0
mergekit`, the CPU torch first so pip does not pull a CUDA build) and run there as
`mergekit-yaml`. Tiny random float32 models (Llama untied, Qwen2 tied with q/k/v biases) are built
in code in a temporary folder; every case merges them with both tools and compares every tensor.
Pass: max |imm − mergekit| ≤ 1e-6 on every tensor, same tensor names and shapes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from imm.merging import MergeSpec, merge

from _log import write_section

TOLERANCE = 1e-6
GRADIENT = [0.2, 0.9, 0.5]
CASES: dict[str, dict] = {
    "linear": {"merge_method": "linear", "models": "all", "each": {"weight": [1.0, 0.5, 2.0]}},
    "linear_nonorm": {"merge_method": "linear", "models": "all", "each": {"weight": [0.3, 0.2, 0.5]},
                      "parameters": {"normalize": False}},
    "task_arithmetic": {"merge_method": "task_arithmetic", "each": {"weight": [0.5, 0.3, -0.2]}},
    "task_arith_grad": {"merge_method": "task_arithmetic", "each": {"weight": [GRADIENT, 0.3, 0.7]},
                        "parameters": {"lambda": 0.8}},
    "task_arith_filter": {"merge_method": "task_arithmetic",
                          "each": {"weight": [[{"filter": "self_attn", "value": 0.9}, {"filter": "mlp", "value": GRADIENT},
                                               {"value": 0.1}], 0.4, 0.4]}},
    "ties": {"merge_method": "ties", "each": {"weight": [1.0, 0.6, 0.8], "density": [0.5, 0.3, 0.7]}},
    "ties_nonorm_rescale": {"merge_method": "ties", "each": {"weight": [1.0, 0.6, 0.8], "density": [0.5, 0.3, 0.7]},
                            "parameters": {"normalize": False, "rescale": True, "lambda": 1.3}},
    "ties_grad_density": {"merge_method": "ties", "each": {"weight": [0.5, 0.5, 0.5], "density": [GRADIENT, 0.4, 0.6]}},
    "breadcrumbs": {"merge_method": "breadcrumbs", "each": {"weight": [0.5, 0.3, 0.2], "density": [0.8, 0.7, 0.9],
                                                            "gamma": [0.05, 0.01, 0.1]}},
    "breadcrumbs_ties": {"merge_method": "breadcrumbs_ties", "each": {"weight": [0.5, 0.3, 0.2], "density": [0.8, 0.7, 0.9]}},
    "dare_ties_d1": {"merge_method": "dare_ties", "each": {"weight": [0.5, 0.3, 0.2], "density": [1.0, 1.0, 1.0]}},
    "slerp": {"merge_method": "slerp", "models": 1, "parameters": {"t": 0.3}},
    "slerp_filter": {"merge_method": "slerp", "models": 1,
                     "parameters": {"t": [{"filter": "self_attn", "value": [0.0, 0.5, 0.3, 0.7, 1.0]},
                                          {"filter": "mlp", "value": [1.0, 0.5, 0.7, 0.3, 0.0]}, {"value": 0.5}]}},
}


def build_family(root: Path, arch: str) -> list[Path]:
    """A base and three fine-tunes (base + small noise), float32, saved with save_pretrained."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    kw = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=5, num_attention_heads=4,
              num_key_value_heads=2)
    config, cls = (LlamaConfig(**kw), LlamaForCausalLM) if arch == "llama" else \
        (Qwen2Config(tie_word_embeddings=True, **kw), Qwen2ForCausalLM)
    torch.manual_seed(0)
    base = cls(config)
    paths = [root / arch / "base"]
    base.save_pretrained(paths[0])
    for i in range(3):
        model = cls(config)
        with torch.no_grad():
            for (name, p), q in zip(model.named_parameters(), base.parameters()):
                p.copy_(q + 0.01 * torch.randn_like(q))
        paths.append(root / arch / f"ft{i}")
        model.save_pretrained(paths[-1])
    return paths


def make_config(case: dict, paths: list[Path]) -> dict:
    """`each` gives one value per fine-tune; linear cases ("all") also list the base, weight 0.4."""
    base, fts = paths[0], paths[1:]
    fts = fts[:1] if case.get("models") == 1 else fts
    models = [{"model": str(p), "parameters": {}} for p in fts]
    for key, values in case.get("each", {}).items():
        for model, value in zip(models, values):
            model["parameters"][key] = value
    if case.get("models") == "all":
        models.insert(0, {"model": str(base), "parameters": {"weight": 0.4}})
    config = {"merge_method": case["merge_method"], "base_model": str(base), "models": models, "dtype": "float32"}
    if "parameters" in case:
        config["parameters"] = case["parameters"]
    return config


def ensure_venv(venv: Path) -> Path:
    exe = venv / "bin" / "mergekit-yaml"
    if not exe.exists():
        subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "torch==2.13.0"], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "mergekit"], check=True)
    return exe


def compare(ours: Path, theirs: Path) -> tuple[float, str]:
    a = {k: v for f in sorted(ours.glob("*.safetensors")) for k, v in load_file(f).items()}
    b = {k: v for f in sorted(theirs.glob("*.safetensors")) for k, v in load_file(f).items()}
    if set(a) != set(b):
        return float("inf"), f"names differ: only imm {sorted(set(a) - set(b))}, only mergekit {sorted(set(b) - set(a))}"
    worst, where = 0.0, ""
    for name in a:
        if a[name].shape != b[name].shape or a[name].dtype != b[name].dtype:
            return float("inf"), f"{name}: {a[name].dtype}{tuple(a[name].shape)} vs {b[name].dtype}{tuple(b[name].shape)}"
        diff = (a[name].double() - b[name].double()).abs().max().item()
        if diff > worst:
            worst, where = diff, name
    return worst, where


def run_case(name: str, case: dict, paths: list[Path], work: Path, exe: Path) -> tuple[float, str]:
    config = make_config(case, paths)
    yml = work / f"{name}.yml"
    yml.write_text(yaml.safe_dump(config, sort_keys=False))
    theirs, ours = work / f"{name}_mergekit", work / f"{name}_imm"
    subprocess.run([str(exe), str(yml), str(theirs), "--no-copy-tokenizer", "--no-write-model-card", "--quiet"],
                   check=True, capture_output=True)
    merge(MergeSpec.from_dict(config), ours, seed=0)
    return compare(ours, theirs)


def record(rows: list[tuple[str, str, float, str]], version: str) -> None:
    lines = ["| arch | case | max abs diff | worst tensor |", "|---|---|---|---|"]
    lines += [f"| {arch} | {case} | {diff:.2e} | {where} |" for arch, case, diff, where in rows]
    write_section("Merge engine: equivalence with mergekit", lines,
                  f"Against mergekit {version} (throwaway venv), tiny random float32 models; tolerance 1e-6.",
                  command=".venv/bin/python benchmarks/mergekit_check.py --record")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/mkvenv"))
    parser.add_argument("--record", action="store_true", help="write its section of docs/benchmarks.md")
    args = parser.parse_args()
    exe = ensure_venv(args.venv)
    version = subprocess.run([str(args.venv / "bin" / "pip"), "show", "mergekit"], capture_output=True,
                             text=True).stdout.split("Version: ")[1].split()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for arch in ("llama", "qwen2"):
            paths = build_family(Path(tmp), arch)
            for name, case in CASES.items():
                diff, where = run_case(f"{arch}_{name}", case, paths, Path(tmp), exe)
                rows.append((arch, name, diff, where))
                print(f"{arch:6s} {name:22s} max|diff| = {diff:.2e}  {where}", flush=True)
    failed = [r for r in rows if not r[2] <= TOLERANCE]
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    if args.record:
        record(rows, version)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
