"""`imm analyze`: where the updates landed and which layers do the reasoning (METHOD.md §3).

    imm analyze RUN_DIR                               every arm and iteration of a run (skips done ones)
    imm analyze --base A --model B --out DIR          any two compatible checkpoints
    options: --probe TASK --probe-size N --max-new-tokens N --importance ablation,gradient|none --device cpu|cuda|auto
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imm.analysis.importance import KINDS, check_kinds
from imm.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", nargs="?", type=Path, help="a run folder written by `imm run`")
    parser.add_argument("--base", help="θ0: a checkpoint folder or 'builtin' (run mode: overrides config.yaml)")
    parser.add_argument("--model", type=Path, help="the checkpoint to compare with --base")
    parser.add_argument("--out", type=Path, help="output folder for --base/--model")
    parser.add_argument("--arm", help="run mode: only this arm")
    parser.add_argument("--probe", default="arith", help="task whose verified solutions probe importance (default arith)")
    parser.add_argument("--probe-size", type=int, default=64, help="probe problems (default 64)")
    parser.add_argument("--importance", default=",".join(KINDS),
                        help="comma-separated kinds: ablation, gradient; 'none' for update tables only")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="greedy tokens per probe answer (default 256)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")


def _kinds(text: str) -> tuple[str, ...]:
    kinds = () if text.strip() == "none" else tuple(k.strip() for k in text.split(",") if k.strip())
    check_kinds(kinds)
    return kinds


def main(args: argparse.Namespace) -> int:
    kinds = _kinds(args.importance)
    if args.run_dir is not None:
        if args.model or args.out:
            raise UserError("give either RUN_DIR or --base/--model/--out, not both")
        return _run_mode(args, kinds)
    if not (args.base and args.model and args.out):
        raise UserError("pass RUN_DIR, or all of --base A --model B --out DIR")
    from imm.analysis.run_folder import analyze_pair
    from imm.analysis.tables import format_figures

    found = analyze_pair(args.base, args.model, args.out, probe_task=args.probe, probe_size=args.probe_size,
                         importance=kinds, max_new_tokens=args.max_new_tokens, device=args.device)
    print(format_figures(found) or "no importance measured: layers.csv only")
    print(f"wrote {args.out}")
    return 0


def _run_mode(args: argparse.Namespace, kinds: tuple[str, ...]) -> int:
    import json

    from imm.analysis.run_folder import analyze_iteration, run_base, run_iterations
    from imm.analysis.superficiality import Superficiality
    from imm.analysis.tables import SUPERFICIALITY_JSON, format_figures
    from imm.layout import iter_dir

    base = args.base or run_base(args.run_dir)
    todo = [(arm, t) for arm, t in run_iterations(args.run_dir) if args.arm in (None, arm)]
    if not todo:
        raise UserError(f"{args.run_dir} has no trained iterations{' for arm ' + args.arm if args.arm else ''} yet")
    for arm, t in todo:
        analyze_iteration(args.run_dir, arm, t, base=base, probe_task=args.probe, probe_size=args.probe_size,
                          importance=kinds, max_new_tokens=args.max_new_tokens, device=args.device)
        saved = json.loads((iter_dir(args.run_dir, arm, t) / "analysis" / SUPERFICIALITY_JSON).read_text())
        found = [Superficiality(**{**f, "critical": tuple(f["critical"])}) for f in saved["figures"]]
        print(format_figures(found, label=f"{arm:<14} iter {t}  ") or f"{arm} iter {t}: layers.csv only")
    return 0
