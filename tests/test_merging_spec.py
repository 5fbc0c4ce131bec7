"""Merge configs: mergekit parameter semantics, and one-line errors for every bad input."""

import json

import pytest

from imm.errors import UserError
from imm.merging import MergeSpec
from imm.merging.parameters import depth, resolve


@pytest.fixture
def folders(tmp_path):
    """Checkpoint-looking folders (config.json only: MergeSpec never reads weights)."""
    paths = {}
    for name in ("base", "ft1", "ft2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"model_type": "llama"}))
        paths[name] = str(tmp_path / name)
    return paths


def _config(folders, method="task_arithmetic", **extra):
    config = {"merge_method": method, "base_model": folders["base"],
              "models": [{"model": folders["ft1"], "parameters": {"weight": 0.5}}]}
    config.update(extra)
    return config


def _error(config) -> str:
    with pytest.raises(UserError) as info:
        MergeSpec.from_dict(config)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_gradient_interpolates_over_depth():
    """[0.2, 0.9, 0.5]: t = 0.25 → scaled 0.5 → 0.2 + 0.5·0.7 = 0.55; t = 0.75 → scaled 1.5 →
    0.9 − 0.5·0.4 = 0.7; t = 1 → 0.5. Booleans pick values[⌊t(m−1)⌋]."""
    assert resolve([0.2, 0.9, 0.5], "x", 0.25) == pytest.approx(0.55)
    assert resolve([0.2, 0.9, 0.5], "x", 0.75) == pytest.approx(0.7)
    assert resolve([0.2, 0.9, 0.5], "x", 1.0) == pytest.approx(0.5)
    assert resolve([True, False], "x", 0.9) is True


def test_filters_match_by_substring_in_order():
    rules = [{"filter": "self_attn", "value": 0.9}, {"filter": "mlp", "value": [0.0, 1.0]}, {"value": 0.1}]
    assert resolve(rules, "model.layers.0.self_attn.q_proj.weight", 0.5) == 0.9
    assert resolve(rules, "model.layers.2.mlp.up_proj.weight", 0.5) == 0.5
    assert resolve(rules, "model.norm.weight", 0.0) == 0.1
    assert resolve(rules[:1], "model.norm.weight", 0.0) is None


def test_depth_of_layers_and_other_tensors():
    """5 layers: layer 3 sits at 3/4; embeddings and the final norm at 0; one layer at 1."""
    assert depth("model.layers.3.mlp.up_proj.weight", 5) == 0.75
    assert depth("model.embed_tokens.weight", 5) == 0.0
    assert depth("model.layers.0.mlp.up_proj.weight", 1) == 1.0


def test_per_model_then_top_level_then_default(folders):
    """ft1 sets density 0.3; ft2 inherits top-level density 0.6; weight of ft2 from top level."""
    config = _config(folders, "ties", parameters={"density": 0.6, "weight": 0.25})
    config["models"] = [{"model": folders["ft1"], "parameters": {"weight": 1.0, "density": 0.3}},
                        {"model": folders["ft2"]}]
    params = MergeSpec.from_dict(config).tensor_params("model.layers.0.mlp.up_proj.weight", 0.0)
    assert [p["density"] for p in params.per_model] == [0.3, 0.6]
    assert [p["weight"] for p in params.per_model] == [1.0, 0.25]
    assert params.shared["normalize"] is True and params.shared["lambda"] == 1.0


def test_imm_defaults_are_the_papers(folders):
    """arXiv 2503.02103: λ = 0.5, p = 0.2 (density 0.8)."""
    config = _config(folders, "imm")
    config["models"] = [{"model": folders["ft1"]}]
    params = MergeSpec.from_dict(config).tensor_params("model.layers.0.mlp.up_proj.weight", 0.0)
    assert params.per_model == ({"weight": 0.5, "density": 0.8},)


def test_base_listed_among_models_is_not_merged_into_itself(folders):
    config = _config(folders)
    config["models"].insert(0, {"model": folders["base"]})
    assert [str(m.path) for m in MergeSpec.from_dict(config).models] == [folders["ft1"]]


def test_linear_adds_an_unlisted_base_as_an_input(folders):
    config = _config(folders, "linear", parameters={"weight": 0.3})
    assert [str(m.path) for m in MergeSpec.from_dict(config).models] == [folders["ft1"], folders["base"]]


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c.update(merge_method="frankenmerge"), "unknown merge_method 'frankenmerge'"),
    (lambda c: c.update(merge_method="ties", parameters={"densty": 0.5}), "unknown parameter 'densty'"),
    (lambda c: c["models"][0]["parameters"].update(gama=0.1), "unknown parameter 'gama'"),
    (lambda c: c["models"][0]["parameters"].update(density=1.5), "density = 1.5 is out of range"),
    (lambda c: c["models"][0]["parameters"].update(density=0.0), "use a value in (0, 1]"),
    (lambda c: c["models"][0]["parameters"].update(density=[0.5, -0.1]), "density = -0.1 is out of range"),
    (lambda c: c.update(parameters={"lambda": -1.0}), "lambda = -1.0 is out of range"),
    (lambda c: c.update(merge_method="imm"), None),  # weight 0.5 is a valid λ
    (lambda c: (c.update(merge_method="imm"), c["models"][0]["parameters"].update(weight=1.5)),
     "weight = 1.5 is out of range; use a value in [0, 1]"),
    (lambda c: c["models"][0]["parameters"].update(weight="half"), "'half' is not a parameter value"),
    (lambda c: c["models"][0]["parameters"].update(weight=float("nan")), "must be a finite number"),
    (lambda c: c.update(parameters={"normalize": 1}), "must be true or false"),
    (lambda c: c["models"][0]["parameters"].update(weight={"filter": "mlp"}), "is not a parameter value"),
    (lambda c: c["models"][0]["parameters"].update(normalize=True), "applies to the whole merge"),
    (lambda c: c["models"][0].pop("parameters"), "has no 'weight'"),
    (lambda c: c["models"].append({"model": c["models"][0]["model"]}), "is listed twice"),
    (lambda c: c["models"][0].update(model="/nonexistent/ckpt"), "/nonexistent/ckpt does not exist"),
    (lambda c: c.update(base_model="/nonexistent/base"), "/nonexistent/base does not exist"),
    (lambda c: c.pop("base_model"), "needs base_model"),
    (lambda c: c.update(models=[]), "non-empty list"),
    (lambda c: c.pop("models"), "has no models:"),
    (lambda c: c.update(slices=[]), "'slices' (layer slicing) is not supported"),
    (lambda c: c.update(merge_mthod="ties"), "unknown merge config key 'merge_mthod'"),
    (lambda c: c.update(dtype="float8"), "dtype: 'float8' is not supported"),
    (lambda c: c.update(tokenizer_source="union"), "tokenizer_source: union is not supported"),
    (lambda c: c.update(merge_method="slerp", parameters={"t": 0.5},
                        models=[{"model": c["models"][0]["model"]}, {"model": c["base_model"][:-4] + "ft2"}]),
     "exactly one other model"),
    (lambda c: c.update(merge_method="slerp", models=[{"model": c["models"][0]["model"]}]), "needs parameter 't'"),
    (lambda c: c.update(merge_method="slerp", parameters={"t": 1.2}, models=[{"model": c["models"][0]["model"]}]),
     "t = 1.2 is out of range"),
])
def test_bad_configs_fail_with_one_line(folders, mutate, expected):
    config = _config(folders)
    mutate(config)
    if expected is None:
        MergeSpec.from_dict(config)
    else:
        assert expected in _error(config)


def test_resolution_errors_come_before_reading(folders):
    """A filter list with no catch-all leaves some tensor without a required weight."""
    config = _config(folders)
    config["models"][0]["parameters"]["weight"] = [{"filter": "mlp", "value": 0.5}]
    spec = MergeSpec.from_dict(config)
    with pytest.raises(UserError, match="no filter rule for 'weight'"):
        spec.tensor_params("model.norm.weight", 0.0)


def test_della_epsilon_must_keep_probabilities_inside_0_1(folders):
    """density 0.9 ± ε 0.15 reaches 1.05: rejected for the tensor it applies to."""
    config = _config(folders, "della")
    config["models"][0]["parameters"].update(density=0.9)
    with pytest.raises(UserError, match="density ± epsilon"):
        MergeSpec.from_dict(config).tensor_params("model.norm.weight", 0.0)


def test_yaml_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        MergeSpec.from_yaml(tmp_path / "missing.yml")
    (tmp_path / "bad.yml").write_text("merge_method: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        MergeSpec.from_yaml(tmp_path / "bad.yml")
