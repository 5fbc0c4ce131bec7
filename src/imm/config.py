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
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from imm.arms import Arm, get_arm
from imm.errors import UserError, problems_of, several
from imm.prompts import PromptConfig
from imm.ranges import Range, setting


def run_option(default: Any, low: float | None = None, high: float | None = None) -> Any:
    """A field that changes how a run computes, not what it means: resuming under another value is allowed."""
    if low is not None:
        return setting(default, low, high, run=True)
    return field(default=default, metadata={"run_option": True})


BIG = 2**31 - 1  # the largest count or seed any setting takes (a C int: torch, numpy and vLLM accept it)
TOKENS = 32_768  # the most new tokens per answer: a longer ask is a typo, and allocates for all of them

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
    threads: int = run_option(0, 0, 4096)  # CPU threads for torch; 0 = torch's default (one per core)
    workers: int = run_option(0, 0, 4096)  # CPU generation processes (imm.engines.hf); 0 = one per core, 1 on a GPU
    allow_pickle: bool = run_option(False)  # load pickled .bin weights, which can run code (imm.models)
    trust_remote_code: bool = run_option(False)  # run the Python code a checkpoint ships
    checkpoint_dtype: CheckpointDtype = CheckpointDtype.BASE  # F_t and θ_t saved as: base (θ0's dtype) | float32 | ...


@dataclass(frozen=True)
class DataConfig:
    train_task: str = "arith"  # questions the model self-improves on (its train split)
    train_questions: int = setting(1000, 1, BIG)
    id_tasks: tuple[str, ...] = ("arith",)
    ood_tasks: tuple[str, ...] = ("arith_vocab", "arith_long", "arith_muldiv", "arith_big", "arith_symbolic")


@dataclass(frozen=True)
class SampleConfig:
    k: int = setting(4, 1, 1024)  # [ours] K samples per question (the paper's code samples greedily three times)
    temperature: float = setting(0.8, 0, 100)  # [ours]
    top_p: float = setting(1.0, 0, 1, low_open=True)
    max_new_tokens: int = setting(128, 1, TOKENS)
    batch_size: int = run_option(64, 1, 65_536)  # sequences per generation batch
    backend: Backend = Backend.HF  # generation engine for sampling and evaluation: hf | vllm (imm.engines)
    # The vllm engine's run options (imm.engines.vllm; docs/scale.md "Sampling with vLLM"):
    vllm_python: str = run_option("")  # Python of vLLM's environment; "" = this one if it has vLLM, else .venv-vllm
    vllm_tensor_parallel: int = run_option(1, 1, 4096)  # GPUs per vLLM engine (tensor_parallel_size)
    vllm_data_parallel: int = run_option(1, 1, 4096)  # vLLM engines, each on its own GPUs, splitting the prompts
    vllm_gpu_memory: float = setting(0.85, 0, 1, low_open=True, run=True)  # share of each GPU's memory vLLM takes (gpu_memory_utilization)
    vllm_max_model_len: int = run_option(0, 0, BIG)  # prompt + answer tokens per sequence; 0 = the checkpoint's own
    vllm_executor: str = run_option("mp")  # mp: GPUs of this node; ray: GPUs of a Ray cluster (several nodes)


@dataclass(frozen=True)
class FilterConfig:
    dedup: bool = True  # [ours] drop identical completions of one question
    max_per_question: int = setting(0, 0, 1024)  # [ours] keep at most this many per question; 0 = no cap
    check_steps: bool = False  # [ours] also require every written step `a op b = c` to be right


@dataclass(frozen=True)
class FinetuneConfig:
    init_from: InitFrom = InitFrom.GENERATOR  # [paper code] generator: F_t starts from G; base: from θ0 [ours]
    learning_rate: float = setting(2e-5, 0, 1, low_open=True)  # [paper code]
    epochs: int = setting(3, 1, 10_000)  # [paper code]
    batch_size: int = setting(16, 1, 65_536)
    grad_accum: int = setting(1, 1, 65_536)
    warmup_ratio: float = setting(0.03, 0, 1)  # [paper code]
    weight_decay: float = setting(0.0, 0, 1)
    max_grad_norm: float = setting(1.0, 0, 1e6, low_open=True)
    max_length: int = setting(512, 16, 1_048_576)  # [paper code] tokens per example: the response always whole (imm.finetune.encode_examples)
    prompt_shots: int = setting(0, 0, 256)  # [paper code: the question alone] worked examples in a training prompt [ours: more]
    bucket_chunks: int = setting(50, 1, BIG)  # batches per length-sorted chunk: larger = less padding, less shuffling
    method: FinetuneMethod = FinetuneMethod.FULL  # full: every weight [paper]; lora: a folded LoRA adapter [ours]
    lora_rank: int = setting(16, 1, 65_536)
    lora_alpha: float = setting(32.0, 0, 1e6, low_open=True)  # the update is scaled by lora_alpha / lora_rank
    lora_dropout: float = setting(0.05, 0, 1, high_open=True)
    lora_targets: tuple[str, ...] = LLAMA_PROJECTIONS  # module names: attention and MLP projections
    bf16_autocast: bool | str = run_option("auto")  # auto: on a CUDA GPU with bf16 | true | false
    gradient_checkpointing: bool = run_option(False)  # recompute activations in backward: less memory
    # Training processes through accelerate (imm.finetune_launch); 1 = this process, as ever. A run option:
    # N processes take the same steps as one up to float rounding (tests/test_finetune_processes.py).
    processes: int = run_option(1, 1, 4096)
    accelerate_config: str = run_option("")  # accelerate's own config file (DDP, FSDP, DeepSpeed); "" = DDP
    # imm run on a CPU: an iteration's independent F_t (one per arm) train at once, a share of the threads each
    # (imm.side_by_side; the same weights as one after the other). false: one after the other, all threads each.
    side_by_side: bool = run_option(True)


@dataclass(frozen=True)
class MergeConfig:
    method: str = "imm"  # [paper code] θ_t = θ0 + λ·DARE_p(F_t − θ0); any method of imm merge [ours]
    weight: Union[float, list[float]] = setting(0.5, -100, 100)  # λ [paper code]; a list is interpolated over depth [ours]
    density: float = setting(0.8, 0, 1, low_open=True)  # keep rate 1 − p, p = 0.2 [paper code]
    parameters: dict[str, Any] = field(default_factory=dict)  # the method's other parameters (gamma, epsilon, ...)


@dataclass(frozen=True)
class EvalConfig:
    limit: int = setting(500, 1, BIG)  # test problems per task (300 or more keeps the noise near ±3 points)
    max_new_tokens: int = setting(128, 1, TOKENS)
    batch_size: int = run_option(64, 1, 65_536)
    diversity_k: int = setting(4, 0, 1024)  # samples per question for pass@k and the collapse metrics; 0 = off
    diversity_questions: int = setting(100, 0, BIG)  # in-domain test questions those samples are drawn for
    diversity_temperature: float = setting(0.8, 0, 100)


@dataclass(frozen=True)
class AnalysisConfig:
    enabled: bool = True  # layer tables after each iteration (imm analyze)
    probe_task: str = "arith"
    probe_size: int = setting(64, 1, 1_000_000)
    importance: tuple[ImportanceKind, ...] = (ImportanceKind.ABLATION, ImportanceKind.GRADIENT)


@dataclass(frozen=True)
class RunConfig:
    name: str = "default"
    out_dir: str = "runs"
    seed: int = setting(0, 0, BIG)
    seeds: tuple[int, ...] = setting((), 0, BIG)  # several seeds: one run each, sibling folders <name>-seed<s> (`per_seed`)
    iterations: int = setting(3, 1, 1000)  # [paper code]
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
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"config key {where} must be a finite number, got {value!r}")
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
    if hint is float and not math.isfinite(value):
        raise UserError(f"config key {where} must be a finite number, got {value!r}")
    return value


def from_dict(cls: type, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise UserError(f"unknown config key {prefix}{key}; known keys here: {', '.join(sorted(names))}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values, found = {}, []
    for key, value in data.items():  # every problem of every key, reported together
        try:
            values[key] = _coerce(value, hints[key], prefix + key)
            if (bounds := fields[key].metadata.get("range")) is not None:
                _check_range(values[key], bounds, prefix + key)
        except UserError as err:
            found += [p for p in problems_of(err) if p not in found]
    if found:
        raise several(found)
    return cls(**values)


def check_ranges(block: Any, prefix: str = "") -> None:
    """Every number field of a config block (nested blocks included) within its declared range: the check
    parsing makes, for a config built in code."""
    for f in dataclasses.fields(block):
        value = getattr(block, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value, f"{prefix}{f.name}.")
        elif (bounds := f.metadata.get("range")) is not None:
            _check_range(value, bounds, prefix + f.name)


def _check_range(value: Any, bounds: Range, where: str) -> None:
    for item in value if isinstance(value, (tuple, list)) else (value,):
        if item not in bounds:
            raise UserError(f"config key {where} must be in {bounds}, got {item!r}; set a value in that range")


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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise UserError(f"config {path} is not valid YAML ({str(err).splitlines()[0]}); fix the file") from None
    except (OSError, UnicodeDecodeError) as err:  # a folder, a binary file, no permission
        raise UserError(f"cannot read config {path}: {getattr(err, 'strerror', None) or err}; pass a YAML file") from None
    if not isinstance(data, dict):
        shown = "an empty file" if data is None else f"a {type(data).__name__}"
        raise UserError(f"config {path} must be a mapping of keys to values (e.g. iterations: 3), got {shown}")
    data.pop("resolved", None)  # a run's saved config.yaml: where its models were found, not a setting
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
