"""The one reader of a saved run (RunLayout.saved): config.yaml parsed into RunConfig, its defaults the
dataclasses' own, so a command reading a run cannot drift from `imm run`."""

import pytest
import yaml

from imm.analysis.run_folder import run_settings
from imm.config import EvalConfig, ImportanceKind, RunConfig
from imm.errors import UserError
from imm.layout import RunLayout


def test_settings_a_config_yaml_leaves_out_are_the_run_configs_defaults(tmp_path):
    """config.yaml gives only model.base and eval.limit: the analysis reads eval.max_new_tokens = 128 (EvalConfig's
    default, which a restated 256 once contradicted), the probe and importance of AnalysisConfig, and θ0 where the
    run found it (resolved.base.folder) rather than its spec."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model": {"base": "some/hub-id"}, "eval": {"limit": 9},
                                                          "resolved": {"base": {"folder": "/cache/hub-id"}}}))
    saved = RunLayout(tmp_path).saved()
    assert isinstance(saved.config, RunConfig) and saved.config.eval.limit == 9
    settings = run_settings(tmp_path)
    assert settings["max_new_tokens"] == EvalConfig.max_new_tokens == 128
    assert (settings["probe_task"], settings["probe_size"]) == ("arith", 64)
    assert settings["importance"] == (ImportanceKind.ABLATION, ImportanceKind.GRADIENT)
    assert settings["base"] == "/cache/hub-id" and settings["device"] == "auto"


@pytest.mark.parametrize("text, message", [
    ("sampling: {k: [1,\n", "is not valid YAML"),
    ("- a list\n", "is not a run config"),
    ("sampling:\n  kk: 2\n", "unknown config key sampling.kk"),
])
def test_a_broken_config_yaml_is_one_clear_error(tmp_path, text, message):
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(UserError, match=message):
        RunLayout(tmp_path).saved()


def test_a_folder_without_config_yaml_is_no_run(tmp_path):
    with pytest.raises(UserError, match="holds no config.yaml"):
        RunLayout(tmp_path).saved()
