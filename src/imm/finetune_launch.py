"""Fine-tuning F_t as N processes through Hugging Face accelerate: DDP by default, FSDP or DeepSpeed ZeRO
from accelerate's own config file (`finetune.accelerate_config`), passed through as it is.

The loop's finetune stage is `finetune_checkpoint` here: in this process (imm.finetune, the training loop), or,
with `finetune.processes` > 1 or a config file, it writes a job folder beside F_t — the training pairs, the finetune config, the seed, the output paths — and
starts

    python -m accelerate.commands.launch --num_processes N [--config_file FILE] -m imm.finetune_launch JOB

Every process reads the job and runs imm.finetune's loop on its share of every batch; the main process
writes finetune_stats.json, train_log.jsonl and F_t (a full Hugging Face checkpoint) once. On other
machines the same command runs with their `--machine_rank` (`follow`, docs/scale.md). A process that
meets a bad input writes its one-line error into the job folder; the loop raises it and removes the job.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import yaml

from imm.config import FinetuneConfig, FinetuneMethod, from_dict
from imm.errors import UserError
from imm.finetune import TrainStats, describe, finetune_here, fold_lora, load_for_training, train_processes

JOB = "job.json"
PAIRS = "pairs.jsonl"
ONE_PROCESS_TYPES = ("NO",)  # distributed_type values that run a single process
FOLDING_TYPES = ("NO", "MULTI_GPU", "MULTI_CPU")  # where each process holds whole weights, so LoRA folds


def read_accelerate_config(path: str) -> dict:
    """accelerate's config file (YAML or JSON) as a mapping, or one clear error."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"finetune.accelerate_config {path} does not exist; pass accelerate's config file (written "
                        f"by `accelerate config`; examples in docs/scale.md) or leave it empty for DDP")
    try:
        data = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as err:
        raise UserError(f"finetune.accelerate_config {path} is not readable YAML ({str(err).splitlines()[0]}); "
                        f"fix the file") from None
    if not isinstance(data, dict):
        raise UserError(f"finetune.accelerate_config {path} must be a mapping of accelerate settings, got "
                        f"{type(data).__name__}")
    return data


def check_launch(cfg: FinetuneConfig) -> None:
    """Everything about the processes that can be checked before a model loads."""
    if cfg.processes < 1:
        raise UserError(f"finetune.processes must be at least 1, got {cfg.processes}; 1 trains in this process")
    if cfg.processes == 1 and not cfg.accelerate_config:
        return
    if importlib.util.find_spec("accelerate") is None:
        raise UserError(f"finetune.processes={cfg.processes} trains through Hugging Face accelerate, which is not "
                        f"installed: pip install accelerate (or set finetune.processes=1)")
    if cfg.accelerate_config:
        _check_file(cfg, read_accelerate_config(cfg.accelerate_config))


def _check_file(cfg: FinetuneConfig, file: dict) -> None:
    """accelerate's file against the finetune settings: where both say something, they must agree."""
    from accelerate.utils import DistributedType

    name, kind, known = cfg.accelerate_config, str(file.get("distributed_type", "NO")), [t.name for t in DistributedType]
    if kind not in known:
        raise UserError(f"{name}: distributed_type {kind} is none of accelerate's ({', '.join(known)}); fix the "
                        f"file (quote 'NO': YAML reads a bare NO as false)")
    if "num_processes" in file and file["num_processes"] != cfg.processes:
        raise UserError(f"finetune.processes={cfg.processes} but {name} sets num_processes: {file['num_processes']}; "
                        f"make them agree (both count every process on every machine)")
    if kind in ONE_PROCESS_TYPES and cfg.processes > 1:
        raise UserError(f"{name} sets distributed_type: {kind}, which runs one process, but finetune.processes="
                        f"{cfg.processes}; use MULTI_GPU (DDP), FSDP or DEEPSPEED")
    if kind == "MULTI_CPU":
        raise UserError(f"{name} sets distributed_type: MULTI_CPU, which accelerate starts through mpirun; use "
                        f"MULTI_GPU: on a machine without GPUs it trains on CPUs over gloo")
    if cfg.method == FinetuneMethod.LORA and kind not in FOLDING_TYPES:
        raise UserError(f"finetune.method=lora folds the adapter into whole weights, which {kind} shards across "
                        f"processes; use DDP (distributed_type: MULTI_GPU) for LoRA, or method=full with {kind}")
    clipping = (file.get("deepspeed_config") or {}).get("gradient_clipping")
    if kind == "DEEPSPEED" and clipping != cfg.max_grad_norm:  # DeepSpeed clips by its own setting, not ours
        raise UserError(f"{name}: DeepSpeed clips gradients at deepspeed_config.gradient_clipping ({clipping}), but "
                        f"finetune.max_grad_norm={cfg.max_grad_norm}; set gradient_clipping: {cfg.max_grad_norm}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(job: Path, cfg: FinetuneConfig, machine_rank: int | None = None) -> list[str]:
    """`accelerate launch` of this module's worker on `job` (its threads: this process's, shared out)."""
    import torch

    file = read_accelerate_config(cfg.accelerate_config) if cfg.accelerate_config else {}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(cfg.processes)]
    if cfg.accelerate_config:
        command += ["--config_file", str(Path(cfg.accelerate_config).expanduser().resolve())]
    else:
        command += ["--multi_gpu"] * (cfg.processes > 1) + ["--num_machines", "1", "--mixed_precision", "no",
                                                           "--dynamo_backend", "no"]
    if int(file.get("num_machines", 1)) <= 1 and "main_process_port" not in file:
        command += ["--main_process_port", str(_free_port())]  # tests and runs side by side must not collide
    if machine_rank is not None:
        command += ["--machine_rank", str(machine_rank)]
    threads = max(1, torch.get_num_threads() * int(file.get("num_machines", 1)) // cfg.processes)  # per machine
    return command + ["--num_cpu_threads_per_process", str(threads), "-m", "imm.finetune_launch", str(job)]


def write_job(job: Path, init, examples: Sequence, cfg: FinetuneConfig, out, stats_out, *, seed: int,
              device: str, log_out: Path | None, dtype: str = "float32") -> None:
    """The stage's inputs as files the processes read: job.json and the training pairs."""
    from imm.models import current_load_policy
    from imm.outputs import atomic_write_json, atomic_write_jsonl

    absolute = lambda p: str(Path(p).resolve()) if p is not None else None  # noqa: E731  other machines' view
    local_init = Path(init).exists()
    atomic_write_jsonl(job / PAIRS, [{"prompt": e.prompt, "response": e.response, "question_at": e.question_at}
                                         for e in examples])
    atomic_write_json(job / JOB, {"init": absolute(init) if local_init else str(init), "finetune": asdict(cfg),
                                  "seed": seed, "device": device, "out": absolute(out), "dtype": dtype,
                                  "stats_out": absolute(stats_out), "log_out": absolute(log_out),
                                  "load_policy": asdict(current_load_policy())})


def _die_with_parent() -> None:
    """Run in the child before it starts: SIGTERM it when the loop's process dies, even by SIGKILL, so no
    orphaned training keeps the GPUs or writes F_t into a run another process has resumed (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def check_gpus(cfg: FinetuneConfig, device: str) -> None:
    """One GPU per process on this machine, where the processes train on GPUs."""
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        return  # on CPUs (gloo)
    file = read_accelerate_config(cfg.accelerate_config) if cfg.accelerate_config else {}
    here, gpus = cfg.processes // max(1, int(file.get("num_machines", 1))), torch.cuda.device_count()
    if here > gpus:
        raise UserError(f"finetune.processes={cfg.processes} puts {here} training processes on this machine, which "
                        f"has {gpus} GPU(s); set finetune.processes={gpus} (one per GPU) or model.device=cpu")


def finetune_checkpoint(init, examples: Sequence, cfg: FinetuneConfig, out, stats_out, *, seed: int,
                        device: str = "auto", log_out: Path | None = None, dtype: str = "float32") -> str:
    """F_t = fine-tune(init, D_t), the loop's finetune stage, saved in `dtype` (imm.models.checkpoint_dtype): in
    this process (imm.finetune), or as `cfg.processes` processes through accelerate where the block asks for
    them; returns its one-line summary."""
    if examples and (cfg.processes > 1 or cfg.accelerate_config):
        return launch(init, examples, cfg, out, stats_out, seed=seed, device=device, log_out=log_out, dtype=dtype)
    return finetune_here(init, examples, cfg, out, stats_out, seed=seed, device=device, log_out=log_out, dtype=dtype)


def launch(init, examples: Sequence, cfg: FinetuneConfig, out, stats_out, *, seed: int, device: str = "auto",
           log_out: Path | None = None, dtype: str = "float32") -> str:
    """F_t trained by `cfg.processes` processes, saved in `dtype`; returns the stage's one-line summary."""
    from imm.outputs import remove_written, temporary_sibling

    check_launch(cfg)
    check_gpus(cfg, device)
    out = Path(out)
    job = temporary_sibling(out.with_name(f"{out.name}-job"))  # on the run folder's (shared) filesystem
    try:
        write_job(job, init, examples, cfg, out, stats_out, seed=seed, device=device, log_out=log_out, dtype=dtype)
        code = subprocess.run(launch_command(job, cfg), stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent).returncode
        errors = sorted(job.glob("error-*.txt"))
        if errors:
            raise UserError(errors[0].read_text().strip())
        if code != 0 or not out.is_dir():
            raise UserError(f"the {cfg.processes} training processes stopped with exit status {code} (their output "
                            f"is above) and F_t was not written; fix what they name and run the same command again")
    finally:
        remove_written(job)
    return f"{describe(TrainStats(**json.loads(Path(stats_out).read_text())))} on {cfg.processes} processes"


# --- the processes ---------------------------------------------------------------------------

def save_full(accelerator, model, tokenizer, cfg: FinetuneConfig, out: Path, dtype: str = "float32") -> None:
    """F_t in full Hugging Face format and `dtype`, written once by the main process (FSDP and ZeRO gather the
    whole weights onto it first, which every process must join)."""
    import torch

    from imm.models import save_model

    state = accelerator.get_state_dict(model)  # every process: a collective under FSDP and ZeRO
    if accelerator.is_main_process:
        saved = getattr(torch, dtype)
        plain = accelerator.unwrap_model(model)
        if cfg.method == FinetuneMethod.LORA:  # DDP only (check_launch): the adapter sits beside the whole weights
            save_model(fold_lora(plain).to(saved), tokenizer, out)
        else:
            state = {k: v.to(saved) if v.is_floating_point() else v for k, v in state.items()}
            save_model(plain, tokenizer, out, state_dict=state)  # the gathered weights, not the (sharded) module
    accelerator.wait_for_everyone()


def work(job_dir: Path) -> None:
    """One process's part of the job: load init, train its share, and (main process) write the outputs."""
    import torch
    from accelerate import Accelerator

    from imm.models import LoadPolicy, load_policy
    from imm.outputs import atomic_write_json

    job = json.loads((job_dir / JOB).read_text())
    cfg = from_dict(FinetuneConfig, job["finetune"])
    on_cpu = job["device"] == "cpu" or not torch.cuda.is_available()  # accelerate then reduces over gloo
    accelerator = Accelerator(cpu=on_cpu, gradient_accumulation_steps=cfg.grad_accum)
    with load_policy(LoadPolicy(**job["load_policy"])):  # on CPU: prepare() places it
        model, tokenizer = load_for_training(job["init"], cfg, seed=job["seed"], device="cpu")
    with open(job_dir / PAIRS, encoding="utf-8") as f:
        pairs = [(row["prompt"], row["response"], row["question_at"]) for row in map(json.loads, f)]
    log = Path(job["log_out"]) if job["log_out"] else None
    model, stats = train_processes(model, tokenizer, pairs, cfg, seed=job["seed"], log=log, accelerator=accelerator)
    if accelerator.is_main_process:  # the stats first: the checkpoint marks the stage done
        atomic_write_json(Path(job["stats_out"]), stats)
    save_full(accelerator, model, tokenizer, cfg, Path(job["out"]), job["dtype"])
    accelerator.end_training()


def follow(run_dir: Path, machine_rank: int, accelerate_config: str, poll: float = 2.0) -> None:
    """On another machine of a multi-node run: join every training job the loop writes under `run_dir`
    (a shared filesystem), as process group member `machine_rank`, until the loop ends (Ctrl-C)."""
    if not accelerate_config:
        raise UserError("--follow needs --config-file: the accelerate file of the machines, as the loop's node has it")
    if int(read_accelerate_config(accelerate_config).get("num_machines", 1)) < 2:
        raise UserError(f"{accelerate_config} sets num_machines below 2, so no other machine takes part; set "
                        f"num_machines, main_process_ip and main_process_port for all machines (docs/scale.md)")
    joined: set[Path] = set()
    while True:
        for job in sorted(run_dir.glob("arms/*/iter_*/.*-job.tmp-*/" + JOB)):
            if job.parent not in joined:
                joined.add(job.parent)
                cfg = from_dict(FinetuneConfig, json.loads(job.read_text())["finetune"])
                cfg = FinetuneConfig(**{**asdict(cfg), "accelerate_config": accelerate_config})
                print(f"machine {machine_rank}: joining the training job {job.parent}", flush=True)
                subprocess.run(launch_command(job.parent, cfg, machine_rank), stdin=subprocess.DEVNULL,
                               preexec_fn=_die_with_parent)
        time.sleep(poll)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imm.finetune_launch", description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path, help="a job folder the loop wrote (or, with --follow, the run folder)")
    parser.add_argument("--follow", action="store_true", help="join the run's training jobs from another machine")
    parser.add_argument("--machine-rank", type=int, default=1, help="this machine's rank (with --follow)")
    parser.add_argument("--config-file", default="", help="accelerate's config file on this machine (with --follow)")
    args = parser.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    try:
        if args.follow:
            follow(args.job, args.machine_rank, args.config_file)
        else:
            work(args.job)
    except UserError as err:
        if not args.follow:
            (args.job / f"error-{rank}.txt").write_text(str(err))
        print(f"imm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
