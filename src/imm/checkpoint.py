"""Loading and saving Hugging Face checkpoints, with clear errors instead of tracebacks.

"builtin" names the tiny base model that ships inside the package (imm/world/base), and
"builtin-teacher" the stronger world model beside it (imm/world/teacher)."""

from __future__ import annotations

from pathlib import Path

from imm.errors import UserError
from imm.outputs import output_dir

BUILTIN = "builtin"
BUILTIN_DIR = Path(__file__).resolve().parent / "world" / "base"
BUILTIN_TEACHER = "builtin-teacher"
TEACHER_DIR = Path(__file__).resolve().parent / "world" / "teacher"


def resolve_model_path(path: str | Path) -> Path | str:
    """A local folder as a Path; "builtin"/"builtin-teacher" as the shipped folders; else a hub id string."""
    shipped = {BUILTIN: (BUILTIN_DIR, "imm world build"), BUILTIN_TEACHER: (TEACHER_DIR, "imm world build --teacher")}
    if str(path) in shipped:
        folder, command = shipped[str(path)]
        if not (folder / "config.json").exists():
            raise UserError(f"the {path} model is missing from this install; run `{command}` to rebuild it")
        return folder
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").exists():
            raise UserError(f"{local} has no config.json; point at a Hugging Face checkpoint folder or use 'builtin'")
        return local.resolve()
    if str(path).count("/") == 1 and not str(path).startswith((".", "/", "~")):
        return str(path)  # a hub id such as Qwen/Qwen2.5-0.5B: users with network load it from the hub
    raise UserError(f"model path {path} does not exist; pass a checkpoint folder, a hub id, or 'builtin'")


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for but no CUDA GPU is visible; use device=cpu or auto")
    return device


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float32
    names = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype not in names:
        raise UserError(f"unknown dtype {dtype!r}; choose auto, {', '.join(names)}")
    return names[dtype]


def load_model(path: str | Path, *, device: str = "auto", dtype: str = "auto"):
    """(model, tokenizer) in eval mode on `device`; the tokenizer pads on the left for generation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per load is noise in a loop that loads dozens of models
    where = resolve_model_path(path)
    device = pick_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=pick_dtype(dtype, device))
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load model {path}: {first}; check the path or hub id and that it is a causal LM") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model.to(device).eval(), tokenizer


def write_checkpoint(model, tokenizer, folder: Path) -> None:
    """Model weights (safetensors), config and tokenizer into an existing folder."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def save_model(model, tokenizer, out_dir: str | Path, *, overwrite: bool = False) -> Path:
    """Write a loadable checkpoint folder atomically: it appears whole, or not at all (imm.outputs' rule)."""
    out_dir = Path(out_dir)
    with output_dir(out_dir, "checkpoint", overwrite=overwrite) as tmp:
        write_checkpoint(model, tokenizer, tmp)
    return out_dir

