"""summary.csv, the printed table, and the across-seeds table, on hand-made rows."""

from imm.config import RunConfig, from_dict
from imm.report import Column, SummaryRow, format_table, iteration_models, read_summary, seeds_table, write_summary


def rows(arith: float, vocab: float) -> list[SummaryRow]:
    out = []
    for arm in ("self_improve", "imm"):
        out += [SummaryRow(arm, 0, "generator", "arith", "id", "strict-match", 0.5, 300),
                SummaryRow(arm, 0, "generator", "arith_vocab", "ood", "strict-match", 0.25, 300)]
    out += [SummaryRow("self_improve", 1, "finetuned", "arith", "id", "strict-match", arith, 300),
            SummaryRow("imm", 1, "finetuned", "arith", "id", "strict-match", 0.9, 300),
            SummaryRow("imm", 1, "merged", "arith", "id", "strict-match", vocab, 300)]
    return out


def test_iteration_models_are_theta0_then_each_arms_theta_t():
    assert iteration_models(rows(0.6, 0.7)) == [("self_improve", 0, "generator"), ("self_improve", 1, "finetuned"),
                                                ("imm", 1, "merged")]


def test_distillation_arms_add_the_teacher_once_and_their_own_theta_t():
    """distill does not merge (θ_t = F_t), distill_imm does (θ_t = merged); the teacher is a t = 0 row."""
    extra = [SummaryRow(arm, 0, model, "arith", "id", "strict-match", 0.5, 300)
             for arm in ("distill", "distill_imm") for model in ("generator", "teacher")]
    extra += [SummaryRow(arm, 1, model, "arith", "id", "strict-match", 0.8, 300)
              for arm in ("distill", "distill_imm") for model in ("finetuned", "merged") if (arm, model) != ("distill", "merged")]
    assert iteration_models(rows(0.6, 0.7) + extra) == [
        ("self_improve", 0, "generator"), ("distill", 0, "teacher"), ("self_improve", 1, "finetuned"),
        ("imm", 1, "merged"), ("distill", 1, "finetuned"), ("distill_imm", 1, "merged")]


def test_seeds_table_gives_mean_and_range():
    """arith at t=1 for self_improve is 0.6 and 0.7 over two seeds: mean 65.0, range 60.0–70.0."""
    table = seeds_table([rows(0.6, 0.8), rows(0.7, 0.8)], [Column("arith", "arith", "strict-match")])
    lines = table.splitlines()
    assert lines[2] == "| θ0 | 0 | generator | 50.0 (50.0–50.0) |"
    assert lines[3] == "| self_improve | 1 | finetuned | 65.0 (60.0–70.0) |"
    assert lines[4] == "| imm | 1 | merged | 80.0 (80.0–80.0) |"


def test_summary_round_trips_and_the_table_puts_id_beside_ood(tmp_path, monkeypatch):
    cfg = from_dict(RunConfig, {"out_dir": str(tmp_path), "iterations": 1,
                                "data": {"id_tasks": ["arith"], "ood_tasks": ["arith_vocab"]}})
    monkeypatch.setattr("imm.report.summary.collect", lambda c: rows(0.6, 0.7))
    written = write_summary(cfg)
    assert read_summary(tmp_path / "default" / "summary.csv") == written
    assert (tmp_path / "default" / "summary.csv").read_text().splitlines()[0] == "arm,iteration,model,task,domain,metric,value,n"
    table = format_table(written, cfg)
    assert "self_improve  0 generator    50.0   25.0 |" in table
    assert "imm           1 merged       70.0      - |" in table
