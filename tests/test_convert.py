"""`imm convert --gguf`: a GGUF file written here from a tiny random Llama converts back to exactly its
weights and a working tokenizer; bad inputs are one line and exit 2, before anything is loaded.

The GGUF is written as llama.cpp's converter writes one: tensors renamed (`blk.N.attn_q.weight`, ...),
and the rows of q and k permuted so that rotary halves interleave (convert_hf_to_gguf's `permute`).
transformers undoes that on load, so exact equality with the model we started from checks the path.
"""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from imm.cli import main
from imm.outputs import MARKER

from tiny import tiny_llama

gguf = pytest.importorskip("gguf", reason="imm convert needs the gguf package (a dependency of imm)")

HEADS, KV_HEADS = 4, 2
BLOCK_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
               "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down",
               "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def byte_tokens() -> list[str]:
    """GPT-2's printable spelling of the 256 bytes (its bytes_to_unicode), then an end-of-text token."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    spelled, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            spelled[byte] = chr(byte)
        else:
            spelled[byte], extra = chr(256 + extra), extra + 1
    return [spelled[b] for b in range(256)] + ["<|endoftext|>"]


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order: (out, in) rows regrouped from [half 1 | half 2] per head to interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(the random Llama, the path of the GGUF file written from it)."""
    tokens = byte_tokens()
    model = tiny_llama(len(tokens), heads=HEADS, kv_heads=KV_HEADS, max_position_embeddings=128, tie_word_embeddings=False)
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(128), w.add_block_count(2), w.add_embedding_length(32), w.add_feed_forward_length(64)
    w.add_head_count(HEADS), w.add_head_count_kv(KV_HEADS), w.add_layer_norm_rms_eps(1e-6), w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2"), w.add_token_list(tokens), w.add_token_types([1] * 256 + [3])
    w.add_token_merges([]), w.add_token_scores([0.0] * len(tokens)), w.add_eos_token_id(256), w.add_bos_token_id(256)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    for i in range(2):
        for hf, name in BLOCK_NAMES.items():
            t = sd[next(k for k in sd if k.startswith(f"model.layers.{i}.") and f".{hf}." in k)]
            t = permute(t, HEADS) if hf == "q_proj" else permute(t, KV_HEADS) if hf == "k_proj" else t
            w.add_tensor(f"blk.{i}.{name}.weight", t)
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    return model, path


def test_a_gguf_converts_to_its_exact_weights_and_a_working_tokenizer(tiny, tmp_path):
    model, path = tiny
    assert main(["convert", "--gguf", str(path), str(tmp_path / "out")]) == 0
    out, ref = load_file(tmp_path / "out" / "model.safetensors"), model.state_dict()
    assert set(out) == set(ref)
    for name in ref:
        assert torch.equal(out[name], ref[name]), name
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tok("hi 12")["input_ids"] == list(b"hi 12")  # token i spells byte i, and no merges
    assert tok.decode(list(b"hi 12")) == "hi 12"
    assert tok.eos_token == "<|endoftext|>"
    assert (tmp_path / "out" / MARKER).exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_an_earlier_conversion_is_replaced_only_with_overwrite(tiny, tmp_path, capsys):
    _, path = tiny
    out = tmp_path / "out"
    assert main(["convert", "--gguf", str(path), str(out)]) == 0
    assert main(["convert", "--gguf", str(path), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", "--gguf", str(path), str(out), "--overwrite"]) == 0


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["convert", "--gguf", str(tmp_path / "nope.gguf"), str(tmp_path / "out")]) == 2
    assert "does not exist" in one_error_line(capsys)


def test_a_file_that_is_not_gguf_is_one_line(tmp_path, capsys):
    fake = tmp_path / "model.gguf"
    fake.write_text('{"not": "gguf"}')
    assert main(["convert", "--gguf", str(fake), str(tmp_path / "out")]) == 2
    assert "is not a GGUF file" in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_a_folder_of_the_users_is_refused_and_left_untouched(tiny, tmp_path, capsys):
    _, path = tiny
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["convert", "--gguf", str(path), str(mine), "--overwrite"]) == 2
    assert "was not written by imm" in one_error_line(capsys)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
