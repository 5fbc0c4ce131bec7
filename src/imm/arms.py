"""The arms of an experiment, as data: one record per arm says how its iteration differs.

    arm            S_t written by     θ_t                         next G
    self_improve   G                  F_t                         θ_t
    imm            G                  θ0 + λ·M(F_t − θ0)  [paper] θ_t
    distill        the teacher        F_t                         θ_t
    distill_imm    the teacher        θ0 + λ·M(F_t − θ0)  [paper] θ_t

A run may add merging arms of its own (`merge_arms` in the config: a name and a merge block each): each is
the `imm` arm with that block, so several merge-back operators run side by side and share iteration 1. Such
an arm evaluates its θ_t only; its F_t is evaluated at t = 1, where every arm shares it.

G is the model the next iteration samples from (self-improvement) and fine-tunes from when
`finetune.init_from` is `generator` [paper code]. A distillation arm's G is its student: the teacher
writes every iteration's solutions and the student keeps learning from its own θ_t. The merge block
is the run's `merge:` section; docs/method.md §2 is the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Collection

from imm.errors import UserError


class Stage(StrEnum):
    """The loop's stages (docs/method.md §2), in the order an iteration runs them."""

    SAMPLE = "sample"  # S_t
    VERIFY = "verify"  # D_t
    FINETUNE = "finetune"  # F_t
    MERGE = "merge"  # θ_t
    EVALUATE = "evaluate"
    ANALYSE = "analyse"


class Source(str, Enum):
    """Who writes S_t."""

    GENERATOR = "generator"  # G, the arm's own current model (self-improvement)
    TEACHER = "teacher"  # model.teacher, the same every iteration (distillation)


class NextGenerator(str, Enum):
    """Which of the iteration's models becomes G."""

    THETA = "theta"  # θ_t: the merged model where the arm merges, else F_t [paper]
    FINETUNED = "finetuned"  # F_t even where the arm merges (θ_t is then only evaluated)


@dataclass(frozen=True)
class Arm:
    name: str
    samples_from: Source
    merges: bool  # θ_t = θ0 + λ·M(F_t − θ0) with the run's merge block; else θ_t = F_t
    next_generator: NextGenerator = NextGenerator.THETA
    evaluates_finetuned: bool = True  # False: where F_t differs from other arms' (t ≥ 2), only θ_t is evaluated


ARMS: dict[str, Arm] = {arm.name: arm for arm in (
    Arm("self_improve", Source.GENERATOR, merges=False),
    Arm("imm", Source.GENERATOR, merges=True),
    Arm("distill", Source.TEACHER, merges=False),
    Arm("distill_imm", Source.TEACHER, merges=True),
)}


def get_arm(name: str, merge_arms: Collection[str] = ()) -> Arm:
    """The arm named `name`: a built-in one, or one of the run's `merge_arms` (IMM's loop, its own merge block)."""
    if name in merge_arms:  # F_t is only its merge's input: θ_t alone is evaluated (half the evaluation)
        return Arm(name, Source.GENERATOR, merges=True, evaluates_finetuned=False)
    if name not in ARMS:
        raise UserError(f"unknown arm {name!r}; choose among {', '.join(ARMS)}, e.g. arms=[self_improve,imm], "
                        "or name a merging arm under merge_arms")
    return ARMS[name]


def check_arms(names: tuple[str, ...], merge_arms: Collection[str] = ()) -> None:
    """At least one arm, each known and listed once."""
    if not names:
        raise UserError(f"arms must name at least one of {list(ARMS)}")
    for name in names:
        get_arm(name, merge_arms)
    if len(set(names)) != len(names):
        raise UserError(f"arms lists an arm twice: {list(names)}; list each once")


def needs_teacher(names: tuple[str, ...], merge_arms: Collection[str] = ()) -> bool:
    return any(get_arm(name, merge_arms).samples_from is Source.TEACHER for name in names)


def shared_stages(a: Arm, b: Arm, t: int, init_from_base: bool) -> tuple[Stage, ...]:
    """The stages of iteration t whose outputs arms `a` and `b` have in common (same inputs, same seeds).

    S_t and D_t match when both arms sample from the teacher, or from θ0 (every G is θ0 at t = 1);
    F_t and its evaluation match as well when the fine-tune also starts from the same model (θ0)."""
    same_writer = a.samples_from is b.samples_from and (a.samples_from is Source.TEACHER or t == 1)
    if not same_writer:
        return ()
    if t == 1 or init_from_base:
        return Stage.SAMPLE, Stage.VERIFY, Stage.FINETUNE, Stage.EVALUATE
    return Stage.SAMPLE, Stage.VERIFY
