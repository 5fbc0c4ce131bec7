"""The merge-back operators side by side: one row per arm at the last iteration every run reached.

A report gets this section when its runs hold two or more merging arms (`imm compare` makes such runs):
accuracy in domain and out of domain with paired 95% intervals against θ0 and against the paper's `imm`
arm, forgetting per problem, the collapse figures, and the superficiality figures of each arm's θ_t.
"""

from __future__ import annotations

from imm.layout import FINETUNED, MERGED
from imm.merging.merge_back import settings_read
from imm.report import compare
from imm.report.compare import OOD_MEAN, Difference
from imm.report.document import Cell, Section, Table, collapse_columns, diversity_task, fmt
from imm.report.runs import Run, theta_model

REFERENCE = "imm"  # the paper's operator, the one every other is compared with


def merging_arms(runs: list[Run]) -> list[str]:
    return [a for a in compare.arms(runs) if runs[0].cfg.arm(a).merges]


def table_iteration(runs: list[Run], merging: list[str]) -> int | None:
    """The latest iteration that two or more merging arms have reached in every run (runs in progress stop short)."""
    reached = [compare.last(runs, a) or 0 for a in merging]
    found = [t for t in range(runs[0].cfg.iterations, 0, -1) if sum(r >= t for r in reached) >= 2]
    return found[0] if found else None


def operator_text(runs: list[Run], arm: str) -> str:
    """The arm's merge block in a few words: method, λ where the method reads it, its other parameters."""
    if not runs[0].cfg.arm(arm).merges:
        return "none (θ_t = F_t)"
    block = runs[0].cfg.merge_block(arm)
    read = settings_read(block)
    return f"{block.method} ({', '.join(read)})" if read else block.method


def interval_text(d: Difference | None) -> str:
    if d is None:
        return "-"
    lo, hi = d.interval
    return f"{100 * d.estimate:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def accuracy_row(runs: list[Run], arm: str, t: int) -> tuple[Cell, ...]:
    groups = dict(compare.task_groups(runs))
    id_task = runs[0].tasks[0][0]
    ood_label = OOD_MEAN if OOD_MEAN in groups else next((t for t, d in runs[0].tasks if d == "ood"), None)
    cells = [Cell(arm), Cell(operator_text(runs, arm))]
    for label in (id_task, ood_label):
        if label is None:
            cells += [Cell("-")] * 3
            continue
        against_theta0 = compare.difference(runs, (None, 0), (arm, t), groups[label], label)
        against_imm = (compare.difference(runs, (REFERENCE, t), (arm, t), groups[label], label)
                       if arm != REFERENCE and REFERENCE in compare.arms(runs) else None)
        cells += [Cell(fmt(accuracy(runs, arm, t, groups[label]))), Cell(interval_text(against_theta0)),
                  Cell(interval_text(against_imm))]
    return tuple(cells)


def accuracy(runs: list[Run], arm: str, t: int, tasks: list[str]) -> compare.Spread | None:
    """Mean accuracy over `tasks` per run (equal test sizes: the pooled accuracy), min–max over runs."""
    per_task = [compare.value(runs, arm, t, task, compare.STRICT) for task in tasks]
    if not per_task or any(v is None for v in per_task):
        return None
    return compare.spread([sum(v) / len(v) for v in zip(*(s.values for s in per_task))])


def forgetting_text(runs: list[Run], arm: str, t: int, tasks: list[str], label: str) -> str:
    d = compare.difference(runs, (None, 0), (arm, t), tasks, label)
    if d is None:
        return "-"
    lost = compare.spread([sum(p.lost for p in s) / sum(p.n for p in s) for s in d.strata])
    gained = compare.spread([sum(p.gained for p in s) / sum(p.n for p in s) for s in d.strata])
    return f"{fmt(lost)} / {fmt(gained)}"


def layers_text(runs: list[Run], arm: str, t: int, kind: str) -> str:
    model = MERGED if runs[0].cfg.arm(arm).merges else FINETUNED
    f = compare.layer_figure(runs, arm, t, model, kind)
    if f is None:
        return "-"
    return f"{fmt(f.rho, 1.0, 2)}; {fmt(f.share)}"


def detail_row(runs: list[Run], arm: str, t: int, columns: list, kinds: list[str]) -> tuple[Cell, ...]:
    groups = dict(compare.task_groups(runs))
    id_task = runs[0].tasks[0][0]
    ood = [label for label in (OOD_MEAN,) if label in groups] or [t for t, d in runs[0].tasks if d == "ood"][:1]
    task = diversity_task(runs)
    model = theta_model(runs[0].cfg.arm(arm), t)
    cells = [Cell(arm), Cell(forgetting_text(runs, arm, t, [id_task], id_task))]
    cells += [Cell(forgetting_text(runs, arm, t, groups[label], label)) for label in ood]
    cells += [Cell(fmt(compare.value(runs, arm, t, task, metric, model), scale, digits)) for _, metric, scale, digits in columns]
    cells += [Cell(layers_text(runs, arm, t, kind)) for kind in kinds]
    return tuple(cells)


def operators_section(runs: list[Run]) -> Section | None:
    """The operators table, or None where the runs hold fewer than two merging arms."""
    arms = merging_arms(runs)
    t = table_iteration(runs, arms) if len(arms) >= 2 else None
    if t is None:
        return None
    ordered = [a for a in compare.arms(runs) if not runs[0].cfg.arm(a).merges] + arms
    shown = [a for a in ordered if (compare.last(runs, a) or 0) >= t]
    section = Section(f"Merge-back operators at t = {t}", "operators")
    spread = f"Accuracy: mean (min–max) over {len(runs)} runs. " if len(runs) > 1 else ""
    section.paragraphs.append(
        f"Every arm self-improves from θ0 with the same seeds; the merging arms differ only by the operator that "
        f"makes θ_t from θ0 and F_t, and each θ_t writes that arm's next data. {spread}Differences (points): "
        f"paired over the same problems, the mean over the runs with a 95% interval [low, high]: "
        f"{compare.SEED_METHOD if len(runs) > 1 else compare.ONE_RUN_METHOD}.")
    if missing := [a for a in runs[0].arms if a not in shown]:
        section.paragraphs.append(f"Not shown: {', '.join(missing)}, which did not reach t = {t} in every run.")
    tasks = runs[0].tasks
    has_ood = any(d == "ood" for _, d in tasks)
    header = ("arm", "operator", "ID (%)", "ID − θ0", f"ID − {REFERENCE}")
    ood = OOD_MEAN if OOD_MEAN in dict(compare.task_groups(runs)) else next((t for t, d in tasks if d == "ood"), "")
    header += (f"{ood} (%)", f"{ood} − θ0", f"{ood} − {REFERENCE}") if has_ood else ()
    rows = tuple(accuracy_row(runs, a, t)[: len(header)] for a in shown)
    section.tables.append(Table(f"Accuracy at t = {t}: greedy strict-match", header, rows,
                                f"{REFERENCE}: θ0 + λ·DARE_p(F_t − θ0), the paper's operator"))
    columns, kinds = collapse_columns(runs), list(runs[0].cfg.analysis.importance)
    detail = ("arm", "ID forgotten / learned (%)") + (("OOD forgotten / learned (%)",) if has_ood else ())
    detail += tuple(c[0] for c in columns) + tuple(f"ρ; critical share % ({k})" for k in kinds)
    section.tables.append(Table(
        f"Forgetting, collapse and superficiality at t = {t}", detail,
        tuple(detail_row(runs, a, t, columns, kinds) for a in shown),
        "forgotten: θ0 right and θ_t wrong on the same problem, learned: the reverse; collapse on the in-domain "
        "diversity samples; ρ: Spearman(θ0's block importance, ‖θ_t − θ0‖ per block), critical share: the part "
        "of ‖θ_t − θ0‖² in the top quarter of blocks by importance (25% would be uniform in count)"))
    return section

