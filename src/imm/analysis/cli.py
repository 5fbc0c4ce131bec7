"""`imm analyze`: where the updates landed and which layers do the reasoning (docs/method.md §3).

    imm analyze RUN_DIR                               every arm and iteration of a run (skips done ones)
    imm analyze --base A --model B --out DIR          any two compatible checkpoints (DIR new, or --overwrite)
    options: --probe TASK --probe-size N --max-new-tokens N --importance ablation,gradient|none --device cpu|cuda|auto
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imm.analysis.importance import MEASURES, check_kinds
from imm.config import AnalysisConfig, EvalConfig, ModelConfig, add_config_flag
from imm.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", type=Path, help="a run folder written by `imm run`")
    parser.add_argument("--base", help="θ0: a checkpoint folder or 'builtin' (run mode: overrides config.yaml)")
    parser.add_argument("--model", type=Path, help="the checkpoint to compare with --base")
    parser.add_argument("--out", type=Path, help="output folder for --base/--model (new, empty, or an earlier analysis)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out when an earlier `imm analyze` wrote it")
    parser.add_argument("--arm", help="run mode: only this arm")
    # Run mode takes these from the run's config.yaml unless given here; the defaults are `imm run`'s.
    add_config_flag(parser, "--probe", AnalysisConfig, "probe_task", "task whose verified solutions probe importance",
                    default=None)
    add_config_flag(parser, "--probe-size", AnalysisConfig, "probe_size", "probe problems", default=None)
    parser.add_argument("--importance", help=f"comma-separated kinds: {', '.join(MEASURES)} (default "
                        f"{','.join(AnalysisConfig.importance)}); 'none' for update tables only")
    add_config_flag(parser, "--max-new-tokens", EvalConfig, "max_new_tokens", "greedy tokens per probe answer",
                    default=None)
    add_config_flag(parser, "--device", ModelConfig, "device", "auto, cpu or cuda", default=None)


DEFAULTS = {"probe_task": AnalysisConfig.probe_task, "probe_size": AnalysisConfig.probe_size,
            "importance": AnalysisConfig.importance, "max_new_tokens": EvalConfig.max_new_tokens,
            "device": ModelConfig.device}


def _kinds(text: str) -> tuple[str, ...]:
    kinds = () if text.strip() == "none" else tuple(k.strip() for k in text.split(",") if k.strip())
    check_kinds(kinds)
    return kinds


def _given(args: argparse.Namespace) -> dict:
    """The settings given on the command line (None = not given)."""
    given = {"probe_task": args.probe, "probe_size": args.probe_size, "device": args.device, "base": args.base,
             "max_new_tokens": args.max_new_tokens,
             "importance": None if args.importance is None else _kinds(args.importance)}
    return {k: v for k, v in given.items() if v is not None}


def main(args: argparse.Namespace) -> int:
    given = _given(args)
    if args.run_dir is not None:
        if args.model or args.out:
            raise UserError("give either RUN_DIR or --base/--model/--out, not both")
        return _run_mode(args, given)
    if not (args.base and args.model and args.out):
        raise UserError("pass RUN_DIR, or all of --base A --model B --out DIR")
    from imm.analysis.run_folder import analyze_pair
    from imm.analysis.tables import format_figures

    s = {**DEFAULTS, **given}
    found = analyze_pair(s["base"], args.model, args.out, probe_task=s["probe_task"], probe_size=s["probe_size"],
                         importance=s["importance"], max_new_tokens=s["max_new_tokens"], device=s["device"],
                         overwrite=args.overwrite)
    print(format_figures(found) or "no importance measured: layers.csv only")
    print(f"wrote {args.out}")
    return 0


def _run_mode(args: argparse.Namespace, given: dict) -> int:
    import json

    from imm.analysis.run_folder import analyze_iteration, run_iterations, run_settings
    from imm.analysis.superficiality import Superficiality
    from imm.analysis.tables import SUPERFICIALITY_JSON, format_figures
    from imm.layout import RunLayout

    s = {**run_settings(args.run_dir), **given}
    check_kinds(s["importance"])
    todo = [(arm, t) for arm, t in run_iterations(args.run_dir) if args.arm in (None, arm)]
    if not todo:
        raise UserError(f"{args.run_dir} has no trained iterations{' for arm ' + args.arm if args.arm else ''} yet")
    for arm, t in todo:
        analyze_iteration(args.run_dir, arm, t, base=s["base"], probe_task=s["probe_task"], probe_size=s["probe_size"],
                          importance=s["importance"], max_new_tokens=s["max_new_tokens"], device=s["device"],
                          prompt=s["prompt"], max_length=s["max_length"])
        saved = json.loads((RunLayout(args.run_dir).analysis(arm, t) / SUPERFICIALITY_JSON).read_text())
        found = [Superficiality(**{**f, "critical": tuple(f["critical"])}) for f in saved["figures"]]
        print(format_figures(found, label=f"{arm:<14} iter {t}  ") or f"{arm} iter {t}: layers.csv only")
    return 0
