"""Layer analysis (docs/method.md §3): where self-improvement's updates land and which layers do the reasoning.

    weights         a checkpoint's tensors streamed chunk by chunk (via imm.tensor_files), tied embeddings
    updates         per-layer, per-module ‖Δ‖₂, relative change, step, cosine and merge pull-back
    importance      layer importance on a probe of verified solutions: ablation drop, gradient norm
    superficiality  Spearman(importance, update) and the update's share in the top-quarter critical layers
    tables          layers.csv, importance.csv, superficiality.json
    run_folder      analyze_iteration (called by the loop), analyze_pair (`imm analyze --base --model`)

`from imm.analysis import analyze_iteration` works without importing torch until it is called for.
"""

from __future__ import annotations

_LAZY = {"analyze_iteration": "imm.analysis.run_folder", "analyze_pair": "imm.analysis.run_folder"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'imm.analysis' has no attribute {name!r}")
