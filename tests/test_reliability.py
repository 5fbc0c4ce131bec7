"""Faults a long run meets, each injected on purpose: a full disk, a folder that cannot be written, a
NaN loss, non-finite merged weights, hostile input files, pickled or self-executing checkpoints, and
answers built to exhaust the checker. Each ends in one line on stderr, exit code 2, no traceback, and
nothing half-written (docs/reliability.md lists them with their figures)."""

import contextlib
import json
import shutil
import subprocess
import time
import tracemalloc
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import save_file

from imm import cli, verify
from imm.models import BUILTIN_DIR, load_model, save_model
from imm.errors import UserError
from imm.config import FinetuneConfig
from imm.finetune_launch import finetune_checkpoint
from imm.outputs import atomic_write_text, is_temporary
from imm.verify.symbolic import SymbolicJudge

TINY_RUN = ("--config", "smoke", "model.threads=1", "data.train_questions=4", "data.ood_tasks=[]", "eval.limit=2",
            "eval.diversity_k=0", "analysis.enabled=false", "sampling.max_new_tokens=40", "eval.max_new_tokens=40",
            "iterations=1", "arms=[imm]")


def one_line(capsys, fragment: str) -> str:
    """The one error line (progress bars aside: they share stderr), holding `fragment`; no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert "Traceback" not in err and len(errors) == 1 and fragment in errors[0], err[-3000:]
    assert err.rstrip().endswith(errors[0]), "the error is not the last thing printed"
    return errors[0]


def temporaries(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if is_temporary(p)]


def builtin_copy(folder: Path) -> Path:
    shutil.copytree(BUILTIN_DIR, folder)
    return folder


# --- a small disk: a tmpfs the test mounts (root on Linux), else skipped with the reason -------

@contextlib.contextmanager
def tmpfs(where: Path, size: str, *options: str):
    where.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(where)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root on Linux): {mount.stderr.strip() or mount.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def resize(where: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def test_a_full_disk_is_one_line_with_the_space_needed_and_the_old_file_survives(tmp_path):
    with tmpfs(tmp_path / "disk", "64k") as disk:
        atomic_write_text(disk / "kept.json", "{}\n")
        with pytest.raises(UserError) as info:
            atomic_write_text(disk / "kept.json", "x" * 200_000)
        assert f"no space left on the disk of {disk}" in str(info.value) and "about 0.2 MB needed" in str(info.value)
        assert (disk / "kept.json").read_text() == "{}\n" and not temporaries(disk)


def test_a_checkpoint_on_a_full_disk_leaves_nothing_and_is_written_once_space_is_freed(tmp_path):
    model, tokenizer = load_model(BUILTIN_DIR, device="cpu")
    with tmpfs(tmp_path / "disk", "2m") as disk:
        with pytest.raises(UserError) as info:
            save_model(model, tokenizer, disk / "F_1")
        assert f"no space left on the disk of {disk}" in str(info.value) and "about 5.5 MB needed" in str(info.value)
        assert list(disk.iterdir()) == []
        resize(disk, "16m")
        save_model(model, tokenizer, disk / "F_1")
        assert (disk / "F_1" / "model.safetensors").stat().st_size > 5_000_000


def test_imm_run_on_a_full_disk_stops_in_one_line_and_resumes_once_space_is_freed(tmp_path, capsys):
    """θ0's evaluation, S_1 and D_1 fit in 3 MB; F_1 (5.5 MB) does not. The run stops naming the
    folder; after the disk grows, the same command resumes and keeps what was finished."""
    with tmpfs(tmp_path / "disk", "3m") as disk:
        assert cli.main(["run", *TINY_RUN, f"out_dir={disk}"]) == 2
        line = one_line(capsys, f"no space left on the disk of {disk / 'smoke' / 'arms' / 'imm' / 'iter_1'}")
        assert "imm iteration 1, finetune" in line and "MB needed" in line
        run = disk / "smoke"
        assert not temporaries(run) and not (run / "arms" / "imm" / "iter_1" / "finetuned").exists()
        kept = (run / "arms" / "imm" / "iter_1" / "samples.jsonl").stat().st_mtime_ns
        resize(disk, "64m")
        assert cli.main(["run", *TINY_RUN, f"out_dir={disk}"]) == 0
        assert (run / "summary.csv").is_file() and (run / "arms" / "imm" / "iter_1" / "merged").is_dir()
        assert (run / "arms" / "imm" / "iter_1" / "samples.jsonl").stat().st_mtime_ns == kept


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path, capsys):
    """A read-only mount (root ignores permission bits), and a file standing where a folder must go."""
    (tmp_path / "afile").write_text("mine")
    assert cli.main(["run", *TINY_RUN, f"out_dir={tmp_path / 'afile'}"]) == 2
    one_line(capsys, f"cannot write into {tmp_path / 'afile' / 'smoke'}: Not a directory")
    with tmpfs(tmp_path / "ro", "1m", "ro") as ro:
        assert cli.main(["run", *TINY_RUN, f"out_dir={ro}"]) == 2
        one_line(capsys, f"cannot write into {ro / 'smoke'}: Read-only file system")
        assert cli.main(["eval", "--model", "builtin", "--task", "arith", "--limit", "1", "--out", str(ro / "e")]) == 2
        one_line(capsys, f"cannot write into {ro}: Read-only file system")


# --- numerical faults -----------------------------------------------------------------------

def test_a_nan_loss_stops_fine_tuning_naming_the_step_and_keeps_no_checkpoint(tmp_path):
    """lr 1e30: step 1 is finite, its update overflows every weight, so step 2's loss is not a number."""
    from imm.verify.training_set import Example

    examples = [Example(f"q{i}", f"Q: {i} + 1 = ?\nA:", f" {i} + 1 = {i + 1}. The answer is {i + 1}.") for i in range(8)]
    cfg = FinetuneConfig(learning_rate=1e30, epochs=2, batch_size=4, warmup_ratio=0.0)
    with pytest.raises(UserError, match=r"the loss is (nan|inf) at optimizer step [2-4] of 4; F_t is not saved"):
        finetune_checkpoint(BUILTIN_DIR, examples, cfg, tmp_path / "F_1", tmp_path / "stats.json", seed=0, device="cpu")
    assert list(tmp_path.iterdir()) == []


def test_imm_run_names_the_iteration_of_a_diverged_fine_tune(tmp_path, capsys):
    args = ["run", *TINY_RUN, "finetune.learning_rate=1e30", "finetune.batch_size=1", f"out_dir={tmp_path}"]
    assert cli.main(args) == 2
    line = one_line(capsys, "imm iteration 1, finetune: fine-tuning diverged: the loss is")
    assert "at optimizer step" in line
    iteration = tmp_path / "smoke" / "arms" / "imm" / "iter_1"
    assert (iteration / "dataset.jsonl").is_file() and not (iteration / "finetuned").exists()
    assert not temporaries(tmp_path)


def test_fine_tunes_trained_at_once_report_a_divergence_as_one_line_naming_the_arm(tmp_path, capsys):
    """Two threads, two arms whose F_1 differ (θ0's and the teacher's samples): both train at once, in forked
    processes, and diverge; the run stops with the first one's line, as when training alone."""
    args = ["run", *TINY_RUN, "model.threads=2", "arms=[self_improve,distill]", "finetune.learning_rate=1e30",
            "finetune.batch_size=1", f"out_dir={tmp_path}"]
    assert cli.main(args) == 2
    line = one_line(capsys, "self_improve iteration 1, finetune: fine-tuning diverged: the loss is")
    assert "at optimizer step" in line
    for arm in ("self_improve", "distill"):
        assert not (tmp_path / "smoke" / "arms" / arm / "iter_1" / "finetuned").exists()
    assert not temporaries(tmp_path)


def test_merged_weights_are_checked_finite_before_they_are_written(tmp_path, capsys):
    base = builtin_copy(tmp_path / "base")
    broken = builtin_copy(tmp_path / "ft")
    from safetensors.torch import load_file

    tensors = load_file(broken / "model.safetensors")
    tensors["model.layers.3.mlp.up_proj.weight"][0, 0] = float("inf")
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    spec = {"merge_method": "imm", "base_model": str(base), "models": [{"model": str(broken)}]}
    (tmp_path / "merge.yml").write_text(yaml.safe_dump(spec))
    assert cli.main(["merge", str(tmp_path / "merge.yml"), str(tmp_path / "out"), "--quiet"]) == 2
    one_line(capsys, "merged tensor model.layers.3.mlp.up_proj.weight holds NaN or Inf values")
    assert not (tmp_path / "out").exists() and not temporaries(tmp_path)


# --- hostile inputs: one line, exit 2, no traceback --------------------------------------------

def _gsm8k(tmp_path: Path, lines: list[str]) -> str:
    path = tmp_path / "test.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return f"gsm8k={path}"


BINARY = bytes([0xFF, 0xFE, 0x00])
ROW = json.dumps({"question": "1 + 1?", "answer": "1 + 1 = 2\n#### 2"})


def _truncated(tmp_path: Path) -> Path:
    folder = builtin_copy(tmp_path / "truncated")
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    return folder


def _corrupt(tmp_path: Path) -> Path:
    folder = builtin_copy(tmp_path / "corrupt")
    (folder / "model.safetensors").write_bytes(b"\xff" * 64)
    return folder


def _pickled(tmp_path: Path) -> Path:
    folder = builtin_copy(tmp_path / "pickled")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"not even loaded")
    return folder


def _bad_config_json(tmp_path: Path) -> Path:
    folder = builtin_copy(tmp_path / "badjson")
    (folder / "config.json").write_text("{not json")
    return folder


def _other_vocab(tmp_path: Path) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(BUILTIN_DIR)
    config.vocab_size += 8
    LlamaForCausalLM(config).save_pretrained(tmp_path / "vocab")
    return tmp_path / "vocab"


def _other_arch(tmp_path: Path) -> Path:
    folder = builtin_copy(tmp_path / "arch")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"model_type": "mistral", "architectures": ["MistralForCausalLM"]}))
    return folder


def _file(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


HOSTILE = {
    "malformed YAML config": (lambda p: ["run", "--config", str(_file(p, "c.yaml", "sampling: {k: [1,\n"))],
                              "is not valid YAML"),
    "unknown nested key in a YAML config": (lambda p: ["run", "--config", str(_file(p, "c.yaml", "sampling:\n  kk: 2\n"))],
                                            "unknown config key sampling.kk"),
    "mistyped key in a YAML config": (lambda p: ["run", "--config", str(_file(p, "c.yaml", "finetune:\n  epochs: two\n"))],
                                      "config key finetune.epochs must be int"),
    "a folder as the config": (lambda p: ["run", "--config", str(p)], "cannot read config"),
    "data file with a broken JSON line": (lambda p: ["eval", "--model", "builtin", "--task", _gsm8k(p, [ROW, "{oops"]),
                                                     "--out", str(p / "e")], "line 2 of"),
    "row missing the gold answer": (lambda p: ["eval", "--model", "builtin", "--task",
                                               _gsm8k(p, [json.dumps({"question": "1 + 1?"})]), "--out", str(p / "e")],
                                    "row 1 of"),
    "binary data file": (lambda p: ["eval", "--model", "builtin", "--task", "gsm8k=" + str(_file(p, "x.jsonl", BINARY)),
                                    "--out", str(p / "e")], "cannot read"),
    "truncated safetensors (eval)": (lambda p: ["eval", "--model", str(_truncated(p)), "--task", "arith",
                                                "--out", str(p / "e")], "is truncated ("),
    "corrupt safetensors header (eval)": (lambda p: ["eval", "--model", str(_corrupt(p)), "--task", "arith",
                                                     "--out", str(p / "e")], "has a corrupt safetensors header"),
    "truncated safetensors base (run)": (lambda p: ["run", *TINY_RUN, f"model.base={_truncated(p)}", f"out_dir={p / 'o'}"],
                                         "is truncated ("),
    "config.json that is not JSON (run)": (lambda p: ["run", *TINY_RUN, f"model.base={_bad_config_json(p)}",
                                                      f"out_dir={p / 'o'}"], "is not a readable JSON file"),
    "pickled weights (eval)": (lambda p: ["eval", "--model", str(_pickled(p)), "--task", "arith", "--out", str(p / "e")],
                               "holds its weights only as pickle files (pytorch_model.bin)"),
    "pickled weights (run)": (lambda p: ["run", *TINY_RUN, f"model.base={_pickled(p)}", f"out_dir={p / 'o'}"],
                              "model.allow_pickle=true"),
    "merge config naming a missing model": (
        lambda p: ["merge", str(_file(p, "m.yml", yaml.safe_dump({"merge_method": "imm", "base_model": str(BUILTIN_DIR),
                                                                  "models": [{"model": str(p / "nope")}]}))),
                   str(p / "out")], "does not exist"),
    "merge config with an unknown method": (
        lambda p: ["merge", str(_file(p, "m.yml", yaml.safe_dump({"merge_method": "avg", "base_model": str(BUILTIN_DIR),
                                                                  "models": [{"model": str(BUILTIN_DIR)}]}))),
                   str(p / "out")], "avg"),
    "merge of a truncated checkpoint": (
        lambda p: ["merge", str(_file(p, "m.yml", yaml.safe_dump({"merge_method": "imm", "base_model": str(BUILTIN_DIR),
                                                                  "models": [{"model": str(_truncated(p))}]}))),
                   str(p / "out")], "is truncated ("),
    "merge of mismatched vocabularies": (
        lambda p: ["merge", str(_file(p, "m.yml", yaml.safe_dump({"merge_method": "imm", "base_model": str(BUILTIN_DIR),
                                                                  "models": [{"model": str(_other_vocab(p))}]}))),
                   str(p / "out")], "vocabulary size differs"),
    "merge of mismatched architectures": (
        lambda p: ["merge", str(_file(p, "m.yml", yaml.safe_dump({"merge_method": "imm", "base_model": str(BUILTIN_DIR),
                                                                  "models": [{"model": str(_other_arch(p))}]}))),
                   str(p / "out")], "merge checkpoints of one architecture"),
    "imm score on a broken line": (lambda p: ["score", str(_file(p, "s.jsonl", '{"completion": "7", "answer": "7"}\n{\n')),
                                              "--task", "arith"], "line 2 of"),
    "imm score on a row without a gold answer": (lambda p: ["score", str(_file(p, "s.jsonl", '{"completion": "7"}\n')),
                                                            "--task", "arith"], "has no gold"),
    "output folder that is a file": (lambda p: ["eval", "--model", "builtin", "--task", "arith",
                                                "--out", str(_file(p, "f", "mine"))], "is a file"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_is_one_line_and_exit_2(case, tmp_path, capsys):
    make_args, fragment = HOSTILE[case]
    args = make_args(tmp_path)
    capsys.readouterr()
    assert cli.main(args) == 2
    one_line(capsys, fragment)
    assert not (tmp_path / "e").exists() and not (tmp_path / "out").exists() and not (tmp_path / "o" / "smoke").exists()


# --- safe loading ------------------------------------------------------------------------------

def test_pickled_weights_load_only_when_asked(tmp_path, capsys):
    folder = builtin_copy(tmp_path / "pickled")
    model, _ = load_model(BUILTIN_DIR, device="cpu")
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    args = ["eval", "--model", str(folder), "--task", "arith", "--limit", "1", "--max-new-tokens", "8"]
    assert cli.main([*args, "--out", str(tmp_path / "refused")]) == 2
    one_line(capsys, "--allow-pickle")
    assert cli.main([*args, "--out", str(tmp_path / "allowed"), "--allow-pickle"]) == 0
    assert (tmp_path / "allowed" / "results.json").is_file()


def test_a_checkpoints_own_code_never_runs_unless_asked(tmp_path, capsys):
    """A config whose auto_map points at a Python file that would leave a marker when imported."""
    folder = builtin_copy(tmp_path / "remote")
    config = json.loads((folder / "config.json").read_text())
    config |= {"model_type": "imm_hostile", "auto_map": {"AutoConfig": "hostile.Config",
                                                         "AutoModelForCausalLM": "hostile.Model"}}
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "code_ran"
    (folder / "hostile.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    assert cli.main(["eval", "--model", str(folder), "--task", "arith", "--limit", "1", "--out", str(tmp_path / "e")]) == 2
    one_line(capsys, f"cannot load model {folder}")
    assert not marker.exists()


# --- the answer checker, bounded per answer ----------------------------------------------------

MEGABYTE = 1 << 20


SLOW = pytest.mark.slow  # the other shapes run in the full suite


@pytest.mark.parametrize("completion", [
    "The answer is " + "9" * MEGABYTE, "\\boxed{" * (MEGABYTE // 7), pytest.param("7" * MEGABYTE, marks=SLOW),
    pytest.param("(" * MEGABYTE, marks=SLOW), pytest.param("\\frac{1}{" * (MEGABYTE // 9), marks=SLOW),
    pytest.param("$" * MEGABYTE, marks=SLOW), pytest.param("1 + 1 = 2. " * (MEGABYTE // 11), marks=SLOW),
    pytest.param("\x00\ud7ff" * (MEGABYTE // 2), marks=SLOW),
])
def test_a_one_megabyte_completion_is_judged_fast_in_bounded_memory(completion):
    """Every kind and metric (math through its fast path) on a 1 MB completion: under 3 s and 64 MB of
    Python allocations per answer (a quadratic pattern or a copy per character would exceed both)."""
    tracemalloc.start()
    started = time.monotonic()
    for kind in ("number", "choice", "math"):
        for metric in verify.METRICS:
            assert not verify.check(completion, "3", kind, metric).correct
    verify.steps_correct(completion)
    seconds, (_, peak) = time.monotonic() - started, tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seconds < 3.0 * 6 and peak < 64 * MEGABYTE, (seconds, peak / MEGABYTE)


@pytest.fixture(scope="module")
def judge():
    pool = SymbolicJudge(workers=2, timeout_s=2.0)
    yield pool
    pool.close()


def test_pathological_latex_and_code_in_answers_are_wrong_within_the_timeout(judge, tmp_path):
    """Nested radicals, a 10,000-deep \\left( and an answer that is Python code: each is judged wrong,
    within the 2 s timeout plus a worker restart, and nothing it says is executed."""
    marker = tmp_path / "executed"
    hostile = ["\\sqrt{" * 2000 + "2" + "}" * 2000, "\\left(" * 10_000 + "1", "x^{x^{x^{x^{x^{x^{99999}}}}}}",
               f"__import__('os').system('touch {marker}')", "\\text{exec(open('" + str(marker) + "', 'w'))}",
               "1" * 100_000 + "!"]
    started = time.monotonic()
    verdicts = verify.check_many([f"\\boxed{{{h}}}" for h in hostile], ["3"] * len(hostile), "math", judge=judge)
    assert [v.correct for v in verdicts] == [False] * len(hostile)
    assert time.monotonic() - started < len(hostile) * 10 and not marker.exists()
    assert judge.equivalent_many([("\\frac{2}{4}", "0.5")]) == [True]  # the pool survives its kills
