"""Models: resolving, loading and saving Hugging Face checkpoints, with clear errors instead of tracebacks.

"builtin" names the tiny base model that ships inside the package (imm/world/base), and
"builtin-teacher" the stronger world model beside it (imm/world/teacher).

Checkpoints are untrusted input: weights load only from safetensors (a pickled `.bin` can run code when
unpickled) and a checkpoint's own Python code never runs, unless the `LoadPolicy` in force allows it
(`imm run` model.allow_pickle / model.trust_remote_code, `imm eval --allow-pickle / --trust-remote-code`)."""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from imm.config import CheckpointDtype
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
    if str(path).partition("@")[0].count("/") == 1 and not str(path).startswith((".", "/", "~")):
        return str(path)  # a hub id such as Qwen/Qwen2.5-0.5B[@revision]: fetched by `fetch_model`
    raise UserError(f"model path {path} does not exist; pass a checkpoint folder, a hub id, or 'builtin'")


@dataclass(frozen=True)
class ResolvedModel:
    """A model as given (`spec`) and the local folder every stage reads; `revision` is the hub commit."""

    spec: str
    folder: Path
    revision: str | None = None


# What a checkpoint needs: configs, safetensors weights, tokenizer files (never pickled .bin weights).
MODEL_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]


def fetch_model(spec: str | Path) -> ResolvedModel:
    """A folder, a shipped name, or a hub id `org/name[@revision]` as a local folder, resolved once.

    A hub id goes through huggingface_hub's cache (HF_HOME, HF_HUB_OFFLINE): downloaded with a network,
    read from the cache without one; offline with no cached copy is one clear error before any work."""
    where = resolve_model_path(spec)
    if isinstance(where, Path):
        return ResolvedModel(str(spec), where)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo, _, revision = str(spec).partition("@")
    try:
        folder = Path(snapshot_download(repo, revision=revision or None, allow_patterns=MODEL_FILES))
    except LocalEntryNotFoundError:
        raise UserError(f"model {spec} is not in the Hugging Face cache and the hub cannot be reached; download it "
                        f"once with a network (or set HF_HOME to a cache that has it), or pass a local folder") from None
    except (HfHubHTTPError, OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"cannot fetch model {spec} from the hub: {first}; check the id and revision") from None
    if not (folder / "config.json").is_file():
        raise UserError(f"model {spec} has no config.json at {folder}; pass a causal LM checkpoint")
    return ResolvedModel(str(spec), folder, folder.name)  # the snapshot folder is named after its commit


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


_SAVED_AS = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}  # θ0's stored dtype -> the name written


def checkpoint_dtype(setting: str, base: str | Path) -> str:
    """The dtype F_t and θ_t are written in (model.checkpoint_dtype, imm.config.CheckpointDtype): `setting`
    itself, or for "base" the dtype holding most of θ0's floating weights (float32 where that is none of
    float32, bfloat16 and float16)."""
    from imm.tensor_files import tensor_table

    if setting not in set(CheckpointDtype):
        raise UserError(f"model.checkpoint_dtype must be one of {', '.join(CheckpointDtype)}, got {setting!r}")
    if setting != CheckpointDtype.BASE:
        return str(setting)
    sizes: dict[str, int] = {}
    for entry in tensor_table(Path(resolve_model_path(base))).values():
        sizes[entry.dtype] = sizes.get(entry.dtype, 0) + math.prod(entry.shape)
    floating = {name: n for name, n in sizes.items() if name in _SAVED_AS}
    return _SAVED_AS[max(floating, key=floating.get)] if floating else "float32"


@dataclass(frozen=True)
class LoadPolicy:
    """What loading a checkpoint may do beyond reading safetensors: both off unless a user asks."""

    allow_pickle: bool = False  # read pickled weights (pytorch_model.bin), which can run code
    trust_remote_code: bool = False  # run the Python files a checkpoint ships (config auto_map)


_POLICY: ContextVar[LoadPolicy] = ContextVar("load_policy", default=LoadPolicy())
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@contextmanager
def load_policy(policy: LoadPolicy) -> Iterator[None]:
    """Every `load_model` inside the block follows `policy` (a run sets it once for all its stages)."""
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


def current_load_policy() -> LoadPolicy:
    """The policy in force (a stage run in child processes hands it on to them)."""
    return _POLICY.get()


def check_weight_files(folder: Path, allow_pickle: bool = False) -> None:
    """Refuse, before any load, a folder whose weights are only pickles (unless allowed) or whose
    safetensors files are corrupt or truncated (checked from their headers and sizes)."""
    from imm.tensor_files import tensor_table

    folder = Path(folder)
    try:
        json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass  # resolve_model_path names a folder without config.json
    except (OSError, ValueError) as err:
        raise UserError(f"{folder / 'config.json'} is not a readable JSON file ({err}); re-copy the checkpoint") from None
    if any(folder.glob("*.safetensors")):
        tensor_table(folder)
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles and not allow_pickle:
        raise UserError(f"{folder} holds its weights only as pickle files ({', '.join(pickles[:2])}), which can run "
                        f"code when loaded; convert them to safetensors where you trust them, or allow it with "
                        f"--allow-pickle (imm eval) or model.allow_pickle=true (imm run)")


def load_tokenizer(path: str | Path):
    """The checkpoint's tokenizer alone (prompts, chat template), under the load policy in force."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_model_path(path), trust_remote_code=_POLICY.get().trust_remote_code)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load the tokenizer of {path}: {first}; check the path or hub id") from None


def load_model(path: str | Path, *, device: str = "auto", dtype: str = "auto"):
    """(model, tokenizer) in eval mode on `device`; the tokenizer pads on the left for generation."""
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per load is noise in a loop that loads dozens of models
    policy = _POLICY.get()
    where = resolve_model_path(path)
    if isinstance(where, Path):
        check_weight_files(where, policy.allow_pickle)
    device = pick_device(device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=policy.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=pick_dtype(dtype, device),
                                                     use_safetensors=None if policy.allow_pickle else True,
                                                     trust_remote_code=policy.trust_remote_code)
    except (OSError, ValueError, SafetensorError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load model {path}: {first}; check the path or hub id and that it is a causal LM") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model.to(device).eval(), tokenizer


def write_checkpoint(model, tokenizer, folder: Path, state_dict: dict | None = None) -> None:
    """Model weights (safetensors; `state_dict` where the model's own are sharded), config and tokenizer into
    an existing folder."""
    model.save_pretrained(folder, safe_serialization=True, state_dict=state_dict)
    tokenizer.save_pretrained(folder)


def save_model(model, tokenizer, out_dir: str | Path, *, overwrite: bool = False, state_dict: dict | None = None) -> Path:
    """Write a loadable checkpoint folder atomically: it appears whole, or not at all (imm.outputs' rule).
    `state_dict`: the whole weights where `model` holds only a shard (FSDP, ZeRO: imm.finetune_launch)."""
    out_dir = Path(out_dir)
    weights = sum(t.numel() * t.element_size() for t in (state_dict or model.state_dict()).values())
    with output_dir(out_dir, "checkpoint", overwrite=overwrite, needed=weights) as tmp:
        write_checkpoint(model, tokenizer, tmp, state_dict)
    return out_dir

