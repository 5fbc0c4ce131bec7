"""What an engine is asked and what it returns: the records every engine shares (imm.engines)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Completion:
    text: str  # generated text, cut at the first stop string
    num_tokens: int  # generated tokens kept (up to and including the end of the answer)
    mean_entropy: float  # mean entropy (nats) of the next-token distribution over those tokens (per engine)


@dataclass(frozen=True)
class Request:
    """k completions of each prompt with one set of settings: what one `generate` call asks for."""

    prompts: Sequence[str]
    k: int
    temperature: float
    top_p: float
    max_new_tokens: int
    stop: Sequence[str]
    seed: int
    desc: str | None = None

    def options(self) -> dict:
        return dict(k=self.k, temperature=self.temperature, top_p=self.top_p, max_new_tokens=self.max_new_tokens,
                    stop=self.stop, seed=self.seed, desc=self.desc)
