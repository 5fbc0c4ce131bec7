"""The one checkpoint I/O layer: which block a tensor is in, and reading what was written."""

import math

import pytest
import torch

from imm.analysis.weights import Weights, locate
from imm.merging.parameters import depth
from imm.tensor_files import OutputTensor, block_index, plan_shards, split_block, tensor_table, write_shards

IN_BLOCKS = [
    ("model.layers.3.self_attn.q_proj.weight", 3),  # Llama, Qwen, Mistral
    ("transformer.h.11.attn.c_attn.bias", 11),  # GPT-2
    ("layers.0.attention.wq.weight", 0),  # Meta's own Llama names
    ("encoder.layer.2.output.dense.weight", 2),  # BERT style
    ("blocks.5.ln.weight", 5),
    ("model.layers.1.mlp.experts.h.7.weight", 1),  # the first container names the block
]
OUTSIDE = ["model.embed_tokens.weight", "lm_head.weight", "model.norm.weight", "transformer.wte.weight",
           "model.sublayers.3.w.weight", "model.layers.3", "model.layers.x.w.weight", "hh.2.w.weight"]


@pytest.mark.parametrize("name,index", IN_BLOCKS)
def test_block_index_of_tensors_inside_blocks(name, index):
    assert block_index(name) == index


@pytest.mark.parametrize("name", OUTSIDE)
def test_block_index_is_none_outside_blocks(name):
    assert block_index(name) is None


def test_split_block_gives_the_name_inside_the_block():
    assert split_block("model.layers.3.self_attn.q_proj.weight") == (3, "self_attn.q_proj.weight")
    assert split_block("encoder.layer.12.output.dense.bias") == (12, "output.dense.bias")


def test_merge_depth_and_analysis_layer_agree_on_every_name():
    """One rule for both: with 5 blocks, block l of the merge sits at depth l/4, and the analysis files the
    tensor under layer str(l); outside blocks the merge uses depth 0 and the analysis no block index."""
    for name, index in IN_BLOCKS:
        assert depth(name, 5) == index / 4
        assert locate(name)[0] == str(index)
    for name in OUTSIDE:
        assert depth(name, 5) == 0.0
        assert not locate(name)[0].isdigit()
    assert locate("encoder.layer.2.output.dense.weight") == ("2", "output.dense")


def test_written_shards_read_back_whole_and_in_chunks(tmp_path, monkeypatch):
    """Three float32 tensors of 6, 12 and 1 entries (24, 48, 4 bytes), shards of at most 60 bytes: 24 + 48
    overflows, 48 + 4 = 52 does not, so the shards are [a], [b, s], with an index file. The analysis reads
    at most 5 entries at a time in whole rows: b's 4 rows of 3 come as 3 + 3 + 3 + 3."""
    values = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.arange(12.0).reshape(4, 3) / 4, "s": torch.tensor(2.5)}
    outputs = [OutputTensor(name, torch.float32, tuple(t.shape)) for name, t in values.items()]
    shards = plan_shards(outputs, max_shard_bytes=60)
    assert [[o.name for o in shard] for shard in shards] == [["a"], ["b", "s"]]
    write_shards(tmp_path, shards, lambda out: [values[out.name]])
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert {name: e.shape for name, e in tensor_table(tmp_path).items()} == {"a": (2, 3), "b": (4, 3), "s": ()}
    monkeypatch.setattr("imm.analysis.weights.CHUNK_ELEMENTS", 5)
    weights = Weights(tmp_path)
    pieces = [piece.clone() for piece in weights.chunks("b")]
    assert [p.numel() for p in pieces] == [3, 3, 3, 3]
    assert torch.equal(torch.cat(pieces), values["b"].reshape(-1).double())
    assert [float(p) for p in weights.chunks("s")] == [2.5]
    assert math.prod(weights.shapes["a"]) == 6
