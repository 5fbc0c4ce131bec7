"""Importances cached per checkpoint: measured once (θ0's serves every iteration and arm), then read back.

A cache file is keyed by the checkpoint's path, the size and modification time of each of its files, and
every probe setting, so a re-saved checkpoint or a different probe is measured afresh. Each importance
kind has its own file: asking for `gradient` later reuses an `ablation` measured earlier.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from imm.analysis.importance import MEASURES, Importance, check_kinds, measure, probe_set
from imm.config import AnalysisConfig, EvalConfig, FinetuneConfig, ModelConfig
from imm.prompts import PromptConfig
from imm.outputs import atomic_write_json


def checkpoint_signature(folder: Path) -> list[tuple[str, int, int]]:
    """(file name, size, mtime in ns) of the weight and config files: cheap to read, changes on any re-save."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix in (".safetensors", ".json", ".bin"))
    return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def cache_file(cache_dir: Path, folder: Path, kind: str, settings: dict) -> Path:
    key = {"path": str(Path(folder).resolve()), "files": checkpoint_signature(folder), "kind": kind, **settings}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"{kind}-{digest}.json"


def _write(path: Path, importance: Importance, folder: Path, settings: dict) -> None:
    record = asdict(importance) | {"checkpoint": str(folder), "settings": settings}
    atomic_write_json(path, record)


def _read(path: Path) -> Importance:
    raw = json.loads(path.read_text())
    skipped = raw.get("skipped_accuracy")
    return Importance(
        kind=raw["kind"],
        values={int(k): float(v) for k, v in raw["values"].items()},
        accuracy=raw.get("accuracy"),
        skipped_accuracy={int(k): float(v) for k, v in skipped.items()} if skipped is not None else None,
    )


def cached_importance(
    folder: Path,
    kinds: Sequence[str],
    cache_dir: Path,
    *,
    probe_task: str = AnalysisConfig.probe_task,
    probe_size: int = AnalysisConfig.probe_size,
    max_new_tokens: int = EvalConfig.max_new_tokens,
    batch_size: int = EvalConfig.batch_size,
    device: str = ModelConfig.device,
    prompt: PromptConfig = PromptConfig(),
    max_length: int = FinetuneConfig.max_length,
) -> dict[str, Importance]:
    """Importance of checkpoint `folder` for every kind in `kinds`, measuring (and loading) only what is missing."""
    check_kinds(kinds)
    settings = {"probe_task": probe_task, "probe_size": probe_size, "max_new_tokens": max_new_tokens,
                "probe_split": "train, last problems"}  # caches of the earlier test-split probe are not reused
    if prompt != PromptConfig():
        settings["prompt"] = asdict(prompt)  # the default prompt keeps the keys of caches written before prompts
    # The gradient and the influence generate nothing, so their cache entries do not depend on max_new_tokens;
    # they read finetune.max_length tokens of each example (a key only where it is not the default, as above).
    fitted = {"max_length": max_length} if max_length != FinetuneConfig.max_length else {}
    per_kind = {kind: settings if MEASURES[kind].generates else {**settings, "max_new_tokens": None, **fitted}
                for kind in kinds}
    files = {kind: cache_file(cache_dir, folder, kind, per_kind[kind]) for kind in kinds}
    missing = [kind for kind, path in files.items() if not path.exists()]
    if missing:
        from imm.models import load_model

        probe = probe_set(probe_task, probe_size, prompt, max_length)  # validated before the model is loaded
        model, tokenizer = load_model(folder, device=device)
        measured = measure(model, tokenizer, probe, missing, max_new_tokens=max_new_tokens, batch_size=batch_size)
        for kind, importance in measured.items():
            _write(files[kind], importance, folder, per_kind[kind])
        del model
    return {kind: _read(files[kind]) for kind in kinds}
