"""Merge parameters as mergekit writes them: a scalar, a list interpolated over layer depth, or
a list of `{filter, value}` rules matched by tensor-name substring.

Resolution follows mergekit (`mergekit/config.py: evaluate_setting`): a numeric list of m values
at depth t ∈ [0, 1] gives linear interpolation between values[⌊t(m-1)⌋] and the next one; a list
of booleans picks values[⌊t(m-1)⌋]; filter rules are tried in order and the first whose filter is
absent, "*", or a substring of the tensor name wins. A setting that matches nothing falls back to
the next scope (per-model → top-level → the method's default).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from imm.errors import UserError
from imm.tensor_files import block_index

Scalar = bool | int | float
Setting = Any  # Scalar | list[Scalar] | {filter, value} | list[{filter, value}], validated by check_setting

def depth(tensor_name: str, num_layers: int) -> float:
    """mergekit's t: layer l of L sits at l / (L - 1) (t = 1 for a single layer); embeddings,
    final norm and head sit at t = 0."""
    index = block_index(tensor_name)
    if index is None:
        return 0.0
    return index / (num_layers - 1) if num_layers > 1 else 1.0


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float))


def _is_rule(value: Any) -> bool:
    return isinstance(value, Mapping) and "value" in value and set(value) <= {"filter", "value"}


def setting_scalars(where: str, setting: Setting) -> list[Scalar]:
    """Every scalar a setting can produce at its endpoints; raises UserError on a malformed one.

    Interpolation is convex, so range checks on these endpoints cover every tensor."""
    if _is_scalar(setting):
        return [setting]
    if _is_rule(setting):
        return setting_scalars(where, setting["value"])
    if isinstance(setting, list) and setting and all(_is_scalar(v) for v in setting):
        return list(setting)
    if isinstance(setting, list) and setting and all(_is_rule(v) for v in setting):
        return [s for rule in setting for s in setting_scalars(where, rule["value"])]
    raise UserError(
        f"{where}: {setting!r} is not a parameter value; write a number, a list of numbers "
        "(interpolated over layers), or a list of {filter: NAME_PART, value: ...} rules"
    )


def resolve(setting: Setting, tensor_name: str, t: float) -> Scalar | None:
    """The value of one setting for one tensor at depth t, or None when no filter rule matches."""
    if _is_scalar(setting):
        return setting
    if _is_rule(setting):
        setting = [setting]
    if all(_is_scalar(v) for v in setting):
        return _interpolate(setting, t)
    for rule in setting:
        pattern = rule.get("filter")
        if pattern is None or pattern == "*" or pattern in tensor_name:
            return resolve(rule["value"], tensor_name, t)
    return None


def _interpolate(values: Sequence[Scalar], t: float) -> Scalar:
    if any(isinstance(v, bool) for v in values):
        return values[int(t * (len(values) - 1))]
    scaled = t * (len(values) - 1)
    i0 = int(scaled)
    i1 = min(len(values) - 1, i0 + 1)
    frac = scaled - i0
    return (1 - frac) * values[i0] + frac * values[i1]


def resolve_first(scopes: Sequence[Mapping[str, Setting]], name: str, tensor_name: str, t: float) -> Any:
    """Highest-precedence scope that sets `name` and matches this tensor; None if none does."""
    for scope in scopes:
        if name in scope:
            value = resolve(scope[name], tensor_name, t)
            if value is not None:
                return value
    return None


def is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
