"""Every setting declares its range beside its field; parsing refuses out-of-range, NaN and infinite values
naming the dotted key and the range; any value of any field gives a config or one UserError, never a
traceback (hypothesis, through the preflight: nothing is run)."""

from __future__ import annotations

import dataclasses
import io
import typing
from contextlib import redirect_stderr
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imm import config
from imm.cli import main
from imm.config import Range, RunConfig
from imm.errors import UserError


def leaves(cls: type = RunConfig, prefix: str = ""):
    """(dotted key, field, type hint) of every setting, nested blocks walked."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from leaves(hints[f.name], prefix + f.name + ".")
        else:
            yield prefix + f.name, f, hints[f.name]


def _numeric(hint) -> bool:
    return hint in (int, float) or any(_numeric(a) for a in typing.get_args(hint) if a is not type(None))


@pytest.mark.parametrize("override, message", [
    ("finetune.batch_size=0", "config key finetune.batch_size must be in [1, 65536], got 0"),
    ("finetune.grad_accum=0", "config key finetune.grad_accum must be in [1, 65536], got 0"),
    ("finetune.max_length=0", "config key finetune.max_length must be in [16, 1048576], got 0"),
    ("model.threads=-3", "config key model.threads must be in [0, 4096], got -3"),
    ("sampling.max_new_tokens=-5", "config key sampling.max_new_tokens must be in [1, 32768], got -5"),
    (f"sampling.max_new_tokens={10**9}", "config key sampling.max_new_tokens must be in [1, 32768], got 1000000000"),
    ("sampling.max_new_tokens=0", "config key sampling.max_new_tokens must be in [1, 32768], got 0"),
    ("eval.max_new_tokens=0", "config key eval.max_new_tokens must be in [1, 32768], got 0"),
    ("sampling.temperature=.inf", "config key sampling.temperature must be a finite number, got inf"),
    ("sampling.temperature=.nan", "config key sampling.temperature must be a finite number, got nan"),
    ("eval.diversity_questions=-1", "config key eval.diversity_questions must be in [0, 2147483647], got -1"),
    ("finetune.learning_rate=1e9", "config key finetune.learning_rate must be in (0, 1], got 1000000000.0"),
    ("merge.weight=-.inf", "config key merge.weight must be a finite number, got -inf"),
    ("seeds=[0, -1]", "config key seeds must be in [0, 2147483647], got -1"),
])
def test_out_of_range_and_non_finite_values_are_refused_naming_the_key_and_range(override, message, tmp_path, capsys):
    assert main(["run", "--config", "smoke", override, f"out_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_every_number_setting_declares_a_range_that_holds_its_default():
    missing = [key for key, f, hint in leaves() if _numeric(hint) and "range" not in f.metadata]
    assert missing == []
    for key, f, _ in leaves():
        if (bounds := f.metadata.get("range")) is not None:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            assert all(v in bounds for v in (default if isinstance(default, (tuple, list)) else (default,))), key


def test_a_range_is_closed_or_open_at_each_end():
    """(0, 1]: 0 out, 1e-12 and 1 in; [0, 1): 1 out."""
    assert 0 not in Range(0, 1, low_open=True) and 1e-12 in Range(0, 1, low_open=True) and 1 in Range(0, 1, True)
    assert 1 not in Range(0, 1, high_open=True) and str(Range(0, 1, high_open=True)) == "[0, 1)"


SETTINGS = [(key, hint) for key, _, hint in leaves()]
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.one_of(st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=4)), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-3, 3), max_size=2),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SETTINGS), ANY_VALUE)
def test_any_value_of_any_setting_exits_0_or_is_one_line_with_exit_2(setting, value):
    """`imm run --config smoke KEY=VALUE` with the experiment itself replaced by a no-op: everything up to it
    (parsing, the preflight, the CLI's printing) runs. Exit 0, or exit 2 with one line (or the preflight's
    count and one line per problem), never a traceback."""
    key, _ = setting
    if key.startswith("sampling.vllm_") or key == "sampling.backend":
        value = value if value != "vllm" else "hf"  # starting vLLM's own Python is not validation
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).removesuffix("\n...\n").strip()
    err = io.StringIO()
    with mock.patch("imm.loop.run_experiment", lambda cfg, restart=False: []), redirect_stderr(err):
        code = main(["run", "--config", "smoke", f"{key}={text}"])
    lines = err.getvalue().splitlines()
    assert code == 0 and lines == [] or code == 2 and lines[0].startswith("imm run: error: "), (code, lines)
    assert len(lines) <= 1 or lines[0].endswith("problems in the config:") and len(lines) == int(lines[0].split()[3]) + 1


def test_every_field_is_reached_by_the_property_test():
    assert {key for key, _ in SETTINGS} >= {"finetune.batch_size", "model.threads", "merge_arms", "prompt.shots"}
    assert len(SETTINGS) == len({key for key, _ in SETTINGS}) > 50
    assert config.load_config("smoke")  # the shipped configs stay inside every range
    assert config.load_config("default")


def test_a_config_built_in_code_is_held_to_the_same_ranges_by_the_preflight():
    """The stages no longer restate bounds: a RunConfig made with dataclasses.replace, never parsed, gets the
    parser's own range message from the preflight (finetune.epochs is declared in [1, 10000])."""
    from imm import preflight
    from imm.config import RunConfig

    base = RunConfig()
    cfg = dataclasses.replace(base, finetune=dataclasses.replace(base.finetune, epochs=0))
    assert "config key finetune.epochs must be in [1, 10000], got 0; set a value in that range" in preflight.problems(cfg)
    assert not any("finetune.epochs" in p for p in preflight.problems(base))
