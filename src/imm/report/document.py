"""The report as data: sections of words, tables and figures, rendered to HTML or Markdown by `render`.

A table cell that shows one number of summary.csv carries that row's key (arm|iteration|model|task|
metric), so a reader, or a test, can check the page against the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from imm.layout import FINETUNED, GENERATOR, MERGED, TEACHER
from imm.report import compare, ead
from imm.report.compare import OOD_MEAN, STRICT, Difference, Spread
from imm.report.runs import Run, theta_model
from imm.report.stats import describe_interval


@dataclass(frozen=True)
class Cell:
    text: str
    key: str | None = None  # the summary.csv row this cell shows


@dataclass(frozen=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class Figure:
    name: str  # file name beside index.html
    caption: str
    png: bytes


@dataclass
class Section:
    title: str
    anchor: str
    paragraphs: list[str] = field(default_factory=list)
    bullets: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    examples: list[dict] = field(default_factory=list)


@dataclass
class Report:
    title: str
    runs: list[str]
    sections: list[Section]


MODEL_NAMES = {GENERATOR: "θ0", TEACHER: "teacher", FINETUNED: "F_t", MERGED: "θ_t (merged)"}


def fmt(s: Spread | None, scale: float = 100.0, digits: int = 1) -> str:
    if s is None:
        return "-"
    if len(s.values) == 1:
        return f"{scale * s.mean:.{digits}f}"
    return f"{scale * s.mean:.{digits}f} ({scale * s.low:.{digits}f}–{scale * s.high:.{digits}f})"


def key(runs: list[Run], arm: str, t: int, model: str, task: str, metric: str) -> str | None:
    if len(runs) != 1:
        return None
    return "|".join((compare._owner(runs[0], arm, model), str(t), model, task, metric))


def value_cell(runs: list[Run], arm: str, t: int, model: str, task: str, metric: str, scale: float = 100.0,
               digits: int = 1) -> Cell:
    return Cell(fmt(compare.value(runs, arm, t, task, metric, model), scale, digits),
                key(runs, arm, t, model, task, metric))


def model_rows(runs: list[Run]) -> list[tuple[str, str, int, str]]:
    """(label, arm, t, model): θ0, the teacher where there is one, then each arm's θ_t per iteration."""
    first = runs[0].arms[0]
    rows = [("θ0", first, 0, GENERATOR)]
    if compare.has_teacher(runs):
        rows.append(("teacher", first, 0, TEACHER))
    for arm in compare.arms(runs):
        rows += [(arm, arm, t, theta_model(runs[0].cfg.arm(arm), t)) for t in compare.iterations(runs, arm)]
    return rows


def accuracy_table(runs: list[Run], metric: str = STRICT) -> Table:
    tasks = runs[0].tasks
    ood = [t for t, d in tasks if d == "ood"]
    header = ("model", "t", *[f"{t} (ID)" if d == "id" else t for t, d in tasks], OOD_MEAN)
    rows = []
    for label, arm, t, model in model_rows(runs):
        means = [compare.value(runs, arm, t, task, metric, model) for task in ood]
        ood_mean = compare.spread([sum(v) / len(v) for v in zip(*(m.values for m in means))]) if all(means) and means else None
        cells = [value_cell(runs, arm, t, model, task, metric) for task, _ in tasks]
        rows.append((Cell(label if t == 0 else f"{arm} {MODEL_NAMES[model]}"), Cell(str(t)), *cells, Cell(fmt(ood_mean))))
    spread_note = f"; mean (min–max) over {len(runs)} runs" if len(runs) > 1 else ""
    return Table(f"Greedy {metric} accuracy (%)", header, tuple(rows),
                 f"each arm's θ_t: the merged model where the arm merges, else F_t{spread_note}")


COLLAPSE = (("pass@{k} (%)", "pass@{k}", 100.0, 1), ("unique answers", "unique-answers", 1.0, 2),
            ("distinct-2", "distinct-2", 1.0, 3), ("self-BLEU", "self-bleu", 1.0, 3),
            ("entropy (nats/token)", "entropy", 1.0, 4))


def collapse_columns(runs: list[Run]) -> list[tuple[str, str, float, int]]:
    """The collapse figures the runs' summaries hold (EAD is not among them: imm.report.ead computes it here)."""
    k, task = runs[0].cfg.eval.diversity_k, diversity_task(runs)
    held = {r.metric for run in runs for r in run.rows if r.task == task}
    return [(h.format(k=k), m.format(k=k), scale, digits) for h, m, scale, digits in COLLAPSE if m.format(k=k) in held]


def diversity_task(runs: list[Run]) -> str:
    return f"{runs[0].tasks[0][0]}@diversity"


def collapse_table(runs: list[Run]) -> Table:
    task, columns = diversity_task(runs), collapse_columns(runs)
    models = model_rows(runs)
    texts = [[ead.diversity_texts(run, arm, t, model) for run in runs] for _, arm, t, model in models]
    v = ead.vocabulary([groups for per_run in texts for groups in per_run])
    rows = []
    for (label, arm, t, model), per_run in zip(models, texts):
        cells = [value_cell(runs, arm, t, model, task, metric, scale, digits) for _, metric, scale, digits in columns]
        eads = compare.spread([ead.ead_1(groups, v) for groups in per_run if groups])
        rows.append((Cell(label if t == 0 else f"{arm} {MODEL_NAMES[model]}"), Cell(str(t)), *cells,
                     Cell(fmt(eads, 1.0, 3))))
    k, q = runs[0].cfg.eval.diversity_k, runs[0].cfg.eval.diversity_questions
    return Table(f"Collapse: {k} samples per question on {q} in-domain test questions",
                 ("model", "t", *[c[0] for c in columns], "EAD"), tuple(rows),
                 f"EAD: distinct words over the number N uniform draws from V = {v:,} words would give (Liu et al. "
                 "2022); V is the words of every model's samples on this page together, the same for every row")


def difference_row(d: Difference) -> tuple[Cell, ...]:
    lo, hi = d.interval
    several = len(d.per_run) > 1
    needed = ("-" if d.claims else f"≥ {n}" if (n := d.seeds_for_a_claim) else
              "none: too few problems" if d.problems_hold_zero else "more than 100")
    return (Cell(d.task), Cell(f"{100 * d.estimate:+.1f}"), Cell(describe_interval(lo, hi)), Cell(f"{d.p:.3g}"),
            Cell(", ".join(f"{100 * v:+.1f}" for v in d.per_run)), Cell(", ".join(f"{p:.3g}" for p in d.run_p)),
            Cell(f"{d.total.gained} / {d.total.lost}"), Cell(f"{d.agreeing}/{len(d.per_run)}" if several else "-"),
            Cell(needed))


DIFFERENCE_HEADER = ("task", "difference (pts)", "95% interval (pts)", "p", "per run (pts)", "McNemar p per run",
                     "B only / A only right (all runs)", "runs with that sign", "seeds a claim needs")


def differences_table(title: str, found: list[Difference]) -> Table:
    several = bool(found) and len(found[0].per_run) > 1
    test = "p: the seed t-test (df = seeds − 1)" if several else "p: McNemar's exact test"
    needed = ("seeds a claim needs: the smallest n with t(0.975, n − 1)·√(var(per-seed difference)/n + "
              "problems' share) < |difference|, i.e. if the spread stayed as observed" if several else
              "seeds a claim needs: the smallest n with t(0.975, n − 1)·√(problems' share) < |difference|, i.e. "
              "the fewest seeds that could claim at all, were the seeds not to differ")
    method = found[0].method if found else ""
    return Table(title, DIFFERENCE_HEADER, tuple(difference_row(d) for d in found),
                 f"paired over the same problems; interval: {method}; {test}; {needed}; '-' where the interval "
                 "already excludes zero; 'none: too few problems' where 1.96·√(problems' share) ≥ |difference|, "
                 "so that no number of seeds could claim and only more test problems could")


def forgetting_table(runs: list[Run]) -> Table:
    tasks = runs[0].tasks
    rows = []
    for arm in compare.arms(runs):
        for t in compare.iterations(runs, arm):
            cells = []
            for task, _ in tasks:
                parts = compare.forgetting(runs, arm, t, task)
                lost = compare.spread([p.lost / p.n for p in parts])
                gained = compare.spread([p.gained / p.n for p in parts])
                cells.append(Cell(f"{fmt(lost)} / {fmt(gained)}" if parts else "-"))
            rows.append((Cell(arm), Cell(str(t)), *cells))
    return Table("Forgetting per problem against θ0: forgotten / learned (% of problems)",
                 ("arm", "t", *[f"{t} (ID)" if d == "id" else t for t, d in tasks]), tuple(rows),
                 "forgotten: θ0 right and θ_t wrong on the same problem; learned: the reverse")


def layer_table(figures: list[compare.LayerFigure]) -> Table:
    rows = []
    for f in figures:
        ps = ", ".join("-" if p is None else f"{p:.3f}" for p in f.p)
        share = "-" if f.share is None else f"{fmt(f.share)} (uniform {100 * (f.uniform or 0):.1f})"
        rows.append((Cell(f.arm), Cell(str(f.t)), Cell(MODEL_NAMES[f.model]), Cell(f.kind),
                     Cell(fmt(f.rho, 1.0, 2)), Cell(ps), Cell(share)))
    return Table("Superficiality: Spearman ρ(importance of θ0, update size) across decoder blocks",
                 ("arm", "t", "model", "importance", "ρ", "permutation p per run", "critical quarter's share of ‖Δ‖² (%)"),
                 tuple(rows), "negative ρ: the updates avoid the reasoning-critical blocks; two-sided p over all "
                              "pairings of the blocks (with 8 blocks |ρ| ≥ 0.74 is needed for p < 0.05)")
