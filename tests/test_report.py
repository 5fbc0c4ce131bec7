"""summary.csv and the printed table, on hand-made rows."""

from imm.config import RunConfig, from_dict
from imm.report import SummaryRow, format_table, read_summary, write_summary


def rows(arith: float, vocab: float) -> list[SummaryRow]:
    out = []
    for arm in ("self_improve", "imm"):
        out += [SummaryRow(arm, 0, "generator", "arith", "id", "strict-match", 0.5, 300),
                SummaryRow(arm, 0, "generator", "arith_vocab", "ood", "strict-match", 0.25, 300)]
    out += [SummaryRow("self_improve", 1, "finetuned", "arith", "id", "strict-match", arith, 300),
            SummaryRow("imm", 1, "finetuned", "arith", "id", "strict-match", 0.9, 300),
            SummaryRow("imm", 1, "merged", "arith", "id", "strict-match", vocab, 300)]
    return out


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
