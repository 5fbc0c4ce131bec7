"""`imm compare`: merge-back operators side by side inside the loop, over seeds, in one report.

    imm compare [--config NAME|PATH] [--operators NAME,NAME,...] [KEY=VALUE ...] [--restart]

Each seed gets one run folder, <out_dir>/<name>-compare-seed<s>. It holds the `self_improve` arm, the paper's
`imm` arm (the run's `merge:` block) and one merging arm per operator (`merge_arms`, each its own merge
block). θ0 is evaluated once. Iteration 1's samples, training set, fine-tune and its evaluation are computed
once and linked, since every arm samples from θ0 then. Each merged θ_t writes its own arm's next data. The
seeds are reported together in <out_dir>/<name>-compare-seeds/ (index.html and results.md), with the operators
table first: ID, mean OOD, forgetting per problem, collapse and superficiality figures, with intervals. θ0's
block influence (imm.analysis.importance) joins the run's importance measures: the layer-wise operators read it.
Running the same command again resumes every run where it stopped. The operators are OPERATORS below, or the
config's own `merge_arms` where it names some; `--operators` picks among them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from imm.config import MergeConfig, RunConfig, per_seed, seeds_report_dir
from imm.preflight import check, load_config
from imm.errors import UserError

KIND = "report"  # the comparison's report folder is a report (imm.outputs)
MARKDOWN = "results.md"

# The operators compared by default. λ = 0.5 and density 0.8 where an operator reads them (as the paper's IMM);
# LiNeS's α, β give λ(ℓ) from 0.25 at the input to 0.75 at the output (mean 0.5); ExPO's α as FusionBench ships it.
OPERATORS: dict[str, MergeConfig] = {  # in the order they run
    "layerwise_protect": MergeConfig(method="imm_layerwise", weight=0.5, density=0.8,
                                     parameters={"importance": "influence", "direction": "protect", "strength": 0.5}),
    "layerwise_release": MergeConfig(method="imm_layerwise", weight=0.5, density=0.8,
                                     parameters={"importance": "influence", "direction": "release", "strength": 0.5}),
    "lines": MergeConfig(method="lines", parameters={"alpha": 0.25, "beta": 0.5}),
    "model_stock": MergeConfig(method="model_stock"),
    "wise_ft": MergeConfig(method="wise_ft", weight=0.5),
    "expo_dare": MergeConfig(method="expo_dare", density=0.8, parameters={"alpha": 0.1}),
}
BASELINES = ("self_improve", "imm")


def comparison_config(cfg: RunConfig, operators: tuple[str, ...] = ()) -> RunConfig:
    """The experiment with the baselines and one merging arm per operator, a seed list, and its own name."""
    available = {**OPERATORS, **cfg.merge_arms}
    chosen = operators or tuple(cfg.merge_arms or OPERATORS)
    for name in chosen:
        if name not in available:
            raise UserError(f"unknown operator {name!r}; choose among {', '.join(available)}")
    if len(set(chosen)) != len(chosen):
        raise UserError(f"--operators lists an operator twice: {', '.join(chosen)}; list each once")
    importance = cfg.analysis.importance + (() if "influence" in cfg.analysis.importance else ("influence",))
    compared = dataclasses.replace(cfg, name=f"{cfg.name}-compare", arms=(*BASELINES, *chosen),
                                   merge_arms={name: available[name] for name in chosen}, seeds=cfg.seeds or (cfg.seed,),
                                   analysis=dataclasses.replace(cfg.analysis, importance=importance))
    check(compared)
    return compared


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="a shipped config (default, gentle, smoke) or a YAML path")
    parser.add_argument("--operators", type=lambda text: tuple(p.strip() for p in text.split(",") if p.strip()),
                        default=(), metavar="NAME,...", help=f"operators to compare (default: {', '.join(OPERATORS)})")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. seeds=[0,1,2]")
    parser.add_argument("--restart", action="store_true", help="delete the comparison's run folders and start over")


def write_report(run_dirs: list[Path], out: Path) -> str:
    """The seeds' report with the operators table, index.html and results.md written whole; returns the table."""
    from imm.outputs import output_dir
    from imm.report.build import build
    from imm.report.operators import operators_section
    from imm.report.render import md_section, to_html, to_markdown
    from imm.report.runs import load_runs

    runs = load_runs(run_dirs)
    report = build(runs)
    page, tables = to_html(report), to_markdown(report)
    with output_dir(out, KIND, overwrite=True, inputs=run_dirs) as tmp:
        for figure in (f for s in report.sections for f in s.figures):
            (tmp / figure.name).write_bytes(figure.png)
        (tmp / "index.html").write_text(page, encoding="utf-8")
        (tmp / MARKDOWN).write_text(tables, encoding="utf-8")
    section = operators_section(runs)
    return md_section(section) if section else ""


def main(args: argparse.Namespace) -> int:
    import torch

    from imm.loop import run_loop
    from imm.outputs import check_output_dir

    cfg = comparison_config(load_config(args.config, tuple(args.overrides)), args.operators)
    report_dir = seeds_report_dir(cfg)
    runs = per_seed(cfg)
    check_output_dir(report_dir, KIND, overwrite=True, inputs=[c.run_dir for c in runs])  # before any work
    if cfg.model.threads:
        torch.set_num_threads(cfg.model.threads)
    run_dirs = [run_loop(c, args.restart) for c in runs]
    print(write_report(run_dirs, report_dir))
    print(f"comparison: {report_dir / 'index.html'}; tables: {report_dir / MARKDOWN}")
    return 0
