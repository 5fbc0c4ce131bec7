"""The `hf` engine's decoding loop: Hugging Face's sampling loop, step for step, with ended rows leaving the batch.

`model.generate` computes every row of a batch until the batch's longest answer ends; short answers
then ride along for nothing (a third to a half of the steps' rows on the built-in tasks). This loop
gives each step the model inputs `generate` gives it (left padding, positions from the attention mask,
a dynamic KV cache, logits of the last position only), processes the logits with the same warpers,
draws with the same `torch.multinomial` call, ends rows by the same criteria (end token, stop string,
length) and forces the end-of-row padding `generate` forces, so the tokens and figures it returns are
`generate`'s. What differs: the prompt pass runs once per prompt rather than once per sample (its KV
cache and logits are then repeated k times; computing each prompt k times was a third of a K = 4
batch's time on the built-in model); a row whose record is complete leaves the batch (with its KV
cache) once an eighth of the batch has, and a shrunken batch keeps at least `MIN_ROWS` rows, since a
CPU's matrix kernels round differently for a few rows than for many; the KV cache is written into
room made a few positions ahead instead of being concatenated at every step. The draw is made over the
whole batch (rows that left get a fixed token), so each row's sample takes the random numbers it takes
in `generate`.

`tests/test_decode.py` checks that records equal `generate`'s bit for bit with one torch thread per
process (the CPU default: one-thread generation workers). With several threads a matrix product may
split its sums differently for a smaller batch: there texts and counts stayed equal on every record
measured and entropy figures moved by up to 3e-8 (docs/benchmarks.md).

A record is complete after its end token, or after the padding token `generate` writes the step after
a stop string ended the row (the row's count includes that step); a row ended by the length limit is
complete at the last step. A model this loop cannot drive exactly as `generate` would (an encoder-
decoder, its own input preparation, or a checkpoint generation setting that adds a logits processor)
goes through `generate`: see `supports`.
"""

from __future__ import annotations

import inspect
from typing import Sequence

import torch

MIN_ROWS = 8  # rows a shrunken batch keeps (one-thread CPU matrix products agree bit for bit from 4 rows on)
LEAVE_EVERY = 8  # ended rows leave together once they are 1/LEAVE_EVERY of the batch (each move copies the KV cache)
SLACK = 3  # KV cache room ahead of the written positions (a CPU streams keys with a gap of up to 3 positions)

# Generation settings that make `generate` add a logits processor this loop does not apply, with the value
# at which they add none.
_NO_PROCESSOR = {
    "guidance_scale": (None, 1, 1.0), "sequence_bias": (None,), "bad_words_ids": (None,),
    "forced_bos_token_id": (None,), "forced_eos_token_id": (None,), "remove_invalid_values": (None, False),
    "exponential_decay_length_penalty": (None,), "suppress_tokens": (None,), "begin_suppress_tokens": (None,),
    "top_h": (None,), "watermarking_config": (None,), "min_length": (None, 0), "min_new_tokens": (None, 0),
    "repetition_penalty": (None, 1.0), "no_repeat_ngram_size": (None, 0), "typical_p": (None, 1.0),
    "epsilon_cutoff": (None, 0.0), "eta_cutoff": (None, 0.0), "top_k": (None, 0), "min_p": (None, 0.0),
    "num_beams": (None, 1), "prefill_chunk_size": (None,), "cache_implementation": (None, "dynamic"),
}


def supports(model, settings: dict) -> bool:
    """Whether this loop gives exactly what `model.generate(**settings)` gives: a decoder-only model that
    prepares its inputs the common way and takes positions, a cache and `logits_to_keep`; settings (ours
    over the checkpoint's, `effective_settings`) that add no logits processor beyond temperature and top-p;
    an end token to pad finished rows with."""
    from transformers import GenerationMixin

    if getattr(model.config, "is_encoder_decoder", False) or None in (settings.get("eos_token_id"),
                                                                      settings.get("pad_token_id")):
        return False
    if type(model).prepare_inputs_for_generation is not GenerationMixin.prepare_inputs_for_generation:
        return False
    accepted = inspect.signature(model.forward).parameters
    if not {"position_ids", "logits_to_keep", "cache"} <= accepted.keys():
        return False
    return all(settings.get(name) in neutral for name, neutral in _NO_PROCESSOR.items())


def step_entropy(scores: torch.Tensor) -> torch.Tensor:
    """Entropy of each row's processed next-token distribution (−inf where a warper removed a token): the
    figure both ways of decoding record, so they cannot drift apart."""
    logp = torch.log_softmax(scores.float(), dim=-1)
    return -(logp.exp() * logp.nan_to_num(neginf=0.0)).sum(-1)


def _warpers(temperature: float, top_p: float):
    """What `generate` applies to the logits when sampling with these settings (greedy: nothing)."""
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

    warpers = LogitsProcessorList()
    if temperature > 0 and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if temperature > 0 and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    return warpers


def _stop_criteria(tokenizer, stop: Sequence[str]):
    from transformers import StopStringCriteria

    if not stop:
        return lambda ids: torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    criteria = StopStringCriteria(tokenizer, list(stop))
    return lambda ids: criteria(ids, None)


def _cache(model):
    """A dynamic KV cache whose layers write into room made ahead, where the model's are plain `DynamicLayer`s
    (elsewhere, as they are): `DynamicLayer` concatenates at every step, copying the whole cache (60% of a
    decoding step on the built-in model). The room is at most `SLACK` positions ahead of what is written, so
    one head's keys follow the last head's closely enough for the CPU to stream them: with more room between
    them a decoding step's attention took 1.65 times as long (docs/benchmarks.md, Findings); moving the
    cache into new room every `SLACK` + 1 steps costs less than that, and rows leaving move it anyway."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    class Growing(DynamicLayer):
        def __init__(self):
            super().__init__()
            self.length = 0

        def lazy_initialization(self, key_states, value_states):
            super().lazy_initialization(key_states, value_states)
            self.room_k, self.room_v = key_states[..., :0, :], value_states[..., :0, :]

        def update(self, key_states, value_states, *args, **kwargs):
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self.room_k.shape[-2]:  # out of room: the written positions move into new room
                self.room_k, self.room_v = (self._moved(r, None, end + SLACK) for r in (self.room_k, self.room_v))
            self.room_k[..., self.length:end, :] = key_states
            self.room_v[..., self.length:end, :] = value_states
            self.length = end
            self.keys, self.values = self.room_k[..., :end, :], self.room_v[..., :end, :]
            return self.keys, self.values

        def batch_repeat_interleave(self, repeats):
            rows = torch.arange(self.room_k.shape[0], device=self.room_k.device)
            self.batch_select_indices(rows.repeat_interleave(repeats))

        def batch_select_indices(self, indices):  # the kept rows' written positions move into new room
            room = self.length + SLACK
            self.room_k, self.room_v = (self._moved(r, indices, room) for r in (self.room_k, self.room_v))
            self.keys, self.values = self.room_k[..., :self.length, :], self.room_v[..., :self.length, :]

        def _moved(self, room, indices, size):
            """The written positions (of rows `indices`, None: all) in new room of `size` positions."""
            rows = room.shape[0] if indices is None else len(indices)
            moved = room.new_empty((rows, room.shape[1], size, room.shape[3]))
            if indices is None:
                moved[..., :self.length, :] = room[..., :self.length, :]
            else:
                torch.index_select(room[..., :self.length, :], 0, indices, out=moved[..., :self.length, :])
            return moved

    cache = DynamicCache(config=model.config)
    if all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [Growing() for _ in cache.layers]
    return cache


@torch.no_grad()
def decode(model, tokenizer, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, k: int, temperature: float,
           top_p: float, max_new_tokens: int, stop: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(new tokens, entropies), as `generate` returns them: (batch·k, steps) token ids, padded after each
    row's end, and (steps, batch·k) entropies of the processed next-token distributions (0 where a row
    had left the batch, a step its record does not count)."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    sample = temperature > 0
    warpers, stopped = _warpers(temperature, top_p), _stop_criteria(tokenizer, stop)
    positions = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    cache = _cache(model)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, cache=cache,
                use_cache=True, logits_to_keep=1)
    logits = out.logits[:, -1]
    if k > 1:  # a prompt's k rows share its prompt pass: computed once, then repeated as generate expands them
        cache.batch_repeat_interleave(k)
        logits = logits.repeat_interleave(k, dim=0)
    ids = input_ids.repeat_interleave(k, dim=0)
    mask = attention_mask.repeat_interleave(k, dim=0)
    positions = positions.repeat_interleave(k, dim=0)
    size, device = ids.shape[0], ids.device
    new = torch.full((size, max_new_tokens), pad, dtype=ids.dtype, device=device)
    entropy = torch.zeros((max_new_tokens, size), dtype=torch.float32, device=device)
    rows = torch.arange(size, device=device)  # the batch row of each row still computed
    live = torch.ones(size, dtype=torch.bool, device=device)  # its record still takes steps
    unfinished = torch.ones(size, dtype=torch.bool, device=device)  # as generate's unfinished_sequences
    steps = 0
    for step in range(max_new_tokens):
        scores = warpers(ids, logits.to(copy=True, dtype=torch.float32))
        entropy[step, rows[live]] = step_entropy(scores)[live]
        if sample:
            probs = torch.zeros((size, scores.shape[1]), dtype=scores.dtype, device=device)
            probs[:, pad] = 1.0  # rows that left: a fixed token; the draw still spends their random numbers
            probs[rows] = torch.softmax(scores, dim=-1)
            chosen = torch.multinomial(probs, num_samples=1).squeeze(1)[rows]
        else:
            chosen = torch.argmax(scores, dim=-1)
        chosen = torch.where(unfinished, chosen, torch.full_like(chosen, pad))
        new[rows[live], step] = chosen[live]
        ids = torch.cat([ids, chosen[:, None]], dim=-1)
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        positions = positions[:, -1:] + 1
        unfinished &= ~((chosen == eos) | stopped(ids))
        steps = step + 1
        if not unfinished.any() or steps == max_new_tokens:
            break
        live &= (chosen != eos) & (chosen != pad)  # a record ends at its end token or forced padding
        done = ~live & ~unfinished  # nothing of it is needed any more, not even to keep the loop going
        if done.any() and int(done.sum()) * LEAVE_EVERY >= len(rows) and len(rows) > MIN_ROWS:
            keep = (~done).nonzero().squeeze(1)
            if len(keep) < MIN_ROWS:  # fill up with rows that are done, in order
                keep = torch.cat([keep, done.nonzero().squeeze(1)[:MIN_ROWS - len(keep)]]).sort().values
            cache.batch_select_indices(keep)
            rows, live, unfinished = rows[keep], live[keep], unfinished[keep]
            ids, mask, positions, chosen = ids[keep], mask[keep], positions[keep], chosen[keep]
        logits = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=positions, cache=cache,
                       use_cache=True, logits_to_keep=1).logits[:, -1]
    return new[:, :steps], entropy[:steps]
