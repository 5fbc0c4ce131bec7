"""Training as N processes through accelerate (imm.finetune_launch): two processes over gloo on CPU take
the steps one process takes, and every bad input is one line before anything is written.

Tolerance (also in docs/scale.md): per-step loss and gradient norm within 1e-5 relative, every final
weight within 1e-5 absolute. Two processes sum their gradients in another order than one process does,
so float32 rounding differs around 1e-7; the tiny model's fine-tuning moves weights by about 1e-2, and a
process that trained the wrong rows, or a gradient summed at the wrong scale, misses both bounds by far.
"""

import json
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from imm.preflight import load_config
from imm.errors import UserError
from imm.config import FinetuneConfig
from imm.finetune_launch import finetune_checkpoint
from imm.finetune_launch import check_launch
from imm.layout import read_jsonl
from imm.models import load_model, save_model
from imm.verify.training_set import Example
from imm.world.tokenizer import train_tokenizer

from tiny import tiny_llama

RTOL, ATOL = 1e-5, 1e-5
DOCUMENTED = Path(__file__).resolve().parents[1] / "docs" / "accelerate"  # the files docs/scale.md shows


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, list[Example]]:
    """25 sums: with batch 4 the last batch of each epoch is one row (the second process's share is empty)
    and with grad_accum 2 the last step has one micro-batch (a short group)."""
    rng = random.Random(0)
    sums = [(rng.randint(0, 99), rng.randint(0, 99)) for _ in range(25)]
    examples = [Example(str(i), f"Question: {a} + {b} = ?\nAnswer:", f" {a} + {b} = {a + b}. The answer is {a + b}.")
                for i, (a, b) in enumerate(sums)]
    tok = train_tokenizer([e.prompt + e.response for e in examples], vocab_size=300)
    model = tiny_llama(tokenizer=tok, max_position_embeddings=128)
    init = tmp_path_factory.mktemp("init") / "model"
    save_model(model, tok, init)
    return init, examples


def run(init: Path, examples, root: Path, **fields) -> tuple[list[dict], dict]:
    root.mkdir(parents=True, exist_ok=True)
    cfg = FinetuneConfig(learning_rate=3e-3, epochs=2, batch_size=4, grad_accum=2, warmup_ratio=0.1, **fields)
    finetune_checkpoint(init, examples, cfg, root / "finetuned", root / "finetune_stats.json", seed=3, device="cpu",
                        log_out=root / "train_log.jsonl")
    return read_jsonl(root / "train_log.jsonl"), load_model(root / "finetuned", device="cpu")[0].state_dict()


def test_two_processes_take_the_steps_of_one(setup, tmp_path):
    init, examples = setup
    one_log, one = run(init, examples, tmp_path / "one")
    two_log, two = run(init, examples, tmp_path / "two", processes=2)
    assert len(two_log) == len(one_log) == 2 * 4  # 7 batches, 4 steps an epoch; written once, not per process
    for a, b in zip(one_log, two_log):
        assert b["loss"] == pytest.approx(a["loss"], rel=RTOL)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=RTOL)
        assert b["lr"] == a["lr"]
    base = load_model(init, device="cpu")[0].state_dict()
    assert max(float((one[k] - base[k]).abs().max()) for k in one) > 100 * ATOL  # training moved the weights
    assert one.keys() == two.keys()
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < ATOL
    stats = json.loads((tmp_path / "two" / "finetune_stats.json").read_text())
    assert stats["steps"] == 8 and stats["examples"] == 25
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["finetune_stats.json", "finetuned", "train_log.jsonl"]
    assert (tmp_path / "two" / "finetuned" / "model.safetensors").is_file()  # full Hugging Face format


@pytest.mark.slow
def test_lora_on_two_processes_folds_into_the_weights_one_process_gets(setup, tmp_path):
    init, examples = setup
    lora = dict(method="lora", lora_rank=4, lora_dropout=0.0, lora_targets=("q_proj", "v_proj"))
    _, one = run(init, examples, tmp_path / "one", **lora)
    _, two = run(init, examples, tmp_path / "two", processes=2, **lora)
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < ATOL


@pytest.mark.slow
def test_an_error_in_the_processes_is_one_line_and_writes_nothing(setup, tmp_path):
    init, examples = setup
    with pytest.raises(UserError, match=r"finetune.lora_targets \['nowhere'\] do not fit this model") as err:
        run(init, examples, tmp_path / "run", processes=2, method="lora", lora_targets=("nowhere",))
    assert "\n" not in str(err.value)
    assert list((tmp_path / "run").iterdir()) == []  # no F_t, no stats, no log, no job folder


@pytest.mark.slow
def test_two_machines_sharing_the_run_folder_take_the_steps_of_one(setup, tmp_path):
    """Two machines simulated on this one (a process each, a static rendezvous on a free local port): the
    loop's side starts machine 0, and `python -m imm.finetune_launch RUN --follow` joins as machine 1 from
    the job it finds in the run folder. F_t equals one process's within the tolerance."""
    init, examples = setup
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    two_machines = accelerate_file(tmp_path, num_machines=2, num_processes=2, machine_rank=0, rdzv_backend="static",
                                   main_process_ip="127.0.0.1", main_process_port=port, same_network="true")
    run_dir = tmp_path / "run"
    follower = subprocess.Popen([sys.executable, "-m", "imm.finetune_launch", str(run_dir), "--follow",
                                 "--machine-rank", "1", "--config-file", two_machines])
    try:
        _, two = run(init, examples, run_dir / "arms" / "imm" / "iter_1", processes=2, accelerate_config=two_machines)
    finally:
        follower.terminate()
        follower.wait(timeout=60)
    _, one = run(init, examples, tmp_path / "one")
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < ATOL


def accelerate_file(tmp_path: Path, **settings) -> str:
    path = tmp_path / "accelerate.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in {"distributed_type": "MULTI_GPU", **settings}.items()))
    return str(path)


@pytest.mark.parametrize("fields, message", [
    (dict(processes=0), r"finetune.processes must be in \[1, 4096\], got 0"),
    (dict(accelerate_config="/no/such/file.yaml"), "finetune.accelerate_config /no/such/file.yaml does not exist"),
])
def test_a_bad_process_setting_is_refused_when_the_config_loads(fields, message):
    overrides = tuple(f"finetune.{k}={v}" for k, v in fields.items())
    with pytest.raises(UserError, match=message):
        load_config("smoke", overrides)


def test_the_accelerate_file_must_agree_with_the_settings(tmp_path):
    with pytest.raises(UserError, match="finetune.processes=2 but .* sets num_processes: 8; make them agree"):
        check_launch(FinetuneConfig(processes=2, accelerate_config=accelerate_file(tmp_path, num_processes=8)))
    with pytest.raises(UserError, match="distributed_type: NO, which runs one process"):
        check_launch(FinetuneConfig(processes=2, accelerate_config=accelerate_file(tmp_path, distributed_type="'NO'")))
    with pytest.raises(UserError, match="MULTI_CPU, which accelerate starts through mpirun"):
        check_launch(FinetuneConfig(processes=2, accelerate_config=accelerate_file(tmp_path, distributed_type="MULTI_CPU")))
    with pytest.raises(UserError, match="method=lora folds the adapter into whole weights, which FSDP shards"):
        check_launch(FinetuneConfig(processes=2, method="lora", accelerate_config=accelerate_file(tmp_path, distributed_type="FSDP")))
    with pytest.raises(UserError, match=r"distributed_type DDP is none of accelerate's \(NO, MULTI_CPU, MULTI_GPU"):
        check_launch(FinetuneConfig(processes=2, accelerate_config=accelerate_file(tmp_path, distributed_type="DDP")))
    with pytest.raises(UserError, match=r"DeepSpeed clips gradients at deepspeed_config.gradient_clipping \(0.5\)"):
        check_launch(FinetuneConfig(processes=2, accelerate_config=accelerate_file(
            tmp_path, distributed_type="DEEPSPEED", deepspeed_config="{zero_stage: 3, gradient_clipping: 0.5}")))
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(UserError, match="must be a mapping of accelerate settings"):
        check_launch(FinetuneConfig(processes=2, accelerate_config=str(tmp_path / "list.yaml")))
    check_launch(FinetuneConfig(processes=2, accelerate_config=accelerate_file(tmp_path, num_processes=2)))


def test_a_follower_without_a_machines_file_stops_at_once(tmp_path):
    """In a child with a deadline: a follower that failed to refuse would poll for jobs forever."""
    def follow(*extra):
        command = [sys.executable, "-m", "imm.finetune_launch", str(tmp_path), "--follow", *extra]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    for done in (follow(), follow("--config-file", accelerate_file(tmp_path, num_machines=1))):
        assert done.returncode == 2
        assert done.stderr.splitlines()[-1].startswith("imm: error: ")
    assert list(tmp_path.iterdir()) == [tmp_path / "accelerate.yaml"]  # it wrote nothing


def test_without_accelerate_more_processes_are_refused(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real(name, *a))
    with pytest.raises(UserError, match="not installed: pip install accelerate"):
        check_launch(FinetuneConfig(processes=2))
    check_launch(FinetuneConfig(processes=1))  # one process never needs it


@pytest.mark.parametrize("path", sorted(DOCUMENTED.glob("*.yaml")), ids=lambda p: p.name)
def test_the_documented_accelerate_files_load_and_agree_with_their_commands(path):
    from accelerate.commands.config.config_args import load_config_from_file

    load_config_from_file(str(path))  # accelerate's own reader takes it
    processes = yaml.safe_load(path.read_text())["num_processes"]
    assert f"finetune.processes={processes} finetune.accelerate_config=docs/accelerate/{path.name}" in \
        " ".join(path.read_text().replace("#", " ").split())  # the command in its header
    check_launch(FinetuneConfig(processes=processes, accelerate_config=str(path)))


def test_the_process_settings_are_run_options_so_a_run_resumes_under_others():
    """Same steps up to rounding (the tolerance above): resuming with another count or file is allowed;
    the global batch stays an experiment setting."""
    from imm.config import experiment_settings

    settings = experiment_settings(load_config("smoke"))
    assert "finetune.processes" not in settings and "finetune.accelerate_config" not in settings
    assert "finetune.batch_size" in settings and "finetune.grad_accum" in settings


@pytest.mark.slow
def test_the_training_processes_end_when_the_loop_is_killed(setup, tmp_path):
    """SIGKILL the process that launched the training: its processes go too, instead of training on as
    orphans that hold the devices and write F_t into a run another process may have resumed."""
    import psutil

    init, examples = setup
    code = ("import sys; from pathlib import Path; from imm.config import FinetuneConfig; from imm.finetune_launch import finetune_checkpoint; "
            "from imm.verify.training_set import Example; root = Path(sys.argv[1]); "
            "examples = [Example(str(i), 'Q: 1 + 1 = ?', ' 2.') for i in range(64)]; "
            "finetune_checkpoint(sys.argv[2], examples, FinetuneConfig(epochs=1000, batch_size=4, processes=2), "
            "root / 'finetuned', root / 'stats.json', seed=0, device='cpu', log_out=root / 'train_log.jsonl')")
    loop = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), str(init)])
    deadline = time.time() + 120
    while not (tmp_path / "train_log.jsonl").exists() and time.time() < deadline and loop.poll() is None:
        time.sleep(0.5)
    assert (tmp_path / "train_log.jsonl").exists(), "training did not start"

    def training():
        return [p for p in psutil.process_iter(["cmdline"]) if any(str(tmp_path) in a for a in p.info["cmdline"] or [])]
    assert training()
    loop.kill()
    loop.wait()
    psutil.wait_procs(training(), timeout=60)
    assert training() == []
    assert not (tmp_path / "finetuned").exists()


def test_more_processes_than_gpus_are_refused_before_any_work(monkeypatch, tmp_path):
    """torch.cuda's answers patched to a machine with 1 GPU (this one has none): 2 processes on it are
    refused before the job folder is written; on CPUs (model.device=cpu) they are not."""
    from imm.finetune_launch import check_gpus, launch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(UserError, match=r"puts 2 training processes on this machine, which has 1 GPU\(s\); set "
                                        r"finetune.processes=1"):
        launch("builtin", [Example("0", "Q", " A")], FinetuneConfig(processes=2), tmp_path / "finetuned",
               tmp_path / "stats.json", seed=0, device="auto")
    assert list(tmp_path.iterdir()) == []
    check_gpus(FinetuneConfig(processes=2), "cpu")
    two_machines = accelerate_file(tmp_path, num_machines=2, num_processes=2)
    check_gpus(FinetuneConfig(processes=2, accelerate_config=two_machines), "auto")  # one on each machine
