"""The tiny random Llama the tests build in code (never downloaded): one builder, sized by its arguments.

A test whose numbers depend on the model passes its sizes and seed here explicitly; the defaults are the
common 2-block, 32-wide model with a 64-token vocabulary.
"""

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(vocab: int = 64, *, hidden: int = 32, intermediate: int | None = None, layers: int = 2,
               heads: int = 4, kv_heads: int | None = None, seed: int = 0, tokenizer=None,
               grid: float | None = None, **fields) -> LlamaForCausalLM:
    """A random Llama built right after `torch.manual_seed(seed)`.

    `intermediate` defaults to 2·hidden and `kv_heads` to `heads`. A `tokenizer` sets the vocabulary size and the
    pad and eos ids (the pad row of the embedding is initialised to zero). `grid` rounds every weight to a multiple
    of it: with 2^-10, adding 1/8 or 1/16 stays exact in float32. `fields` are any other LlamaConfig fields.
    """
    if tokenizer is not None:
        vocab = len(tokenizer)
        fields = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id} | fields
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate or 2 * hidden, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads or heads, **fields))
    if grid is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.round(p / grid) * grid)
    return model
