"""Assemble a report from runs: the summary in words, then accuracy, differences, forgetting, collapse,
layers, training and settings, each with its tables and figures."""

from __future__ import annotations

import platform
from importlib import metadata

from imm.analysis.importance import MEASURES, axis_label
from imm.layout import FINETUNED, MERGED
from imm.report import compare, plots
from imm.report.compare import OOD_MEAN, STRICT, Difference
from imm.report.document import (MODEL_NAMES, Cell, Figure, Report, Section, Table, accuracy_table, collapse_columns,
                                 collapse_table, differences_table, diversity_task, forgetting_table, fmt, layer_table)
from imm.report.operators import operators_section
from imm.report.runs import Run, theta_model
from imm.report.stats import describe_interval


def build(runs: list[Run], figures: bool = True) -> Report:
    """The whole report; `figures=False` leaves the images out (Markdown needs only the tables)."""
    sections = [summary_section(runs), operators_section(runs), accuracy_section(runs, figures), differences_section(runs),
                forgetting_section(runs), collapse_section(runs, figures), layers_section(runs, figures),
                training_section(runs, figures), settings_section(runs)]
    title = f"imm report: {runs[0].cfg.name if len(runs) == 1 else runs[0].root.parent.name + ' ×' + str(len(runs))}"
    return Report(title, [str(r.root) for r in runs], [s for s in sections if s is not None])


# --- words ---------------------------------------------------------------------------------------

def claim(d: Difference, subject: str) -> str:
    """One difference in words, claiming a direction only where its interval excludes 0 (with several runs, the
    seed t-interval, which counts the training seed); otherwise saying that the data cannot tell, and how many
    seeds a claim would need."""
    lo, hi = d.interval
    size = f"{100 * d.estimate:+.1f} pts (95% interval {describe_interval(lo, hi)}"
    size += f"; per run {', '.join(f'{100 * v:+.1f}' for v in d.per_run)})" if len(d.per_run) > 1 else ")"
    if d.claims:
        return f"{subject} {'higher' if lo > 0 else 'lower'}: {size}"
    n = d.seeds_for_a_claim
    needs = (f"a claim needs ≥ {n} seeds at this spread" if n else
             "more seeds cannot make a claim here: the test problems' share alone keeps zero inside the interval "
             "(more test problems could narrow it)" if d.problems_hold_zero else
             "no number of seeds up to 100 would make a claim here")
    if len(d.per_run) == 1:
        needs = f"a claim about training needs ≥ {n} seeds even if seeds did not differ" if n else needs
    return f"{subject}: no clear difference, {size}; {needs}"


def summary_section(runs: list[Run]) -> Section:
    section = Section("Summary", "summary")
    id_task = runs[0].tasks[0][0]
    for arm in compare.arms(runs):
        t = compare.last(runs, arm)
        found = {d.task: d for d in compare.changes_from_theta0(runs, arm, t)}
        parts = [claim(found[name], f"{name} {'(ID)' if name == id_task else ''}".strip())
                 for name in headline_tasks(runs) if name in found]
        section.bullets.append(f"**{arm}** after {t} iteration{'s' * (t > 1)}, against θ0: " + "; ".join(parts) + ".")
    for plain, merged in compare.merge_pairs(runs):
        t = min(compare.last(runs, plain), compare.last(runs, merged))
        found = {d.task: d for d in compare.arm_differences(runs) if d.a == (plain, t) and d.b == (merged, t)}
        parts = [claim(found[name], name) for name in headline_tasks(runs) if name in found]
        section.bullets.append(f"**{merged} vs {plain}** at t = {t}: " + "; ".join(parts) + ".")
    section.bullets += collapse_words(runs) + layer_words(runs)
    section.paragraphs.append(inference_words(runs))
    return section


def inference_words(runs: list[Run]) -> str:
    """How the page's intervals were made, and what they cover."""
    head = (f"{len(runs)} run{'s' * (len(runs) > 1)} (seeds {', '.join(str(r.cfg.seed) for r in runs)}). Differences "
            "are paired over the same test problems; a direction is claimed only where the 95% interval excludes zero.")
    if len(runs) == 1:
        return (head + " With one run, every interval and p-value is over the test problems only (a bootstrap and "
                "McNemar's exact test), conditional on this one trained model: the page makes no claim about "
                "training randomness, which needs two seeds or more.")
    return (head + f" Intervals: {compare.SEED_METHOD}; p: the same t-test; McNemar's exact p of each run beside it. "
            "benchmarks/coverage.py measures this rule's coverage and false-claim rate (docs/benchmarks.md).")


def headline_tasks(runs: list[Run]) -> list[str]:
    """The in-domain task and the out-of-domain mean (the one OOD task where there is only one)."""
    groups = [label for label, _ in compare.task_groups(runs)]
    ood = [t for t, d in runs[0].tasks if d == "ood"]
    return [runs[0].tasks[0][0], OOD_MEAN if OOD_MEAN in groups else ood[0]] if ood else [runs[0].tasks[0][0]]


def collapse_words(runs: list[Run]) -> list[str]:
    task = diversity_task(runs)
    base = compare.value(runs, runs[0].arms[0], 0, task, "unique-answers")
    if base is None:
        return []
    ends = [f"{arm} {fmt(compare.value(runs, arm, t, task, 'unique-answers'), 1.0, 2)}"
            for arm in compare.arms(runs) if (t := compare.last(runs, arm))]
    return [f"Unique final answers per in-domain question (of {runs[0].cfg.eval.diversity_k} samples): θ0 "
            f"{fmt(base, 1.0, 2)}; at the last iteration " + ", ".join(ends) + " (no interval: min–max over runs)."]


def layer_words(runs: list[Run]) -> list[str]:
    lines = []
    for f in compare.layer_figures(runs):
        if f.model != "finetuned" or f.t != compare.last(runs, f.arm) or f.arm != compare.arms(runs)[0]:
            continue
        significant = sum(1 for p in f.p if p is not None and p < 0.05)
        lines.append(f"Superficiality ({f.arm}, F_{f.t}, importance by {f.kind}): Spearman ρ {fmt(f.rho, 1.0, 2)}; "
                     f"permutation p < 0.05 in {significant} of {len(f.p)} runs"
                     + ("" if significant == len(f.p) else ", so this alone does not show that updates avoid the critical blocks")
                     + ".")
    return lines


# --- sections ------------------------------------------------------------------------------------

def series(runs: list[Run], arm: str, task: str, metric: str, scale: float) -> plots.Series | None:
    steps = [0, *compare.iterations(runs, arm)]
    found = [(t, s) for t in steps if (s := compare.value(runs, arm, t, task, metric))]
    if len(found) < 2:
        return None
    return plots.Series(arm, tuple(t for t, _ in found), *(tuple(scale * getattr(s, a) for _, s in found)
                                                           for a in ("mean", "low", "high")))


def references(runs: list[Run], task: str, metric: str, scale: float) -> dict[str, float]:
    found = {"θ0": compare.value(runs, runs[0].arms[0], 0, task, metric)}
    if compare.has_teacher(runs):
        found["teacher"] = compare.value(runs, runs[0].arms[0], 0, task, metric, "teacher")
    return {k: scale * v.mean for k, v in found.items() if v is not None}


def curves_figure(runs: list[Run], name: str, caption: str, panels: list[tuple[str, str, str, float, str]]) -> Figure:
    """panels: (title, task, metric, scale, y label)."""
    arms = compare.arms(runs)
    built = [plots.Panel(title, ylabel, tuple(s for a in arms if (s := series(runs, a, task, metric, scale))),
                         references(runs, task, metric, scale)) for title, task, metric, scale, ylabel in panels]
    return Figure(name, caption, plots.curves(built, arms))


def accuracy_section(runs: list[Run], figures: bool) -> Section:
    section = Section("Accuracy per iteration", "accuracy", tables=[accuracy_table(runs)])
    if figures:
        panels = [(f"{t} ({'in-domain' if d == 'id' else 'out-of-domain'})", t, STRICT, 100.0, "accuracy (%)")
                  for t, d in runs[0].tasks]
        section.figures.append(curves_figure(runs, "accuracy.png", "Greedy strict-match accuracy of each arm's θ_t; "
                                             "θ0 (and the teacher) as reference lines; shaded: min–max over runs", panels))
    return section


def differences_section(runs: list[Run]) -> Section:
    section = Section("Paired differences", "differences")
    section.paragraphs.append("B − A in accuracy points on the same problems. ‘B only / A only right’ counts the "
                              "discordant problems McNemar's exact test weighs.")
    for plain, merged in compare.merge_pairs(runs):
        found = [d for d in compare.arm_differences(runs) if d.a[0] == plain and d.b[0] == merged]
        for t in sorted({d.a[1] for d in found}):
            section.tables.append(differences_table(f"{merged} − {plain} at t = {t} (B = {merged}, A = {plain})",
                                                    [d for d in found if d.a[1] == t]))
    for arm in compare.arms(runs):
        t = compare.last(runs, arm)
        section.tables.append(differences_table(f"{arm} θ_{t} − θ0 (B = {arm}, A = θ0)",
                                                compare.changes_from_theta0(runs, arm, t)))
    return section


def forgetting_section(runs: list[Run]) -> Section:
    section = Section("Forgetting per problem", "forgetting", tables=[forgetting_table(runs)])
    for task, domain in runs[0].tasks:
        if domain == "ood":
            section.examples += [{"task": task, **e} for e in compare.examples(runs[0], task, compare.arms(runs))]
    if section.examples:
        section.paragraphs.append(f"Examples from {runs[0].root.name}: problems θ0 solved that "
                                  f"{compare.arms(runs)[0]} forgot by its last iteration, with every arm's answer.")
    return section


def collapse_section(runs: list[Run], figures: bool) -> Section | None:
    task = diversity_task(runs)
    if compare.value(runs, runs[0].arms[0], 0, task, "unique-answers") is None:
        return None
    section = Section("Collapse and diversity", "collapse", tables=[collapse_table(runs)])
    if figures:
        panels = [(header, task, metric, scale, header) for header, metric, scale, _ in collapse_columns(runs)]
        section.figures.append(curves_figure(runs, "collapse.png", f"Collapse figures on {task}; lower diversity = "
                                             "more collapse; shaded: min–max over runs", panels))
    return section


def layers_section(runs: list[Run], figures: bool) -> Section | None:
    found = compare.layer_figures(runs)
    if not found:
        return None
    section = Section("Layers: where the updates land", "layers", tables=[layer_table(found)])
    if figures:
        section.figures += [f for arm in compare.arms(runs) if (f := heatmap_figure(runs, arm))]
        if scatter := scatter_figure(runs):
            section.figures.append(scatter)
    return section


def heatmap_figure(runs: list[Run], arm: str) -> Figure | None:
    steps = compare.iterations(runs, arm)
    models = [FINETUNED] + ([MERGED] if runs[0].cfg.arm(arm).merges else [])
    maps, blocks = {}, []
    for model in models:
        per_t = [[compare.block_updates(run, arm, t, model) for run in runs] for t in steps]
        blocks = sorted(set.intersection(*(set(u) for row in per_t for u in row))) if per_t else []
        if not blocks:
            return None
        maps[MODEL_NAMES[model]] = [[100 * sum(u[b] for u in row) / len(row) for row in per_t] for b in blocks]
    kinds = runs[0].cfg.analysis.importance
    importance = {}
    for kind in kinds:
        values = [compare.importance(run, arm, steps[0], kind) for run in runs]
        if all(len(v) == len(blocks) for v in values):
            scale = 100.0 if MEASURES[kind].in_points else 1.0
            importance[kind] = [scale * sum(v[b] for v in values) / len(values) for b in blocks]
    png = plots.heatmaps(f"{arm}: relative update per decoder block (mean over runs)", maps, blocks, steps, importance)
    return Figure(f"layers_{arm}.png", f"{arm}: ‖θ_l − θ0_l‖ / ‖θ0_l‖ per block and iteration for "
                  + " and ".join(maps) + "; θ0's importance per block beside", png)


def scatter_figure(runs: list[Run]) -> Figure | None:
    run, points = runs[0], []
    for arm in compare.arms(runs):
        t = compare.last(runs, arm)
        model = theta_model(runs[0].cfg.arm(arm), t)
        for kind in run.cfg.analysis.importance:
            f = compare.layer_figure([run], arm, t, model, kind)
            updates, imp = compare.block_updates(run, arm, t, model, "delta_l2"), compare.importance(run, arm, t, kind)
            blocks = sorted(set(updates) & set(imp))
            if f is None or not blocks:
                continue
            note = f"ρ = {f.rho.mean:+.2f}, permutation p = {f.p[0]:.3f}" if f.p[0] is not None else "ρ undefined"
            points.append((f"{arm} θ_{t}, importance by {kind}", [imp[b] for b in blocks], [updates[b] for b in blocks],
                           blocks, note, "importance: " + axis_label(kind, "{} (fraction)")))
    if not points:
        return None
    return Figure("importance_vs_update.png", f"Importance of θ0 (x) against each arm's last update (y) per block, "
                  f"{run.root.name}; numbers mark the blocks",
                  plots.scatter(points))


def training_section(runs: list[Run], figures: bool) -> Section | None:
    run = runs[0]
    logs = {f"{arm} t={t}": log for arm in compare.arms(runs) for t in compare.iterations(runs, arm)
            if (log := run.training_log(arm, t))}
    data = data_table(runs)
    if not logs and data is None:
        return None
    section = Section("Training", "training", tables=[data] if data else [])
    if logs:
        rows = tuple((Cell(name), Cell(str(len(log))), Cell(f"{log[0]['loss']:.3f}"), Cell(f"{log[-1]['loss']:.3f}"),
                      Cell(f"{sum(r['tokens_per_s'] for r in log) / len(log):,.0f}")) for name, log in logs.items())
        section.tables.append(Table(
            f"Fine-tuning per iteration ({run.root.name})", ("arm, iteration", "steps", "first loss", "last loss",
                                                              "tokens/s (mean over steps)"), rows,
            "from each iteration's train_log.jsonl; arms that share F_1 show the same log"))
    if figures and logs:
        section.figures.append(Figure("training.png", "Loss and learning rate per optimizer step", plots.training(logs)))
    return section


def data_table(runs: list[Run]) -> Table | None:
    """|D_t| per arm, iteration and run, flagging an iteration where nothing was trained (D_t empty: F_t = init)."""
    rows = []
    for arm in compare.arms(runs):
        for t in compare.iterations(runs, arm):
            stats = [run.dataset_stats(arm, t) for run in runs]
            kept = [s.get("kept") for s in stats]
            empty = [run.cfg.seed for run, k in zip(runs, kept) if k == 0]
            flag = f"nothing trained (D_t empty, F_t = its init) in seed {', '.join(map(str, empty))}" if empty else ""
            rows.append((Cell(arm), Cell(str(t)), Cell(", ".join("-" if k is None else str(k) for k in kept)),
                         Cell(", ".join("-" if s.get("samples") is None else str(s["samples"]) for s in stats)),
                         Cell(flag)))
    if not rows:
        return None
    return Table("Training data D_t per arm and iteration", ("arm", "t", "examples in D_t (per run)",
                                                              "samples S_t (per run)", "note"), tuple(rows),
                 f"per run: seeds {', '.join(str(r.cfg.seed) for r in runs)}; from each iteration's dataset_stats")


def settings_section(runs: list[Run]) -> Section:
    cfg = runs[0].cfg
    merge = cfg.merge
    settings = [
        ("runs", ", ".join(f"{r.root} (seed {r.cfg.seed})" for r in runs)),
        ("model θ0", cfg.model.base + (f"; teacher {cfg.model.teacher}" if compare.has_teacher(runs) else "")),
        ("data", f"train on {cfg.data.train_task} ({cfg.data.train_questions} questions per iteration); "
                 f"ID {', '.join(cfg.data.id_tasks)}; OOD {', '.join(cfg.data.ood_tasks)}; {cfg.eval.limit} test problems per task"),
        ("arms, iterations", f"{', '.join(cfg.arms)}; T = {cfg.iterations}"),
        ("sampling", f"K = {cfg.sampling.k}, temperature {cfg.sampling.temperature}, top-p {cfg.sampling.top_p}, "
                     f"{cfg.sampling.max_new_tokens} new tokens; filter dedup={cfg.filter.dedup}, "
                     f"max per question {cfg.filter.max_per_question or 'none'}"),
        ("fine-tuning", f"from {cfg.finetune.init_from}, lr {cfg.finetune.learning_rate:g}, {cfg.finetune.epochs} epochs, "
                        f"batch {cfg.finetune.batch_size}×{cfg.finetune.grad_accum}, warm-up {cfg.finetune.warmup_ratio}"),
        ("merge", f"{merge.method}, λ = {merge.weight}, density {merge.density} (DARE drop p = {1 - merge.density:.2g})"),
        ("evaluation", f"greedy zero-shot; collapse on {cfg.eval.diversity_questions} questions × "
                       f"{cfg.eval.diversity_k} samples at temperature {cfg.eval.diversity_temperature}"),
        ("software (this report)", ", ".join(f"{p} {version(p)}" for p in ("imm", "torch", "transformers"))
         + f", Python {platform.python_version()}"),
    ]
    prompt = next(iter(runs[0].greedy(runs[0].arms[0], 0, runs[0].tasks[0][0]).values()), {}).get("prompt")
    if prompt:
        settings.append(("prompt (first ID test problem)", prompt))
    section = Section("Settings and time", "settings", tables=[
        Table("Run settings", ("setting", "value"), tuple((Cell(k), Cell(v)) for k, v in settings)),
        time_table(runs)])
    return section


def time_table(runs: list[Run]) -> Table:
    seconds = compare.stage_seconds(runs)
    who = list(dict.fromkeys(k[0] for k in seconds))
    stages = list(dict.fromkeys(k[1] for k in seconds))
    rows = [(Cell(stage), *[Cell(fmt(seconds.get((w, stage)), 1.0, 0)) for w in who]) for stage in stages]
    totals = [compare.Spread(tuple(sum(v) for v in zip(*(s.values for k, s in seconds.items() if k[0] == w))))
              for w in who]
    rows.append((Cell("total"), *[Cell(fmt(t, 1.0, 0)) for t in totals]))
    return Table("Wall time per stage (s), summed over iterations", ("stage", *who), tuple(rows),
                 "from timings.jsonl; a stage two arms share is timed where it ran; fine-tunes trained at once "
                 "(at_once) each count their own time")


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
