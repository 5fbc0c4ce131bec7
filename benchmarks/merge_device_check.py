"""Check `imm merge --device cuda` against the CPU merge on tiny random models (needs a GPU).

    PYTHONPATH=src python3 benchmarks/merge_device_check.py

Deterministic methods must agree with the CPU result to float32 rounding (max |diff| ≤ 1e-6);
random methods must be reproducible on the GPU for one seed (CUDA draws differ from the CPU's,
so only their keep rate is compared: with two fine-tunes at density 0.8 an entry changes unless
both masks drop it, a share of 1 − 0.2² = 0.96 ± 0.01).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import LlamaConfig, LlamaForCausalLM

from imm.merging import MergeSpec, merge

CONFIGS = {
    "task_arithmetic": {"weight": 0.5},
    "ties": {"weight": 0.7, "density": 0.4},
    "breadcrumbs": {"weight": 0.7, "density": 0.6},
    "linear": {"weight": 0.5},
}


def family(root: Path) -> list[str]:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=2)
    base = LlamaForCausalLM(config)
    paths = [root / "base", root / "ft1", root / "ft2"]
    base.save_pretrained(paths[0])
    for path in paths[1:]:
        model = LlamaForCausalLM(config)
        with torch.no_grad():
            for p, q in zip(model.parameters(), base.parameters()):
                p.copy_(q + 0.01 * torch.randn_like(q))
        model.save_pretrained(path)
    return [str(p) for p in paths]


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v for f in sorted(folder.glob("*.safetensors")) for k, v in load_file(f).items()}


def spec(method: str, paths: list[str], params: dict) -> MergeSpec:
    """Per-model parameters, also given at top level (linear weights the unlisted base with them)."""
    return MergeSpec.from_dict({"merge_method": method, "base_model": paths[0], "dtype": "float32",
                                "parameters": {"weight": params["weight"]},
                                "models": [{"model": p, "parameters": params} for p in paths[1:]]})


def main() -> int:
    assert torch.cuda.is_available(), "no CUDA device"
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = family(root)
        for method, params in CONFIGS.items():
            cpu = tensors(merge(spec(method, paths, params), root / f"{method}_cpu"))
            gpu = tensors(merge(spec(method, paths, params), root / f"{method}_gpu", device="cuda"))
            diff = max((cpu[k] - gpu[k]).abs().max().item() for k in cpu)
            failures += diff > 1e-6
            print(f"{method:16s} cpu vs cuda max|diff| = {diff:.2e}")
        for method in ("imm", "dare_ties"):
            s = spec(method, paths, {"weight": 0.5, "density": 0.8})
            a = tensors(merge(s, root / f"{method}_a", seed=5, device="cuda"))
            b = tensors(merge(s, root / f"{method}_b", seed=5, device="cuda"))
            base, ft = tensors(Path(paths[0])), tensors(Path(paths[1]))
            same = all(torch.equal(a[k], b[k]) for k in a)
            name = "model.embed_tokens.weight"
            kept = ((a[name] - base[name]).abs() > 0).float().mean().item()
            # an entry stays at θ0 only if both fine-tunes' masks drop it: changed share 1 − 0.2² = 0.96
            ok = same and abs(kept - 0.96) < 0.01
            failures += not ok
            print(f"{method:16s} cuda reproducible = {same}, changed share of {name} = {kept:.3f}")
    print(f"{len(CONFIGS) + 2 - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
