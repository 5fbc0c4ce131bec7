"""What `imm run` adds for reports: a per-step training log, and seeds=[...] as one command."""

import json

import pytest

from imm.cli import main
from imm.finetune import FinetuneConfig, lr_at, train
from imm.world.tokenizer import train_tokenizer

from test_report_build import make_run
from tiny import tiny_llama


def test_training_writes_loss_lr_and_throughput_per_step(tmp_path):
    """16 pairs, batch 8, 2 epochs: 4 optimizer steps; warm-up is max(1, round(0.03·4)) = 1 step, so the
    rates are 1e-2·lr_at(s, 4, 1) for s = 0..3: 1e-2 (warm-up), then 1e-2·½(1 + cos(π·(s−1)/3)) = 1e-2, 7.5e-3, 2.5e-3."""
    tok = train_tokenizer(["Question: 2 + 3 = ?\nAnswer: 2 + 3 = 5. The answer is 5."] * 20, vocab_size=300)
    model = tiny_llama(len(tok), max_position_embeddings=128)
    log = tmp_path / "train_log.jsonl"
    stats = train(model, tok, [("Question: 2 + 3 = ?\nAnswer:", " 2 + 3 = 5. The answer is 5.")] * 16,
                  FinetuneConfig(learning_rate=1e-2, epochs=2, batch_size=8), desc=None, log=log)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and [r["epoch"] for r in rows] == [1, 1, 2, 2]
    assert [r["lr"] for r in rows] == pytest.approx([1e-2 * lr_at(s, 4, 1) for s in range(4)])
    assert [r["lr"] for r in rows] == pytest.approx([1e-2, 1e-2, 7.5e-3, 2.5e-3])
    assert rows[-1]["loss"] == pytest.approx(stats.final_loss) and all(r["tokens_per_s"] > 0 for r in rows)


def test_seeds_run_as_one_command_into_sibling_folders_reported_together(tmp_path, monkeypatch, capsys):
    """`imm run seeds=[0,1]` runs smoke-seed0 and smoke-seed1 (the loop is stood in for by hand-made
    runs) and writes their joint report to smoke-seeds/."""
    ran = []

    def fake_loop(cfg, restart=False, stages=None):
        ran.append((cfg.name, cfg.seed, cfg.seeds))
        return make_run(cfg.run_dir, seed=cfg.seed)

    monkeypatch.setattr("imm.loop.run_loop", fake_loop)
    assert main(["run", "--config", "smoke", f"out_dir={tmp_path}", "seeds=[0,1]"]) == 0
    assert ran == [("smoke-seed0", 0, ()), ("smoke-seed1", 1, ())]
    page = (tmp_path / "smoke-seeds" / "index.html").read_text()
    assert "seed0 (seed 0)" in page and "seed1 (seed 1)" in page
    assert f"seeds reported together: {tmp_path / 'smoke-seeds' / 'index.html'}" in capsys.readouterr().out


def test_a_seed_listed_twice_is_refused_before_any_run(tmp_path, capsys):
    assert main(["run", "--config", "smoke", f"out_dir={tmp_path}", "seeds=[1,1]"]) == 2
    assert "seeds lists a seed twice" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_run_refreshes_its_summary_each_iteration_and_its_report_at_most_once_a_minute(tmp_path, monkeypatch):
    """Iterations end at 0, 30, 61 and 90 s, then the run ends at 95 s: the page is drawn at 0 s, not at 30 s
    (30 s after the last), at 61 s, not at 90 s (29 s after), and at the end whatever the time."""
    from imm.report import cli as report_cli

    pages, now = [], [0.0]
    monkeypatch.setattr(report_cli, "refresh", lambda run_dir, page: pages.append((run_dir, page)))
    monkeypatch.setattr(report_cli.time, "monotonic", lambda: now[0])
    refresher = report_cli.Refresher(tmp_path, every=60.0)
    for now[0] in (0.0, 30.0, 61.0, 90.0):
        refresher()
    now[0] = 95.0
    refresher(final=True)
    assert pages == [(tmp_path, True), (tmp_path, False), (tmp_path, True), (tmp_path, False), (tmp_path, True)]


def test_a_mid_run_refresh_without_the_page_writes_the_summary_only(tmp_path):
    run = make_run(tmp_path / "run")
    from imm.layout import RunLayout
    from imm.report.cli import refresh

    layout = RunLayout(run)
    layout.summary.unlink(missing_ok=True)
    refresh(run, page=False)
    assert layout.summary.is_file() and not (layout.report / "index.html").exists()
    refresh(run, page=True)
    assert (layout.report / "index.html").is_file()
