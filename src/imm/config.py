"""Run configuration: frozen dataclasses per stage, composed into one `RunConfig`.

One YAML file per experiment (`imm/configs/<name>.yaml` ships `default` and `smoke`), dotted
`key=value` overrides on the command line, unknown keys rejected with their dotted path, and the
resolved config written into every run folder. Every choice the paper leaves open is a named field
here, read in exactly one place; comments mark [paper] and [ours] as docs/method.md does.

Fields made with `run_option(...)` say how to run, not what is run (device, dtype, threads, batch
sizes of generation): a run folder resumes under other run options, never under other experiment
settings (`experiment_settings`).
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from imm.arms import Arm, get_arm
from imm.errors import UserError
from imm.prompts import PromptConfig


def run_option(default: Any) -> Any:
    """A field that changes how a run computes, not what it means: resuming under another value is allowed."""
    return field(default=default, metadata={"run_option": True})

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class Backend(enum.StrEnum):
    """The generation engine of sampling and evaluation (imm.engines)."""

    HF = "hf"  # Hugging Face `generate` in this process
    VLLM = "vllm"  # vLLM in child processes


class InitFrom(enum.StrEnum):
    """Where F_t starts."""

    GENERATOR = "generator"  # G, the model that wrote D_t [paper code]
    BASE = "base"  # θ0 [ours]


class FinetuneMethod(enum.StrEnum):
    FULL = "full"  # every weight [paper]
    LORA = "lora"  # a LoRA adapter, folded into the weights [ours]


class CheckpointDtype(enum.StrEnum):
    """The dtype F_t and θ_t are saved in (imm.models.checkpoint_dtype); training itself runs in float32."""

    BASE = "base"  # θ0's own [ours]: a bfloat16 model's checkpoints take half the disk of float32 ones
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"


class ImportanceKind(enum.StrEnum):
    """The layer-importance measures (imm.analysis.importance.MEASURES has one row each)."""

    ABLATION = "ablation"
    GRADIENT = "gradient"
    INFLUENCE = "influence"


@dataclass(frozen=True)
class ModelConfig:
    base: str = "builtin"  # θ0: a checkpoint folder, a hub id, or the shipped tiny model
    teacher: str = "builtin-teacher"  # writes S_t in the distillation arms: any causal LM checkpoint [ours]
    device: str = run_option("auto")  # auto | cpu | cuda[:N]
    dtype: str = run_option("auto")  # auto | float32 | bfloat16 | float16
    threads: int = run_option(0)  # CPU threads for torch; 0 = torch's default (one per core)
    workers: int = run_option(0)  # CPU generation processes (imm.engines.hf); 0 = one per core, 1 on a GPU
    allow_pickle: bool = run_option(False)  # load pickled .bin weights, which can run code (imm.models)
    trust_remote_code: bool = run_option(False)  # run the Python code a checkpoint ships
    checkpoint_dtype: CheckpointDtype = CheckpointDtype.BASE  # F_t and θ_t saved as: base (θ0's dtype) | float32 | ...


@dataclass(frozen=True)
class DataConfig:
    train_task: str = "arith"  # questions the model self-improves on (its train split)
    train_questions: int = 1000
    id_tasks: tuple[str, ...] = ("arith",)
    ood_tasks: tuple[str, ...] = ("arith_vocab", "arith_long", "arith_muldiv", "arith_big", "arith_symbolic")


@dataclass(frozen=True)
class SampleConfig:
    k: int = 4  # [ours] K samples per question (the paper's code samples greedily three times)
    temperature: float = 0.8  # [ours]
    top_p: float = 1.0
    max_new_tokens: int = 128
    batch_size: int = run_option(64)  # sequences per generation batch
    backend: Backend = Backend.HF  # generation engine for sampling and evaluation: hf | vllm (imm.engines)
    # The vllm engine's run options (imm.engines.vllm; docs/scale.md "Sampling with vLLM"):
    vllm_python: str = run_option("")  # Python of vLLM's environment; "" = this one if it has vLLM, else .venv-vllm
    vllm_tensor_parallel: int = run_option(1)  # GPUs per vLLM engine (tensor_parallel_size)
    vllm_data_parallel: int = run_option(1)  # vLLM engines, each on its own GPUs, splitting the prompts
    vllm_gpu_memory: float = run_option(0.85)  # share of each GPU's memory vLLM takes (gpu_memory_utilization)
    vllm_max_model_len: int = run_option(0)  # prompt + answer tokens per sequence; 0 = the checkpoint's own
    vllm_executor: str = run_option("mp")  # mp: GPUs of this node; ray: GPUs of a Ray cluster (several nodes)


@dataclass(frozen=True)
class FilterConfig:
    dedup: bool = True  # [ours] drop identical completions of one question
    max_per_question: int = 0  # [ours] keep at most this many per question; 0 = no cap
    check_steps: bool = False  # [ours] also require every written step `a op b = c` to be right


@dataclass(frozen=True)
class FinetuneConfig:
    init_from: InitFrom = InitFrom.GENERATOR  # [paper code] generator: F_t starts from G; base: from θ0 [ours]
    learning_rate: float = 2e-5  # [paper code]
    epochs: int = 3  # [paper code]
    batch_size: int = 16
    grad_accum: int = 1
    warmup_ratio: float = 0.03  # [paper code]
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 512  # [paper code] tokens per example: the response always whole (imm.finetune.encode_examples)
    prompt_shots: int = 0  # [paper code: the question alone] worked examples in a training prompt [ours: more]
    bucket_chunks: int = 50  # batches per length-sorted chunk: larger = less padding, less shuffling
    method: FinetuneMethod = FinetuneMethod.FULL  # full: every weight [paper]; lora: a folded LoRA adapter [ours]
    lora_rank: int = 16
    lora_alpha: float = 32.0  # the update is scaled by lora_alpha / lora_rank
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LLAMA_PROJECTIONS  # module names: attention and MLP projections
    bf16_autocast: bool | str = run_option("auto")  # auto: on a CUDA GPU with bf16 | true | false
    gradient_checkpointing: bool = run_option(False)  # recompute activations in backward: less memory
    # Training processes through accelerate (imm.finetune_launch); 1 = this process, as ever. A run option:
    # N processes take the same steps as one up to float rounding (tests/test_finetune_processes.py).
    processes: int = run_option(1)
    accelerate_config: str = run_option("")  # accelerate's own config file (DDP, FSDP, DeepSpeed); "" = DDP
    # imm run on a CPU: an iteration's independent F_t (one per arm) train at once, a share of the threads each
    # (imm.side_by_side; the same weights as one after the other). false: one after the other, all threads each.
    side_by_side: bool = run_option(True)


@dataclass(frozen=True)
class MergeConfig:
    method: str = "imm"  # [paper code] θ_t = θ0 + λ·DARE_p(F_t − θ0); any method of imm merge [ours]
    weight: Union[float, list[float]] = 0.5  # λ [paper code]; a list is interpolated over depth [ours]
    density: float = 0.8  # keep rate 1 − p, p = 0.2 [paper code]
    parameters: dict[str, Any] = field(default_factory=dict)  # the method's other parameters (gamma, epsilon, ...)


@dataclass(frozen=True)
class EvalConfig:
    limit: int = 500  # test problems per task (300 or more keeps the noise near ±3 points)
    max_new_tokens: int = 128
    batch_size: int = run_option(64)
    diversity_k: int = 4  # samples per question for pass@k and the collapse metrics; 0 = off
    diversity_questions: int = 100  # in-domain test questions those samples are drawn for
    diversity_temperature: float = 0.8


@dataclass(frozen=True)
class AnalysisConfig:
    enabled: bool = True  # layer tables after each iteration (imm analyze)
    probe_task: str = "arith"
    probe_size: int = 64
    importance: tuple[ImportanceKind, ...] = (ImportanceKind.ABLATION, ImportanceKind.GRADIENT)


@dataclass(frozen=True)
class RunConfig:
    name: str = "default"
    out_dir: str = "runs"
    seed: int = 0
    seeds: tuple[int, ...] = ()  # several seeds: one run each, sibling folders <name>-seed<s> (`per_seed`)
    iterations: int = 3  # [paper code]
    arms: tuple[str, ...] = ("self_improve", "imm")  # names in imm.arms.ARMS
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    sampling: SampleConfig = field(default_factory=SampleConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    merge_arms: dict[str, MergeConfig] = field(default_factory=dict)  # more merging arms: name -> merge block [ours]
    eval: EvalConfig = field(default_factory=EvalConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def arm(self, name: str) -> Arm:
        return get_arm(name, self.merge_arms)

    def merge_block(self, arm: str) -> MergeConfig:
        """The merge block of a merging arm: its own under merge_arms, else the run's `merge:`."""
        return self.merge_arms.get(arm, self.merge)


def per_seed(cfg: RunConfig) -> list[RunConfig]:
    """The runs of one command: the config itself, or with `seeds` one config per seed, each a plain
    single-seed run in the sibling folder <name>-seed<s> (as `imm run seed=S name=<name>-seed<S>` makes it)."""
    if not cfg.seeds:
        return [cfg]
    return [dataclasses.replace(cfg, seed=s, seeds=(), name=f"{cfg.name}-seed{s}") for s in cfg.seeds]


def seeds_report_dir(cfg: RunConfig) -> Path:
    """Where the runs of `seeds` are reported together: <out_dir>/<name>-seeds/."""
    return Path(cfg.out_dir) / f"{cfg.name}-seeds"


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """`value` as type `hint`, or a UserError naming the dotted key and the type it needs."""
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise UserError(f"config key {where} must be one of {', '.join(m.value for m in hint)}, got {value!r}") from None
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise UserError(f"config key {where} must be a mapping of {hint.__name__} fields, got {value!r}")
        return from_dict(hint, value, where + ".")
    if origin in (Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _coerce(value, option, where)
            except UserError:
                pass
        raise UserError(f"config key {where} has the wrong type: {value!r} is none of {hint}")
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"config key {where} must be a mapping, got {value!r}")
        item = typing.get_args(hint)[1] if typing.get_args(hint) else Any
        if dataclasses.is_dataclass(item):
            return {str(k): _coerce(v, item, f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise UserError(f"config key {where} must be a list, got {value!r}")
        item = typing.get_args(hint)[0]
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads 3e-4 (no dot) as a string; it is the number everyone means
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise UserError(f"config key {where} must be {hint.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise UserError(f"unknown config key {prefix}{key}; known keys here: {', '.join(sorted(names))}")
    return cls(**{k: _coerce(v, hints[k], prefix + k) for k, v in data.items()})


def experiment_settings(cfg, prefix: str = "") -> dict:
    """The settings that define what a run computes, flat by dotted key: every field but the run options
    and the run folder's own name and place."""
    found = {}
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), prefix + f.name
        if f.metadata.get("run_option") or key in ("name", "out_dir"):
            continue
        found |= experiment_settings(value, key + ".") if dataclasses.is_dataclass(value) else {key: value}
    return found


def add_config_flag(parser, flag: str, cls: type, name: str, help: str, *, default: Any = dataclasses.MISSING) -> None:
    """A command-line flag bound to a config field: its type and default come from the dataclass, so
    `imm eval` and `imm analyze` cannot drift from `imm run` (`default=None` marks "not given")."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    hint = typing.get_type_hints(cls)[name]
    value = f.default if default is dataclasses.MISSING else default
    shown = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    shown = ",".join(shown) if isinstance(shown, tuple) else shown
    section = next(f.name for f in dataclasses.fields(RunConfig) if f.type in (cls, cls.__name__))
    kind = (lambda text: tuple(part.strip() for part in text.split(",") if part.strip())) \
        if typing.get_origin(hint) is tuple else str if typing.get_origin(hint) in (Union, types.UnionType) else hint
    parser.add_argument(flag, type=kind, default=value, help=f"{help} (default {shown}, as `imm run`'s {section}.{name})")


def plain(value: Any) -> Any:
    """A field's value as config.yaml writes it: enums as their names' strings, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (tuple, list)):
        return [plain(v) for v in value]
    return value


def to_dict(cfg) -> dict:
    """Plain nested dict of a config (tuples as lists, enums as strings), as written to config.yaml."""
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = to_dict(v) if dataclasses.is_dataclass(v) else plain(v)
        if isinstance(v, dict) and any(dataclasses.is_dataclass(x) for x in v.values()):
            out[f.name] = {k: to_dict(x) for k, x in v.items()}
    return out


def _read_yaml(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.exists():
        shipped = CONFIG_DIR / f"{name_or_path}.yaml"
        if not shipped.exists():
            names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
            raise UserError(f"config {name_or_path!r} is neither a file nor a shipped config ({names})")
        path = shipped
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise UserError(f"config {path} is not valid YAML ({str(err).splitlines()[0]}); fix the file") from None
    except (OSError, UnicodeDecodeError) as err:  # a folder, a binary file, no permission
        raise UserError(f"cannot read config {path}: {getattr(err, 'strerror', None) or err}; pass a YAML file") from None
    if not isinstance(data, dict):
        raise UserError(f"config {path} must be a mapping of keys to values, got {type(data).__name__}")
    return data


def apply_override(data: dict, override: str) -> None:
    """Set `a.b.c=value` in nested `data`; the value is read as YAML (numbers, lists, booleans)."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise UserError(f"override {override!r} must look like key=value, e.g. sampling.k=8")
    *parents, leaf = key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override {override!r}: {part} is not a section")
    try:
        node[leaf] = yaml.safe_load(raw)
    except yaml.YAMLError:
        node[leaf] = raw


def load_config(name_or_path: str = "default", overrides: tuple[str, ...] = ()) -> RunConfig:
    """The config file with its overrides, parsed; imm.preflight checks it against the stages before any work."""
    data = _read_yaml(name_or_path)
    for override in overrides:
        apply_override(data, override)
    return from_dict(RunConfig, data)
