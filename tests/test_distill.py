"""Distillation end to end with a teacher whose tokenizer is not the student's.

The teacher is the built-in base with its vocabulary permuted: every token has another id and the
embedding and output rows move with it, so it writes the same text from other token ids. Samples travel
as text and the student re-tokenises them; if ids leaked from teacher to student, training would see
other tokens and the teacher's greedy accuracy would not equal θ0's."""

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from imm.models import BUILTIN_DIR
from imm.cli import main

pytestmark = pytest.mark.slow


def permuted_teacher(folder: Path) -> Path:
    """The base with token ids 2.. reversed (0 = <pad>, 1 = <eos> stay): same text, other ids."""
    folder.mkdir()
    for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
        (folder / name).write_text((BUILTIN_DIR / name).read_text())
    tokenizer = json.loads((BUILTIN_DIR / "tokenizer.json").read_text())
    vocab = tokenizer["model"]["vocab"]
    top = max(vocab.values())
    new_id = {i: i if i < 2 else top + 2 - i for i in range(top + 1)}
    tokenizer["model"]["vocab"] = {token: new_id[i] for token, i in vocab.items()}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    weights = load_file(BUILTIN_DIR / "model.safetensors")
    order = torch.tensor([old for new, old in sorted((n, o) for o, n in new_id.items())])  # row new <- row old
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        weights[name] = weights[name][order].contiguous()
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_a_teacher_with_another_tokenizer_teaches_through_text(tmp_path):
    from imm.models import load_model

    teacher = permuted_teacher(tmp_path / "teacher")
    (_, base_tok), (_, teacher_tok) = load_model("builtin", device="cpu"), load_model(teacher, device="cpu")
    text = "Tom has 12 apples and buys 7 more."
    assert base_tok(text)["input_ids"] != teacher_tok(text)["input_ids"]
    assert teacher_tok.decode(teacher_tok(text)["input_ids"]) == text

    assert main(["run", "--config", "smoke", f"out_dir={tmp_path}", "name=d", "iterations=1", "arms=[distill]",
                 f"model.teacher={teacher}", "analysis.enabled=false", "model.threads=1"]) == 0
    run = tmp_path / "d"
    stats = json.loads((run / "arms/distill/iter_1/dataset_stats.json").read_text())
    assert stats["kept"] > 10  # the teacher's text verifies like θ0's would
    student = load_file(run / "arms/distill/iter_1/finetuned/model.safetensors")
    base = load_file(BUILTIN_DIR / "model.safetensors")
    assert student["model.embed_tokens.weight"].shape == base["model.embed_tokens.weight"].shape
    assert not torch.equal(student["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    with open(run / "summary.csv") as f:
        greedy = {(r["model"], r["task"]): r["value"] for r in csv.DictReader(f)
                  if r["iteration"] == "0" and r["metric"] == "strict-match"}
    tasks = {task for _, task in greedy}
    assert len(tasks) == 7 and all(greedy["teacher", t] == greedy["generator", t] for t in tasks if "@" not in t)
