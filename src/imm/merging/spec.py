"""What to merge: a mergekit-style config, validated before any weight is read.

    merge_method: imm                  # or linear, slerp, task_arithmetic, ties, dare_ties, ...
    base_model: runs/x/theta0          # θ0, a Hugging Face checkpoint folder
    start_model: runs/x/arms/a/iter_1/merged   # model_stock*: the fine-tunes' common start G (default: base_model)
    models:
      - model: runs/x/arms/imm/iter_1/finetuned
        parameters: {weight: 0.5, density: 0.8}
    parameters: {normalize: false}     # shared parameters, and defaults for per-model ones
    dtype: bfloat16                    # output dtype (compute is always float32)
    tokenizer_source: base             # or a checkpoint folder

Paths are taken as written (relative ones from the working directory), as mergekit does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from imm.errors import UserError
from imm.merging.methods import METHODS, REQUIRED, BaseUse, Method, Param, TensorParams
from imm.merging.parameters import Setting, is_finite_number, resolve_first, setting_scalars

TOP_KEYS = ("merge_method", "base_model", "start_model", "models", "parameters", "dtype", "out_dtype", "tokenizer_source")
OUTPUT_DTYPES = ("float32", "float16", "bfloat16", "float64")


@dataclass(frozen=True)
class ModelInput:
    path: Path
    parameters: Mapping[str, Setting]


@dataclass(frozen=True)
class MergeSpec:
    """A validated merge config; `raw` is the config as given, saved as merge_config.yml."""

    method: str
    base_model: Path | None
    start_model: Path | None  # where the merged fine-tunes started (methods with `start`); None: the base
    models: tuple[ModelInput, ...]  # the inputs that get per-model parameters, base excluded when base-aware
    parameters: Mapping[str, Setting]
    dtype: str | None
    out_dtype: str | None
    tokenizer_source: Path | None
    raw: Mapping[str, Any]

    def inputs(self) -> tuple[Path, ...]:
        """Every checkpoint folder the merge reads (an output may overlap none of them)."""
        found = (self.base_model, self.start_model, *(m.path for m in self.models), self.tokenizer_source)
        return tuple(path for path in found if path is not None)

    @classmethod
    def from_yaml(cls, path: Path) -> "MergeSpec":
        path = Path(path)
        if not path.is_file():
            raise UserError(f"merge config {path} not found; pass the path of a mergekit-style YAML file")
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise UserError(f"{path} is not valid YAML ({str(err).splitlines()[0]}); fix the syntax") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: Any, *, folders_exist: bool = True) -> "MergeSpec":
        """A validated spec; `folders_exist=False` checks everything but the checkpoint folders (a run's
        merge block is checked when its config loads, before F_t exists)."""
        if not isinstance(raw, Mapping):
            raise UserError("the merge config must be a mapping with merge_method, base_model and models")
        _check_top_keys(raw)
        method = _method_name(raw)
        folder = _folder if folders_exist else _folder_name
        base = folder("base_model", raw["base_model"]) if raw.get("base_model") is not None else None
        if base is None and METHODS[method].base is BaseUse.REQUIRED:
            raise UserError(f"merge_method {method} needs base_model; add base_model: PATH_TO_THE_ORIGINAL_MODEL")
        start = _start_model(raw, method, folder)
        models = _models(raw, method, base, folder)
        shared = _parameters_block(raw.get("parameters"), "parameters")
        spec = cls(method, base, start, models, shared, _dtype(raw, "dtype"), _dtype(raw, "out_dtype"),
                   _tokenizer_source(raw.get("tokenizer_source")), dict(raw))
        _check_parameters(spec)
        return spec

    @property
    def method_def(self) -> Method:
        return METHODS[self.method]

    @property
    def output_dtype(self) -> str | None:
        return self.out_dtype or self.dtype

    def to_yaml(self) -> str:
        return yaml.safe_dump(_plain(self.raw), sort_keys=False)

    def tensor_params(self, tensor_name: str, t: float, layer: int | None = None, layers: int = 1,
                      shape: tuple[int, ...] = ()) -> TensorParams:
        """Resolve every parameter for one tensor at depth t (block `layer` of `layers`); UserError if one cannot be."""
        method = self.method_def
        shared = {name: _resolve(name, p, [self.parameters], tensor_name, t, "") for name, p in method.shared.items()}
        per_model = tuple(
            {name: _resolve(name, p, [m.parameters, self.parameters], tensor_name, t, f" for model {m.path}")
             for name, p in method.per_model.items()}
            for m in self.models
        )
        params = TensorParams(per_model, shared, layer, layers, tensor_name, tuple(shape))
        _check_tensor_params(self.method, params, tensor_name)
        return params


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _check_top_keys(raw: Mapping) -> None:
    for key in raw:
        if key in ("slices", "modules"):
            raise UserError(f"'{key}' (layer slicing) is not supported; list whole models under models:")
        if key not in TOP_KEYS:
            raise UserError(f"unknown merge config key '{key}'; allowed keys: {', '.join(TOP_KEYS)}")
    if "models" not in raw:
        raise UserError("the merge config has no models:; list the fine-tuned checkpoints under models: - model: PATH")


def _method_name(raw: Mapping) -> str:
    method = raw.get("merge_method")
    if method not in METHODS:
        raise UserError(f"unknown merge_method {method!r}; choose one of {', '.join(sorted(METHODS))}")
    return method


def _folder_name(where: str, value: Any) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise UserError(f"{where} must be a checkpoint folder path, got {value!r}")
    return Path(value).expanduser()


def _folder(where: str, value: Any) -> Path:
    path = _folder_name(where, value)
    if not path.is_dir():
        raise UserError(f"{where}: checkpoint folder {path} does not exist; give a local Hugging Face checkpoint folder")
    if not (path / "config.json").is_file():
        raise UserError(f"{where}: {path} has no config.json; give a Hugging Face checkpoint folder (save_pretrained)")
    return path


def _start_model(raw: Mapping, method: str, folder=_folder) -> Path | None:
    if raw.get("start_model") is None:
        return None
    if not METHODS[method].start:
        readers = ", ".join(name for name, m in METHODS.items() if m.start)
        raise UserError(f"start_model is read only by {readers}, not by merge_method {method}; remove it")
    return folder("start_model", raw["start_model"])


def _same(a: Path, b: Path | None) -> bool:
    return b is not None and a.resolve() == b.resolve()


def _models(raw: Mapping, method: str, base: Path | None, folder=_folder) -> tuple[ModelInput, ...]:
    entries = raw["models"]
    if not isinstance(entries, list) or not entries:
        raise UserError("models: must be a non-empty list of {model: PATH, parameters: {...}}")
    models: list[ModelInput] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "model" not in entry or set(entry) - {"model", "parameters"}:
            raise UserError(f"models[{i}] must be a mapping with model: PATH and optional parameters:, got {entry!r}")
        path = folder(f"models[{i}].model", entry["model"])
        if any(_same(path, m.path) for m in models):
            raise UserError(f"models[{i}]: {path} is listed twice; list each model once")
        if METHODS[method].task_vectors or method == "slerp":
            if _same(path, base):
                continue  # the base of a base-aware method is not one of the merged inputs
        models.append(ModelInput(path, _parameters_block(entry.get("parameters"), f"models[{i}].parameters")))
    if method == "linear" and base is not None and not any(_same(base, m.path) for m in models):
        models.append(ModelInput(base, {}))  # mergekit adds an unlisted base as one more weighted input
    return tuple(models)


def _parameters_block(block: Any, where: str) -> Mapping[str, Setting]:
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise UserError(f"{where} must be a mapping of parameter names to values, got {block!r}")
    return dict(block)


def _dtype(raw: Mapping, key: str) -> str | None:
    value = raw.get(key)
    if value is not None and value not in OUTPUT_DTYPES:
        raise UserError(f"{key}: {value!r} is not supported; choose one of {', '.join(OUTPUT_DTYPES)}")
    return value


def _tokenizer_source(value: Any) -> Path | None:
    if value is None or value == "base":
        return None
    if value == "union":
        raise UserError("tokenizer_source: union is not supported; merge models that share one vocabulary, "
                        "or use tokenizer_source: base")
    return _folder("tokenizer_source", value)


def _check_parameters(spec: MergeSpec) -> None:
    method = spec.method_def
    name = spec.method
    allowed = {**method.per_model, **method.shared}
    if method.max_models == 1 and len(spec.models) != 1:
        raise UserError(f"merge_method {name} merges the base with exactly one other model, got {len(spec.models)}; "
                        "list one model besides base_model")
    if len(spec.models) < method.min_models:
        raise UserError(f"merge_method {name} has no model to merge into the base; list at least one model "
                        "besides base_model under models:")
    for key, setting in spec.parameters.items():
        if key not in allowed:
            raise UserError(f"unknown parameter '{key}' for merge_method {name}; allowed: {', '.join(allowed) or 'none'}")
        _check_values(f"parameters.{key}", allowed[key], setting)
    for i, model in enumerate(spec.models):
        for key, setting in model.parameters.items():
            if key in method.shared:
                raise UserError(f"parameter '{key}' of model {model.path} applies to the whole merge; "
                                "move it to the top-level parameters:")
            if key not in method.per_model:
                raise UserError(f"unknown parameter '{key}' for model {model.path} in merge_method {name}; "
                                f"allowed: {', '.join(method.per_model) or 'none'}")
            _check_values(f"{model.path}: {key}", method.per_model[key], setting)
    _check_required(spec)


def _check_values(where: str, param: Param, setting: Setting) -> None:
    if param.kind is list:  # one number per decoder block, taken whole
        if not (isinstance(setting, list) and setting and all(is_finite_number(v) for v in setting)):
            raise UserError(f"{where} must be a list of finite numbers, one per decoder block, got {setting!r}")
        return
    if param.kind is str:
        if setting not in param.choices:
            raise UserError(f"{where} must be one of {', '.join(param.choices)}, got {setting!r}")
        return
    for value in setting_scalars(where, setting):
        if param.kind is bool:
            if not isinstance(value, bool):
                raise UserError(f"{where} must be true or false, got {value!r}")
            continue
        if not is_finite_number(value):
            raise UserError(f"{where} must be a finite number, got {value!r}")
        low_ok = value > param.low if param.low_open else value >= param.low
        if not (low_ok and value <= param.high):
            raise UserError(f"{where} = {value} is out of range; use a value in {_range_text(param)}")


def _range_text(param: Param) -> str:
    left = "(" if param.low_open else "["
    high = "inf)" if math.isinf(param.high) else f"{param.high:g}]"
    return f"{left}{param.low:g}, {high}"


def _check_required(spec: MergeSpec) -> None:
    method = spec.method_def
    for key, param in method.shared.items():
        if param.default is REQUIRED and key not in spec.parameters:
            raise UserError(f"merge_method {spec.method} needs parameter '{key}'; add parameters: {{{key}: VALUE}}")
    for key, param in method.per_model.items():
        for model in spec.models:
            if param.default is REQUIRED and key not in model.parameters and key not in spec.parameters:
                raise UserError(f"model {model.path} has no '{key}'; add parameters: {{{key}: VALUE}} to it "
                                "or to the top-level parameters:")


def _resolve(name: str, param: Param, scopes: list, tensor_name: str, t: float, owner: str) -> Any:
    if param.kind in (list, str):  # not a per-tensor setting: the value as written
        return next((scope[name] for scope in scopes if name in scope), param.default)
    value = resolve_first(scopes, name, tensor_name, t)
    if value is None:
        if param.default is REQUIRED:
            raise UserError(f"no filter rule for '{name}'{owner} matches tensor {tensor_name}; "
                            "add a rule without filter (or filter: '*') as the last one")
        return param.default
    return value


def _check_tensor_params(method: str, params: TensorParams, tensor_name: str) -> None:
    importance = params.shared.get("importance")
    if importance is not None and len(importance) != params.layers:
        raise UserError(f"parameters.importance has {len(importance)} value(s) but the checkpoint has {params.layers} "
                        "decoder blocks; give one importance value per block")
    for p in params.per_model:
        if "epsilon" in p and p["density"] < 1 and not (0 < p["density"] - p["epsilon"] and p["density"] + p["epsilon"] < 1):
            raise UserError(f"{tensor_name}: density ± epsilon ({p['density']:g} ± {p['epsilon']:g}) must stay inside "
                            "(0, 1); lower epsilon")
    if method == "linear" and params.shared["normalize"] and abs(sum(p["weight"] for p in params.per_model)) < 1e-12:
        raise UserError(f"{tensor_name}: linear weights sum to 0 so they cannot be normalised; "
                        "change the weights or set parameters: {normalize: false}")
