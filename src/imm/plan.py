"""`imm plan`: what an `imm run` will ask for, before it starts: work, memory, disk and (given a throughput) time.

    imm plan [--config NAME|PATH] [KEY=VALUE ...] [--tokens-per-second N] [--train-tokens-per-second N]

The config is validated as `imm run` validates it (imm.preflight: every problem at once) and the models are found
as it finds them (a hub id is
looked up, its config.json only); nothing is written and no weights are loaded. Then, per stage and in total:

    work    prompts, samples and the generated-token budget (every answer at its max_new_tokens), training
            sequences and tokens (at most every sample verified; each at most prompt + answer and
            finetune.max_length), optimizer steps, evaluations and merges, counted as the loop runs them
            (what two arms compute alike counted once)
    memory  the largest batch of each stage (imm.plan_memory, part by part)
    disk    the checkpoints the run writes (F_t, θ_t)
    time    generated tokens / --tokens-per-second, training tokens / --train-tokens-per-second

Prompt lengths are measured with the model's tokenizer on the first training questions when the data are
local files (the built-in world tasks too); for a hub data set `--prompt-tokens` gives them (default 256).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field

from imm.arms import Arm, Source, shared_stages
from imm.config import CheckpointDtype, FinetuneMethod, ImportanceKind, InitFrom, RunConfig
from imm.errors import UserError
from imm.merging.merge_back import fine_tunes
from imm.plan_memory import BYTES, MIB, Memory, ModelShape, generation_memory, lora_parameters, lora_saved, \
    merge_memory, runtime_bytes, training_memory

STAGES = ("sample", "verify", "finetune", "merge", "evaluate", "analyse")
GIB = 2**30


@dataclass
class Work:
    """One stage's work over the whole run (a mutable tally while counting)."""

    runs: int = 0
    prompts: int = 0
    samples: int = 0
    generated_tokens: int = 0
    train_sequences: int = 0
    train_tokens: int = 0
    steps: int = 0
    merges: int = 0

    def add(self, **counts: int) -> None:
        for name, n in counts.items():
            setattr(self, name, getattr(self, name) + n)


@dataclass(frozen=True)
class Lengths:
    """Tokens of the prompts the run asks (the longest is what a batch pads to)."""

    mean_prompt: int
    max_prompt: int
    mean_train_prompt: int  # a training prompt: finetune.prompt_shots worked examples, not prompt.shots
    max_train_prompt: int
    measured: bool  # from the data with the tokenizer; else `--prompt-tokens`


@dataclass
class Plan:
    cfg: RunConfig
    shape: ModelShape
    lengths: Lengths
    work: dict[str, Work] = field(default_factory=lambda: {s: Work() for s in STAGES})
    finetunes_at_once: int = 1  # the most fine-tunes one iteration trains (side by side on a CPU: imm.side_by_side)


def computed(arms: list[Arm], i: int, stage: str, t: int, init_from_base: bool) -> bool:
    """Whether arm i computes `stage` of iteration t itself, as the loop decides: not when an earlier arm
    computes it alike (imm.arms.shared_stages)."""
    return not any(stage in shared_stages(arms[i], other, t, init_from_base) for other in arms[:i])


def count_work(plan: Plan) -> None:
    """Fill plan.work: iteration 0's reference evaluations, then every arm's iterations."""
    cfg, arms = plan.cfg, [plan.cfg.arm(name) for name in plan.cfg.arms]
    references = 1 + any(a.samples_from is Source.TEACHER for a in arms)
    for _ in range(references):
        _evaluate(plan)
    for t in range(1, cfg.iterations + 1):
        for i, arm in enumerate(arms):
            _iteration(plan, arms, i, arm, t)
    if cfg.analysis.enabled and cfg.analysis.importance:
        _importance(plan)


def _iteration(plan: Plan, arms: list[Arm], i: int, arm: Arm, t: int) -> None:
    cfg, w = plan.cfg, plan.work
    base_init = cfg.finetune.init_from is InitFrom.BASE
    n, k, new = cfg.data.train_questions, cfg.sampling.k, cfg.sampling.max_new_tokens
    if computed(arms, i, "sample", t, base_init):
        w["sample"].add(runs=1, prompts=n, samples=n * k, generated_tokens=n * k * new)
        w["verify"].add(runs=1, samples=n * k)
    if computed(arms, i, "finetune", t, base_init):
        trainings = fine_tunes(cfg.merge_block(arm.name)) if arm.merges else 1
        for _ in range(trainings):
            _finetune(plan)
        trained = sum(computed(arms, j, "finetune", t, base_init) * (fine_tunes(cfg.merge_block(a.name)) if a.merges
                                                                     else 1) for j, a in enumerate(arms))
        plan.finetunes_at_once = max(plan.finetunes_at_once, trained)
    if arm.merges:
        w["merge"].add(runs=1, merges=1)
    if (arm.evaluates_finetuned or t == 1) and computed(arms, i, "evaluate", t, base_init):
        _evaluate(plan)
    if arm.merges:
        _evaluate(plan)
    if cfg.analysis.enabled:
        w["analyse"].add(runs=1)


def kept_per_question(cfg: RunConfig) -> int:
    """At most this many verified samples of a question reach D_t."""
    cap = cfg.filter.max_per_question
    return min(cfg.sampling.k, cap) if cap else cfg.sampling.k


def sequence_tokens(plan: Plan, mean: bool) -> int:
    """A training sequence's tokens at most: prompt + a whole answer, cut at finetune.max_length."""
    prompt = plan.lengths.mean_train_prompt if mean else plan.lengths.max_train_prompt
    return min(plan.cfg.finetune.max_length, prompt + plan.cfg.sampling.max_new_tokens + 1)


def _finetune(plan: Plan) -> None:
    f = plan.cfg.finetune
    sequences = plan.cfg.data.train_questions * kept_per_question(plan.cfg)
    steps = math.ceil(sequences / (f.batch_size * f.grad_accum)) * f.epochs
    plan.work["finetune"].add(runs=1, train_sequences=sequences * f.epochs,
                              train_tokens=sequences * f.epochs * sequence_tokens(plan, mean=True), steps=steps)


def _evaluate(plan: Plan) -> None:
    e = plan.cfg.eval
    tasks = len(plan.cfg.data.id_tasks) + len(plan.cfg.data.ood_tasks)
    greedy, diverse = tasks * e.limit, (e.diversity_questions if e.diversity_k else 0)
    samples = greedy + diverse * e.diversity_k
    plan.work["evaluate"].add(runs=1, prompts=greedy + diverse, samples=samples,
                              generated_tokens=samples * e.max_new_tokens)


def _importance(plan: Plan) -> None:
    """θ0's layer importance, computed once per run: ablation asks the probe once per block and once whole."""
    a, w = plan.cfg.analysis, plan.work["analyse"]
    if ImportanceKind.ABLATION in a.importance:
        asked = (plan.shape.blocks + 1) * a.probe_size
        w.add(prompts=asked, samples=asked, generated_tokens=asked * plan.cfg.eval.max_new_tokens)
    if ImportanceKind.GRADIENT in a.importance:
        w.add(train_sequences=a.probe_size, train_tokens=a.probe_size * sequence_tokens(plan, mean=True))


# --- memory, disk, time ----------------------------------------------------------------------

def stage_memory(plan: Plan, device: str, runtime: int) -> dict[str, Memory]:
    """The largest batch of each stage that holds a model."""
    from imm.engines.hf import cpu_workers
    from imm.finetune import use_bf16_autocast
    from imm.models import pick_dtype

    cfg, shape, lengths = plan.cfg, plan.shape, plan.lengths
    dtype_bytes = BYTES[str(pick_dtype(cfg.model.dtype, device)).removeprefix("torch.")]
    workers = cpu_workers(cfg.model.workers, device) if device == "cpu" else 1

    def generation(batch_size: int, k: int, prompts: int, new: int) -> Memory:
        """A batch holds batch_size // k prompts of one request (imm.engines.hf), k rows each."""
        per_batch = min(max(1, batch_size // k), prompts)
        return generation_memory(shape, dtype_bytes, rows=per_batch * k, prompt_rows=per_batch,
                                 prompt_tokens=lengths.max_prompt, new_tokens=new, workers=workers, runtime=runtime)

    f, s, e = cfg.finetune, cfg.sampling, cfg.eval
    full = f.method is FinetuneMethod.FULL
    trained = shape.parameters if full else lora_parameters(shape, f.lora_rank, f.lora_targets)
    lora = 0 if full else lora_saved(shape, f.lora_rank, f.lora_targets, f.lora_dropout)
    batch = min(f.batch_size, cfg.data.train_questions * kept_per_question(cfg))
    train = training_memory(shape, trained=trained, batch=batch, tokens=sequence_tokens(plan, mean=False),
                            autocast=use_bf16_autocast(f.bf16_autocast, device.split(":")[0]),
                            checkpointing=f.gradient_checkpointing, runtime=runtime, lora=lora)
    evaluations = [generation(e.batch_size, 1, e.limit, e.max_new_tokens)]
    if e.diversity_k:
        evaluations.append(generation(e.batch_size, e.diversity_k, e.diversity_questions, e.max_new_tokens))
    return {"sample": generation(s.batch_size, s.k, cfg.data.train_questions, s.max_new_tokens),
            "finetune": side_by_side(train, training_lanes(plan, device)), "merge": merge_memory(shape, runtime),
            "evaluate": max(evaluations, key=lambda m: m.total)}


def training_lanes(plan: Plan, device: str) -> int:
    """Fine-tunes that train at once, each in its own forked process (imm.loop.trains_side_by_side)."""
    import torch

    from imm.loop import trains_side_by_side
    from imm.side_by_side import at_once

    if device != "cpu" or not trains_side_by_side(plan.cfg):
        return 1
    return at_once(plan.finetunes_at_once, plan.cfg.model.threads or torch.get_num_threads())


def side_by_side(memory: Memory, lanes: int) -> Memory:
    """`lanes` processes' memory: each its own copy of every part but the runtime they share on forking."""
    return Memory(tuple((name, n if name == "runtime" else lanes * n) for name, n in memory.parts))


def checkpoint_bytes(plan: Plan) -> int:
    """One saved F_t or θ_t, in model.checkpoint_dtype (imm.models.checkpoint_dtype: "base" is θ0's dtype, read
    from its weights when local, from its config.json for a hub id)."""
    from pathlib import Path

    from imm.models import checkpoint_dtype, resolve_model_path

    setting = plan.cfg.model.checkpoint_dtype
    if setting != CheckpointDtype.BASE:
        return plan.shape.parameters * BYTES[str(setting)]
    if isinstance(resolve_model_path(plan.cfg.model.base), Path):
        return plan.shape.parameters * BYTES[checkpoint_dtype(setting, plan.cfg.model.base)]
    return plan.shape.parameters * BYTES.get(plan.shape.stored_dtype, BYTES["float32"])


def disk_bytes(plan: Plan) -> int:
    return (plan.work["finetune"].runs + plan.work["merge"].runs) * checkpoint_bytes(plan)


def stage_seconds(work: Work, generation_tps: float, training_tps: float) -> float | None:
    """Seconds from the throughputs given; None when a needed one is missing."""
    needs = [(work.generated_tokens, generation_tps), (work.train_tokens, training_tps)]
    if any(tokens and not tps for tokens, tps in needs):
        return None
    return sum(tokens / tps for tokens, tps in needs if tokens)


# --- finding the model and the prompts --------------------------------------------------------

def model_shape(spec: str) -> tuple[ModelShape, object]:
    """(shape, local folder or None) of a model as `imm run` names it: a folder's headers, or a hub id's
    config.json (from the cache, else the hub; no weights)."""
    import json
    from pathlib import Path

    from imm.models import resolve_model_path
    from imm.plan_memory import read_shape, shape_from_config

    where = resolve_model_path(spec)
    if isinstance(where, Path):
        return read_shape(where), where
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, _, revision = spec.partition("@")
    try:
        config = Path(hf_hub_download(repo, "config.json", revision=revision or None))
    except LocalEntryNotFoundError:
        raise UserError(f"model {spec}: its config.json is not in the Hugging Face cache and the hub cannot be "
                        f"reached; plan with a network, or set model.base to a local checkpoint folder") from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"cannot read model {spec}'s config.json from the hub: {first}; check the id") from None
    return shape_from_config(json.loads(config.read_text(encoding="utf-8"))), None


def prompt_lengths(cfg: RunConfig, folder, assumed: int, count: int = 64) -> tuple[Lengths, int | None]:
    """Token counts of the first `count` training prompts, built as sampling builds them, where the model and the
    data are local; else `assumed` for both. Also the size of the train split where it was read."""
    from imm.prompts import prompter
    from imm.tasks.loading import FileTask
    from imm.tasks.registry import get_task

    task = get_task(cfg.data.train_task)
    if folder is None or (isinstance(task, FileTask) and task.path is None):
        return Lengths(assumed, assumed, assumed, assumed, measured=False), None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    problems = task.problems("train")
    asked = problems[:count]

    def sizes(shots: int) -> list[int]:
        ask = prompter(task, dataclasses.replace(cfg.prompt, shots=shots), tokenizer, asked=asked)
        return [len(tokenizer(ask(p), add_special_tokens=False)["input_ids"]) for p in asked]

    sampled, trained = sizes(cfg.prompt.shots), sizes(cfg.finetune.prompt_shots)
    return Lengths(round(sum(sampled) / len(sampled)), max(sampled), round(sum(trained) / len(trained)), max(trained),
                   measured=True), len(problems)


def make_plan(cfg: RunConfig, assumed_prompt_tokens: int = 256) -> Plan:
    shape, folder = model_shape(cfg.model.base)
    lengths, train_size = prompt_lengths(cfg, folder, assumed_prompt_tokens)
    if train_size is not None and train_size < cfg.data.train_questions:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_questions=train_size))
    plan = Plan(cfg, shape, lengths)
    count_work(plan)
    return plan


# --- the table ----------------------------------------------------------------------------------

def _n(x: int) -> str:
    return f"{x:,}" if x else "-"


def format_plan(plan: Plan, device: str, runtime: int, generation_tps: float = 0.0, training_tps: float = 0.0) -> str:
    cfg, shape, lengths = plan.cfg, plan.shape, plan.lengths
    memory = stage_memory(plan, device, runtime)
    source = "measured on the first training prompts" if lengths.measured else "assumed: --prompt-tokens"
    lines = [f"imm plan: {cfg.name}, {len(cfg.arms)} arms x {cfg.iterations} iterations, model {cfg.model.base} "
             f"({shape.parameters / 1e6:,.1f}M parameters, {shape.blocks} blocks), {device}",
             f"prompt tokens: mean {lengths.mean_prompt}, longest {lengths.max_prompt}; training prompts: mean "
             f"{lengths.mean_train_prompt}, longest {lengths.max_train_prompt} ({source}); "
             f"{cfg.data.train_questions:,} training questions x {cfg.sampling.k} samples",
             "",
             "| stage | runs | prompts | samples | generated tokens <= | train sequences <= | train tokens <= "
             "| steps <= | merges | peak memory MiB | time |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    total = Work()
    for name in STAGES:
        w, mem = plan.work[name], memory.get(name)
        total.add(**{k: getattr(w, k) for k in vars(w)})
        seconds = stage_seconds(w, generation_tps, training_tps)
        lines.append(_row(name, w, f"{mem.total / MIB:,.0f}" if mem else "-", seconds))
    peak = max(m.total for m in memory.values())
    lines.append(_row("**total**", total, f"{peak / MIB:,.0f}", stage_seconds(total, generation_tps, training_tps)))
    lines += ["", "memory by part (MiB):"] + [f"  {name:<9} {m.describe()}" for name, m in memory.items()]
    disk = disk_bytes(plan)
    lines += ["", f"disk: {plan.work['finetune'].runs} F_t + {plan.work['merge'].runs} theta_t checkpoints x "
                  f"{checkpoint_bytes(plan) / GIB:,.2f} GiB = {disk / GIB:,.2f} GiB"]
    if not (generation_tps and training_tps):
        lines.append("time: pass --tokens-per-second (generation) and --train-tokens-per-second (training)")
    return "\n".join(lines)


def _row(name: str, w: Work, memory: str, seconds: float | None) -> str:
    counts = (w.prompts, w.samples, w.generated_tokens, w.train_sequences, w.train_tokens, w.steps, w.merges)
    return f"| {name} | {w.runs} | " + " | ".join(_n(c) for c in counts) + f" | {memory} | {_time(seconds)} |"


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="a shipped config (default, paper-gsm8k, ...) or a YAML path")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, as imm run takes them")
    parser.add_argument("--tokens-per-second", type=float, default=0.0, metavar="N",
                        help="generated tokens per second of this machine: the generation stages' time")
    parser.add_argument("--train-tokens-per-second", type=float, default=0.0, metavar="N",
                        help="training tokens per second of this machine: the fine-tunes' time")
    parser.add_argument("--prompt-tokens", type=int, default=256, metavar="N",
                        help="prompt length to assume where the data are on the hub (default 256)")


def main(args: argparse.Namespace) -> int:
    from imm.models import pick_device

    for flag in ("tokens_per_second", "train_tokens_per_second"):
        if getattr(args, flag) < 0:
            raise UserError(f"--{flag.replace('_', '-')} must be 0 or more, got {getattr(args, flag)}")
    if args.prompt_tokens < 1:
        raise UserError(f"--prompt-tokens must be at least 1, got {args.prompt_tokens}")
    from imm.preflight import load_config

    cfg = load_config(args.config, tuple(args.overrides))
    plan = make_plan(cfg, args.prompt_tokens)
    device = pick_device(cfg.model.device)
    runtime = runtime_bytes() if device == "cpu" else 0
    print(format_plan(plan, device, runtime, args.tokens_per_second, args.train_tokens_per_second))
    return 0
