"""`imm eval`: evaluate a checkpoint on reasoning tasks, lm-evaluation-harness style.

    imm eval --model builtin --task arith arith_long --limit 100 --out runs/eval-base
    imm eval --model DIR --task gsm8k=../shared/data/gsm8k svamp=../shared/data/svamp \\
             --samples 8 --temperature 0.8 --out runs/eval-dir

Writes the folder --out (new, empty, or an earlier `imm eval` output replaced with --overwrite) whole:
`samples_<task>.jsonl` (prompt, completion, extracted, gold, correct per completion) and
`results.json` ({"results": {task: {metric: value, "n": questions}}, "config": {...}}).
Every task spec, data file and the output folder are checked before the model is loaded.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from imm.config import EvalConfig, ModelConfig, SampleConfig, add_config_flag
from imm.prompts import PromptConfig, Prompter, check_prompt, prompter
from imm.engines import check_backend
from imm.engines.vllm import check_vllm
from imm.errors import UserError
from imm.outputs import atomic_write_json, atomic_write_jsonl, check_output_dir, output_dir
from imm.tasks.registry import TASKS, get_task

EVAL = "eval"  # the kind of output `imm eval` writes (imm.outputs)
VLLM_FLAGS = {"vllm_python": "with --backend vllm: the Python of vLLM's environment",
              "vllm_tensor_parallel": "with --backend vllm: GPUs per vLLM engine",
              "vllm_data_parallel": "with --backend vllm: vLLM engines splitting the prompts",
              "vllm_gpu_memory": "with --backend vllm: share of each GPU's memory vLLM takes",
              "vllm_max_model_len": "with --backend vllm: prompt + answer tokens; 0 = the checkpoint's",
              "vllm_executor": "with --backend vllm: mp (this node) or ray (a Ray cluster)"}


def _task_list() -> str:
    lines = []
    for name, factory in TASKS.items():
        fmt = getattr(factory, "data_format", "") or "built-in world family (no PATH)"
        lines.append(f"  {name:<18} {fmt}")
    return "tasks (NAME or NAME=PATH; without PATH real sets load their Hugging Face id):\n" + "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _task_list()
    parser.add_argument("--model", required=True, help="checkpoint folder, hub id, or 'builtin'")
    parser.add_argument("--task", required=True, nargs="+", action="extend", metavar="NAME[=PATH]",
                        help="tasks to evaluate (repeatable)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (new, empty, or an earlier eval)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out when an earlier `imm eval` wrote it")
    parser.add_argument("--split", default="test", help="split of each task (default: test)")
    parser.add_argument("--limit", type=int, default=None, help="first N questions of each task")
    parser.add_argument("--samples", type=int, default=0, metavar="K",
                        help="also draw K samples per question: pass@K, maj@K, diversity (default: 0)")
    add_config_flag(parser, "--temperature", EvalConfig, "diversity_temperature", "sampling temperature for --samples")
    add_config_flag(parser, "--top-p", SampleConfig, "top_p", "nucleus sampling for --samples")
    add_config_flag(parser, "--shots", PromptConfig, "shots", "worked examples from the task's train split")
    add_config_flag(parser, "--chat", PromptConfig, "chat", "the tokenizer's chat template: auto, on or off")
    add_config_flag(parser, "--max-new-tokens", EvalConfig, "max_new_tokens", "tokens generated per answer")
    add_config_flag(parser, "--batch-size", EvalConfig, "batch_size", "sequences per generation batch")
    add_config_flag(parser, "--backend", SampleConfig, "backend", "generation engine: hf or vllm")
    for name, text in VLLM_FLAGS.items():
        add_config_flag(parser, "--" + name.replace("_", "-"), SampleConfig, name, text)
    parser.add_argument("--seed", type=int, default=0)
    add_config_flag(parser, "--device", ModelConfig, "device", "auto, cpu, cuda, cuda:1 ...")
    add_config_flag(parser, "--dtype", ModelConfig, "dtype", "auto, float32, bfloat16, float16")
    parser.add_argument("--allow-pickle", action="store_true", help="also load pickled .bin weights (they can run code)")
    parser.add_argument("--trust-remote-code", action="store_true", help="run the Python code the checkpoint ships")


def _check_options(args: argparse.Namespace) -> None:
    for name in ("limit", "max_new_tokens", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    check_backend(args.backend)
    check_vllm(_sampling(args), start=args.backend == "vllm")
    if args.samples < 0 or args.shots < 0:
        raise UserError("--samples and --shots must be 0 or more")
    if args.samples and not (args.temperature >= 0 and 0 < args.top_p <= 1):
        raise UserError("--temperature must be >= 0 and --top-p in (0, 1]")
    check_output_dir(args.out, EVAL, overwrite=args.overwrite, inputs=[args.model])


def _load_tasks(args: argparse.Namespace) -> list[tuple[object, list, Prompter]]:
    """(task, problems, prompter) per task, all read now: a bad file fails before the model loads.
    Worked examples (--shots) come from the train split, never from the evaluated set (imm.prompts)."""
    loaded, names = [], set()
    prompt = PromptConfig(shots=args.shots, chat=args.chat)
    check_prompt(prompt)
    for spec in args.task:
        task = get_task(spec)
        if task.name in names:
            raise UserError(f"task {task.name!r} is given twice; give each task once")
        names.add(task.name)
        problems = task.problems(args.split)[: args.limit]
        loaded.append((task, problems, prompter(task, prompt, asked=problems, fallback=task)))  # never the tested file
    return loaded


def main(args: argparse.Namespace) -> int:
    _check_options(args)
    loaded = _load_tasks(args)
    from imm.engines import open_engine
    from imm.evaluation.harness import Asked, evaluate_many
    from imm.models import LoadPolicy, load_policy

    sampling = _sampling(args)
    model = ModelConfig(device=args.device, dtype=args.dtype)
    results = {}
    with load_policy(LoadPolicy(args.allow_pickle, args.trust_remote_code)), \
            open_engine(args.model, sampling, model, batch_size=args.batch_size) as engine, \
            output_dir(args.out, EVAL, overwrite=args.overwrite, inputs=[args.model]) as tmp:
        asked = [Asked(task, problems, dataclasses.replace(prompts, tokenizer=engine.tokenizer), args.samples,
                       args.temperature, args.top_p) for task, problems, prompts in loaded]
        evaluated = evaluate_many(engine, asked, max_new_tokens=args.max_new_tokens, seed=args.seed)
        for (task, _, _), result in zip(loaded, evaluated):
            atomic_write_jsonl(tmp / f"samples_{task.name}.jsonl", result.rows)
            results[task.name] = {**result.metrics, "n": result.n}
            print(_line(task.name, results[task.name]), flush=True)
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
        atomic_write_json(tmp / "results.json", {"results": results, "config": config})
    print(f"wrote {args.out / 'results.json'}")
    return 0


def _sampling(args: argparse.Namespace) -> SampleConfig:
    """The engine's settings from the flags (imm run's sampling.backend and sampling.vllm_*)."""
    return SampleConfig(backend=args.backend, **{name: getattr(args, name) for name in VLLM_FLAGS})


def _line(task: str, figures: dict) -> str:
    shown = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
    return f"{task}: {shown}"
