"""Hostile model files: a GGUF header whose lengths and counts lie about the file is one line (checked
against the file's size before the gguf package trusts them)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from imm import cli
from imm.errors import UserError
from imm.gguf_header import check_gguf_header

gguf = pytest.importorskip("gguf", reason="imm convert needs the gguf package (a dependency of imm)")


def one_error_line(capsys, fragment: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture
def small_gguf(tmp_path):
    """A GGUF v3 file: 2 tensors (f32 4x8 = 128 bytes, f32 8 = 32 bytes), a string and a string array."""
    path = tmp_path / "small.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1), w.add_token_list(["a", "b", "<eos>"])
    w.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    w.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file(), w.close()
    return path


def test_a_consistent_header_passes(small_gguf):
    check_gguf_header(small_gguf)


def test_every_truncation_is_one_line(small_gguf, tmp_path, capsys):
    """Cut after every 7th byte: the header, or the 160 bytes of tensor data, ends early each time."""
    data = small_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    for n in range(4, len(data), 7):
        cut.write_bytes(data[:n])
        with pytest.raises(UserError, match="is not a valid GGUF file"):
            check_gguf_header(cut)
    cut.write_bytes(data[:-1])
    assert cli.main(["convert", "--gguf", str(cut), str(tmp_path / "out")]) == 2
    one_error_line(capsys, "past the end of the file")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("offset, value, fragment", [
    (8, 2**63, "tensor count 9223372036854775808 needs more bytes than the file holds"),
    (16, 2**63, "metadata count 9223372036854775808 needs more bytes"),
    (24, 2**60, "length of key 0 1152921504606846976 needs more bytes"),
    (4, 1, "version 1, not 2 or 3"),
])
def test_a_count_or_length_beyond_the_file_is_one_line(small_gguf, tmp_path, capsys, offset, value, fragment):
    """Offsets: magic 0-3, version 4-7 (u32), tensor count 8-15, metadata count 16-23, first key's length 24-31."""
    data = bytearray(small_gguf.read_bytes())
    fmt = "<I" if offset == 4 else "<Q"
    data[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, value)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(bytes(data))
    assert cli.main(["convert", "--gguf", str(bad), str(tmp_path / "out")]) == 2
    one_error_line(capsys, fragment)


# --- the model is what its config says ------------------------------------------------------------

@pytest.fixture
def relabelled(tmp_path):
    """A copy of the shipped base model whose config.json can be changed: (folder, its config)."""
    import json
    import shutil

    from imm.models import BUILTIN_DIR

    folder = tmp_path / "model"
    shutil.copytree(BUILTIN_DIR, folder, ignore=shutil.ignore_patterns("imm_output.json"))
    return folder, json.loads((folder / "config.json").read_text())


CONFIG_CHANGES = {
    "fewer layers (8 stored, 6 in the config)": ({"num_hidden_layers": 6}, "18 unexpected"),
    "another architecture (Qwen2 wants q/k/v biases)": ({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]},
                                                        "24 missing"),
    "another width (128 stored, 64 in the config)": ({"hidden_size": 64, "head_dim": 16}, "75 of another shape"),
}


@pytest.mark.parametrize("change, fragment", CONFIG_CHANGES.values(), ids=CONFIG_CHANGES.keys())
def test_weights_unlike_the_config_are_refused_never_initialised_at_random(relabelled, change, fragment):
    """The base has 8 layers x 9 tensors + embed, norm, lm_head = 75 tensors; 6 layers leave 2 x 9 = 18
    unexpected; Qwen2's q, k, v biases are 3 x 8 = 24 missing; a width of 64 changes all 75 shapes."""
    import json

    from imm.models import check_checkpoint_matches_config, load_model

    folder, config = relabelled
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    for check in (check_checkpoint_matches_config, load_model):
        with pytest.raises(UserError, match=f"does not match its config.json .*weights {fragment}"):
            check(folder)


def test_imm_run_checks_the_base_before_any_work(relabelled, tmp_path, capsys):
    import json

    folder, config = relabelled
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 6}))
    assert cli.main(["run", "--config", "smoke", f"model.base={folder}", f"out_dir={tmp_path / 'runs'}"]) == 2
    one_error_line(capsys, "does not match its config.json")
    assert not (tmp_path / "runs").exists()


def test_tied_embeddings_are_not_missing_weights(tmp_path):
    """A Llama with tie_word_embeddings stores embed_tokens only; lm_head is the same tensor, not missing."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from imm.models import check_checkpoint_matches_config

    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, tie_word_embeddings=True)).save_pretrained(tmp_path)
    check_checkpoint_matches_config(tmp_path)


class _RunsCode:
    def __init__(self, flag: str):
        self.flag = flag

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.flag}",)


def test_a_malicious_pickle_under_allow_pickle_is_one_line_and_never_runs(relabelled, tmp_path, capsys):
    import pickle

    folder, _ = relabelled
    (folder / "model.safetensors").unlink()
    flag = tmp_path / "code-ran"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _RunsCode(str(flag))}))
    args = ["eval", "--model", str(folder), "--task", "arith", "--limit", "2", "--out", str(tmp_path / "out")]
    assert cli.main([*args, "--allow-pickle"]) == 2
    one_error_line(capsys, "its pickled weights hold more than tensors")
    assert not flag.exists() and not (tmp_path / "out").exists()
