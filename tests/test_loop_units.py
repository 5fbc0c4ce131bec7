"""Loop pieces without a model: the filter, the config loader, seeds, run-folder guards, the merge step."""

import dataclasses

import pytest
import torch
from transformers import LlamaForCausalLM

from imm.config import RunConfig, apply_override, from_dict, to_dict
from imm.errors import UserError
from imm.layout import RunLayout
from imm.layout import prepare_run_dir
from imm.stage_runner import stage_seed
from imm.merging.merge_back import merge_back
from imm.sampling import Sample
from imm.verify.training_set import select

from tiny import tiny_llama


def row(qid, completion, correct=True, steps=True):
    return Sample(qid, 0, f"Q{qid}", completion, "2", None, correct, steps, 5, 0.1)


SAMPLES = [
    row("a", "1 + 1 = 2. The answer is 2."),
    row("a", "1 + 1 = 2. The answer is 2. "),  # same text after strip: a duplicate
    row("a", "1 + 1 = 3. 3 - 1 = 2. The answer is 2.", steps=False),  # right answer, wrong step
    row("a", "The answer is 5.", correct=False),
    row("b", "2 + 2 = 4. The answer is 4."),
]


def cfg(**filter_fields) -> RunConfig:
    return from_dict(RunConfig, {"filter": filter_fields})


def test_filter_keeps_verified_and_deduplicates():
    kept = select(cfg().filter, SAMPLES)
    assert [(r.id, r.completion) for r in kept] == [
        ("a", "1 + 1 = 2. The answer is 2."), ("a", "1 + 1 = 3. 3 - 1 = 2. The answer is 2."),
        ("b", "2 + 2 = 4. The answer is 4.")]


def test_filter_options_dedup_cap_and_steps():
    assert len(select(cfg(dedup=False).filter, SAMPLES)) == 4
    assert [r.id for r in select(cfg(max_per_question=1).filter, SAMPLES)] == ["a", "b"]
    assert len(select(cfg(check_steps=True).filter, SAMPLES)) == 2
    assert select(cfg().filter, [row("a", "x", correct=False)]) == []


def test_config_rejects_unknown_keys_and_wrong_types_with_their_path():
    with pytest.raises(UserError, match="unknown config key finetune.lr;"):
        from_dict(RunConfig, {"finetune": {"lr": 1e-4}})
    with pytest.raises(UserError, match="config key sampling.k must be int"):
        from_dict(RunConfig, {"sampling": {"k": 2.5}})
    with pytest.raises(UserError, match="filter.dedup must be bool"):
        from_dict(RunConfig, {"filter": {"dedup": "yes"}})


def test_overrides_are_read_as_yaml_values():
    data = {}
    for o in ("sampling.k=8", "merge.weight=[0.2, 0.8]", "arms=[imm]", "name=x"):
        apply_override(data, o)
    c = from_dict(RunConfig, data)
    assert (c.sampling.k, c.merge.weight, c.arms, c.name) == (8, [0.2, 0.8], ("imm",), "x")
    assert c.finetune.learning_rate == 2e-5  # untouched fields keep their defaults
    apply_override(data, "finetune.learning_rate=3e-4")  # YAML 1.1 reads this as a string
    assert from_dict(RunConfig, data).finetune.learning_rate == 3e-4
    with pytest.raises(UserError, match="key=value"):
        apply_override({}, "sampling.k")


def test_config_round_trips_through_its_dict():
    c = from_dict(RunConfig, {"sampling": {"k": 3}, "arms": ["imm"]})
    assert from_dict(RunConfig, to_dict(c)) == c


def test_stage_seeds_differ_by_stage_and_iteration_not_by_arm():
    """A stage's seed is the first 4 bytes of sha256("SEED/ITERATION/STAGE"), big-endian; no arm enters it.
    sha256("0/1/sample") starts 16 67 53 49: 0x16675349 = 375870281."""
    seeds = {stage_seed(0, t, s) for t in (1, 2) for s in ("sample", "finetune")}
    assert len(seeds) == 4 and stage_seed(0, 1, "sample") == 375870281


def test_a_run_folder_with_another_config_is_not_resumed(tmp_path):
    first = from_dict(RunConfig, {"out_dir": str(tmp_path), "name": "r"})
    layout = RunLayout(first.run_dir)
    prepare_run_dir(first, layout, restart=False)
    prepare_run_dir(first, layout, restart=False)  # same config: resumes
    other = dataclasses.replace(first, seed=1)
    with pytest.raises(UserError, match=r"other settings: seed \(0 -> 1\)"):
        prepare_run_dir(other, layout, restart=False)
    (tmp_path / "r" / "arms").mkdir()
    prepare_run_dir(other, layout, restart=True)


def test_a_run_resumes_under_other_run_options(tmp_path):
    """Device, dtype, threads and generation batch sizes say how to compute, not what: resuming is allowed,
    and config.yaml then records the options of the latest invocation."""
    first = from_dict(RunConfig, {"out_dir": str(tmp_path), "name": "r"})
    layout = RunLayout(first.run_dir)
    prepare_run_dir(first, layout, restart=False)
    moved = from_dict(RunConfig, {"out_dir": str(tmp_path), "name": "r", "model": {"device": "cuda", "dtype": "bfloat16",
                                  "threads": 4}, "sampling": {"batch_size": 8}, "eval": {"batch_size": 8}})
    prepare_run_dir(moved, layout, restart=False)
    assert "threads: 4" in layout.config.read_text()
    changed = from_dict(RunConfig, {"out_dir": str(tmp_path), "name": "r", "sampling": {"k": 8}, "arms": ["imm"]})
    with pytest.raises(UserError, match=r"other settings: arms \(\['self_improve', 'imm'\] -> \['imm'\]\), sampling.k \(4 -> 8\)"):
        prepare_run_dir(changed, layout, restart=False)
    assert not (tmp_path / "r" / "arms").exists()


def _save_tiny(path, fill=None):
    model = tiny_llama(32, hidden=16, heads=2)
    if fill is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(fill)
    model.save_pretrained(path)
    return model


def test_merge_step_at_density_one_is_the_midpoint(tmp_path):
    """weight 0.5, density 1 (no drop): θ = θ0 + 0.5·((θ0 + 0.2) − θ0) = θ0 + 0.1, every tensor."""
    base = _save_tiny(tmp_path / "base")
    _save_tiny(tmp_path / "ft", fill=0.2)
    c = from_dict(RunConfig, {"merge": {"method": "imm", "weight": 0.5, "density": 1.0}})
    merge_back(tmp_path / "base", tmp_path / "ft", tmp_path / "merged", c.merge, seed=3)
    merged = LlamaForCausalLM.from_pretrained(tmp_path / "merged")
    for (name, p), q in zip(base.named_parameters(), merged.parameters()):
        assert torch.allclose(q, p + 0.1, atol=1e-6), name


def test_an_iteration_without_verified_samples_warns_and_records_it(tmp_path, capsys):
    import json

    from imm.layout import read_jsonl
    from imm.outputs import atomic_write_jsonl
    from imm.prompts import PromptConfig, prompter
    from imm.sampling import read_samples
    from imm.tasks.registry import get_task
    from imm.verify.training_set import build_training_set

    atomic_write_jsonl(tmp_path / "samples.jsonl", [row("a", "The answer is 5.", correct=False)])
    message = build_training_set(cfg().filter, read_samples(tmp_path / "samples.jsonl"), tmp_path / "dataset.jsonl",
                                 tmp_path / "dataset_stats.json", prompter(get_task("arith"), PromptConfig()))
    assert message.startswith("0/1 verified") and read_jsonl(tmp_path / "dataset.jsonl") == []
    assert "no verified sample" in json.loads((tmp_path / "dataset_stats.json").read_text())["warning"]
    assert "warning:" in capsys.readouterr().out


NEEDS_LOCAL_FILES = {"smollm2"}  # a converted checkpoint and GSM8K files: validated in tests/test_smollm2.py


def test_every_shipped_config_loads_and_validates():
    """Configs cannot rot: each shipped YAML must match the dataclasses and pass validation."""
    from imm.config import CONFIG_DIR
    from imm.preflight import load_config

    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert {"default", "smoke"} <= set(names)
    for name in set(names) - NEEDS_LOCAL_FILES:
        cfg = load_config(name)
        assert cfg.name == name and cfg.iterations >= 1
