"""Bad input on the command line: one line naming the problem and the fix, exit code 2, no traceback,
and no run folder left behind."""

import pytest

from imm.cli import main


@pytest.mark.parametrize("args, message", [
    (["run", "finetune.lr=1e-4"], "unknown config key finetune.lr"),
    (["run", "sampling.k=two"], "config key sampling.k must be int"),
    (["run", "iterations=0"], "config key iterations must be in [1, 1000], got 0"),
    (["run", "model.base=/no/such/model"], "model path /no/such/model does not exist"),
    (["run", "data.train_task=nope"], "unknown task 'nope'"),
    (["run", "arms=[imm, distil]"], "unknown arm 'distil'; choose among self_improve, imm, distill, distill_imm"),
    (["run", "arms=[imm, imm]"], "arms lists an arm twice"),
    (["run", "sampling.temperature=0"], "sampling.temperature=0 is greedy: its 4 samples per question would be identical"),
    (["run", "eval.diversity_temperature=0"], "set eval.diversity_k=0 or a temperature above 0"),
    (["run", "arms=[distill]", "model.teacher=/no/such/teacher"], "model path /no/such/teacher does not exist"),
    (["run", "merge.density=1.5"], "merge.density must be in (0, 1]"),
    (["run", "--config", "no-such-config"], "neither a file nor a shipped config"),
    (["run", "sampling.k"], "must look like key=value"),
])
def test_bad_run_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert main([*args, f"out_dir={tmp_path}"] if "--config" not in args else [*args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir()), "a run folder was written before the config was valid"


def test_a_model_folder_without_config_json_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["run", f"model.base={tmp_path / 'empty'}", f"out_dir={tmp_path}"]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_unknown_command_exits_2(capsys):
    assert main(["bogus"]) == 2
    assert "unknown command 'bogus'" in capsys.readouterr().err


def test_a_yaml_that_is_not_a_mapping_is_refused(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    assert main(["run", "--config", str(bad)]) == 2
    assert "must be a mapping" in capsys.readouterr().err


def test_eval_and_analyze_flags_take_their_defaults_from_the_run_config():
    """`imm eval` and `imm analyze` cannot drift from `imm run`: their shared options default to the dataclasses."""
    import argparse

    from imm.analysis import cli as analyze_cli
    from imm.config import AnalysisConfig, EvalConfig, ModelConfig, SampleConfig
    from imm.evaluation import command as eval_cli

    parser = argparse.ArgumentParser()
    eval_cli.configure(parser)
    args = parser.parse_args(["--model", "m", "--task", "arith", "--out", "o"])
    assert (args.max_new_tokens, args.batch_size, args.temperature, args.top_p, args.device, args.dtype) == (
        EvalConfig.max_new_tokens, EvalConfig.batch_size, EvalConfig.diversity_temperature, SampleConfig.top_p,
        ModelConfig.device, ModelConfig.dtype) == (128, 64, 0.8, 1.0, "auto", "auto")
    assert analyze_cli.DEFAULTS == {"probe_task": AnalysisConfig.probe_task, "probe_size": 64,
                                    "importance": ("ablation", "gradient"), "max_new_tokens": 128, "device": "auto"}
