"""What an engine is asked and what it returns: the records every engine shares (imm.engines)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=len(text))
    return text[:cut]


@dataclass(frozen=True)
class Completion:
    text: str  # generated text, cut at the first stop string
    num_tokens: int  # generated tokens kept (up to and including the end of the answer)
    mean_entropy: float  # mean entropy (nats) of the next-token distribution over those tokens (per engine)

    @classmethod
    def of(cls, tokenizer, ids: list[int], entropy: Sequence[float], stop: Sequence[str]) -> Completion:
        """One generated row as every engine records it: its tokens up to and including the first end token (eos
        or pad), decoded and cut at the first stop string, and the mean of `entropy` (one figure per generated
        token, as the engine defines it) over those kept tokens."""
        n = len(ids)
        for end in (tokenizer.eos_token_id, tokenizer.pad_token_id):
            if end in ids:
                n = min(n, ids.index(end) + 1)
        text = cut_at_stop(tokenizer.decode(ids[:n], skip_special_tokens=True), stop)
        return cls(text=text, num_tokens=n, mean_entropy=sum(entropy[:n]) / n if n else 0.0)


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
