"""Preflight: parsing refuses a value outside a closed set, naming the allowed ones; the stages' checks run
together and every problem is reported at once, one line each, before anything is written."""

import pytest

from imm import config
from imm.cli import main
from imm.errors import UserError
from imm.preflight import load_config, problems


@pytest.mark.parametrize("override, allowed", [
    ("finetune.method=qlora", "full, lora"),
    ("finetune.init_from=teacher", "generator, base"),
    ("sampling.backend=tgi", "hf, vllm"),
    ("analysis.importance=[ablation,saliency]", "ablation, gradient, influence"),
])
def test_parsing_refuses_a_value_outside_a_closed_set_and_names_the_allowed_ones(override, allowed):
    with pytest.raises(UserError, match=f"must be one of {allowed}, got '"):
        config.load_config("smoke", (override,))


def test_a_closed_set_parses_to_its_enum_and_is_written_back_as_its_string():
    cfg = config.load_config("smoke", ("finetune.init_from=base",))
    assert cfg.finetune.init_from is config.InitFrom.BASE
    assert config.to_dict(cfg)["finetune"]["init_from"] == "base"
    assert type(config.to_dict(cfg)["analysis"]["importance"][0]) is str


def test_every_problem_is_reported_together_one_line_each():
    """Three blocks wrong at once (sampling, evaluation, finetune): three lines, in the checks' order."""
    with pytest.raises(UserError) as err:
        load_config("smoke", ("sampling.k=0", "eval.limit=0", "finetune.epochs=0"))
    lines = str(err.value).splitlines()
    assert lines[0] == "3 problems in the config:"
    assert [line.strip() for line in lines[1:]] == ["sampling.k must be positive, got 0",
                                                   "finetune.epochs must be positive, got 0",
                                                   "eval.limit must be positive, got 0"]


def test_a_valid_config_has_no_problem():
    assert problems(config.load_config("smoke")) == []


def test_imm_run_with_problems_exits_2_and_writes_nothing(tmp_path, capsys):
    code = main(["run", "--config", "smoke", f"out_dir={tmp_path}", "name=r", "sampling.k=0", "iterations=0"])
    assert code == 2 and list(tmp_path.iterdir()) == []
    assert "2 problems in the config" in capsys.readouterr().err
