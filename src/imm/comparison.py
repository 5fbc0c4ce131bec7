"""`imm compare`: merge-back operators side by side inside the loop, over seeds, in one report.

    imm compare [--config NAME|PATH] [--operators NAME,NAME,...] [KEY=VALUE ...] [--restart]

It is `imm run` of a transformed config (`comparison_config`: the arms and seeds below), plus the operators
table printed at the end. Each seed gets one run folder, <out_dir>/<name>-compare-seed<s>. It holds the `self_improve` arm, the paper's
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

from imm.config import ImportanceKind, MergeConfig, RunConfig, per_seed, seeds_report_dir
from imm.loop import run_experiment
from imm.preflight import check, load_config
from imm.errors import UserError
from imm.report.cli import INDEX, TABLES

# The operators compared by default. λ = 0.5 and density 0.8 where an operator reads them (as the paper's IMM);
# LiNeS's α, β give λ(ℓ) from 0.25 at the input to 0.75 at the output (mean 0.5); ExPO with DARE's α and DARE
# density (1 − sparsity 0.5) as FusionBench ships them.
OPERATORS: dict[str, MergeConfig] = {  # in the order they run
    "layerwise_protect": MergeConfig(method="imm_layerwise", weight=0.5, density=0.8,
                                     parameters={"importance": ImportanceKind.INFLUENCE.value, "direction": "protect", "strength": 0.5}),
    "layerwise_release": MergeConfig(method="imm_layerwise", weight=0.5, density=0.8,
                                     parameters={"importance": ImportanceKind.INFLUENCE.value, "direction": "release", "strength": 0.5}),
    "lines": MergeConfig(method="lines", parameters={"alpha": 0.25, "beta": 0.5}),
    "model_stock": MergeConfig(method="model_stock"),
    "wise_ft": MergeConfig(method="wise_ft", weight=0.5),
    "expo_dare": MergeConfig(method="expo_dare", density=0.5, parameters={"alpha": 0.1}),
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
    influence = ImportanceKind.INFLUENCE  # what the layer-wise operators read
    importance = cfg.analysis.importance + (() if influence in cfg.analysis.importance else (influence,))
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


def operators_table(cfg: RunConfig) -> str:
    """The operators table of the comparison's runs, as Markdown (results.md holds it with the rest)."""
    from imm.report.operators import operators_section
    from imm.report.render import md_section
    from imm.report.runs import load_runs

    section = operators_section(load_runs([c.run_dir for c in per_seed(cfg)]))
    return md_section(section) if section else ""


def main(args: argparse.Namespace) -> int:
    """`imm run` of the comparison's config: the same runs, resume and seeds' report, and the operators table."""
    cfg = comparison_config(load_config(args.config, tuple(args.overrides)), args.operators)
    run_experiment(cfg, args.restart)
    report_dir = seeds_report_dir(cfg)
    print(operators_table(cfg))
    print(f"comparison: {report_dir / INDEX}; tables: {report_dir / TABLES}")
    return 0
