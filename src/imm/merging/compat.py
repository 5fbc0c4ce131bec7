"""Can these checkpoints be merged? Answered from config.json and safetensors headers alone."""

from __future__ import annotations

from typing import Sequence

from imm.errors import UserError
from imm.tensor_files import Checkpoint

_EMBEDDING_HINTS = ("embed", "lm_head", "wte", "word_embeddings", "output.weight")


def _names(ckpt: Checkpoint) -> set[str]:
    """Stored tensor names, without a tied lm_head (some savers write it, some do not)."""
    names = set(ckpt.tensors)
    if ckpt.tied_embeddings:
        names.discard("lm_head.weight")
    return names


def _few(names) -> str:
    names = sorted(names)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def check_compatible(reference: Checkpoint, models: Sequence[Checkpoint]) -> None:
    """Raise UserError naming the first model that differs from the reference, and how."""
    for model in models:
        if model is reference:
            continue
        _check_architecture(reference, model)
        _check_vocabulary(reference, model)
        _check_tensor_names(reference, model)
        _check_shapes(reference, model)


def _check_architecture(reference: Checkpoint, model: Checkpoint) -> None:
    for key in ("model_type", "architectures"):
        ours, theirs = reference.config.get(key), model.config.get(key)
        if ours != theirs:
            raise UserError(f"{model.path} has {key} {theirs!r} but {reference.path} has {ours!r}; "
                            "merge checkpoints of one architecture (fine-tunes of the same base)")


def _check_vocabulary(reference: Checkpoint, model: Checkpoint) -> None:
    ours, theirs = reference.config.get("vocab_size"), model.config.get("vocab_size")
    differing = [name for name in _names(reference) & _names(model)
                 if any(h in name for h in _EMBEDDING_HINTS)
                 and reference.tensors[name].shape != model.tensors[name].shape]
    if ours != theirs or differing:
        shapes = "; ".join(f"{n} {reference.tensors[n].shape} vs {model.tensors[n].shape}" for n in sorted(differing))
        raise UserError(f"vocabulary size differs: {reference.path} has {ours}, {model.path} has {theirs}"
                        f"{' (' + shapes + ')' if shapes else ''}; resize both to one vocabulary with "
                        "model.resize_token_embeddings(N) and save again before merging")


def _check_tensor_names(reference: Checkpoint, model: Checkpoint) -> None:
    missing = _names(reference) - _names(model)
    if missing:
        raise UserError(f"{model.path} lacks {len(missing)} tensor(s) of {reference.path}: {_few(missing)}; "
                        "merge checkpoints of the same architecture and size")
    extra = _names(model) - _names(reference)
    if extra:
        raise UserError(f"{model.path} has {len(extra)} tensor(s) that {reference.path} lacks: {_few(extra)}; "
                        "merge checkpoints of the same architecture and size")
    if not reference.tied_embeddings and model.tied_embeddings:
        raise UserError(f"{model.path} ties lm_head to the embeddings but {reference.path} does not; "
                        "merge checkpoints with the same tie_word_embeddings")


def _check_shapes(reference: Checkpoint, model: Checkpoint) -> None:
    wrong = [n for n in _names(reference) if reference.tensors[n].shape != model.tensors[n].shape]
    if wrong:
        first = sorted(wrong)[0]
        raise UserError(f"{len(wrong)} tensor shape(s) differ between {model.path} and {reference.path}, e.g. "
                        f"{first} {model.tensors[first].shape} vs {reference.tensors[first].shape}; "
                        "merge checkpoints of the same architecture and size")
