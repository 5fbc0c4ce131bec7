"""`imm merge CONFIG.yml OUT_DIR [--seed N] [--device cpu|cuda] [--overwrite]`: merge checkpoints from a
mergekit-style YAML config (see imm/merging/spec.py for the keys).

OUT_DIR must be new, empty, or an earlier `imm merge` output (replaced only with --overwrite)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from imm.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path, help="merge config (YAML: merge_method, base_model, models, ...)")
    parser.add_argument("out_dir", type=Path, help="output checkpoint folder: new, empty, or an earlier merge output")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR when an earlier `imm merge` wrote it")
    parser.add_argument("--seed", type=int, default=0, help="seed for the random methods (dare_*, della*, imm)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to compute")
    parser.add_argument("--max-shard-size", type=float, default=5.0, metavar="GB",
                        help="largest output shard in GB (default 5)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _progress(done: int, total: int) -> None:
    print(f"\rimm merge: {done}/{total} tensors", end="\n" if done == total else "", file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    from imm.merging.driver import merge  # torch is imported only when a merge runs
    from imm.merging.spec import MergeSpec
    from imm.outputs import check_output_dir

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda but no CUDA device is visible; use --device cpu")
    if args.max_shard_size <= 0:
        raise UserError(f"--max-shard-size must be positive, got {args.max_shard_size}")
    spec = MergeSpec.from_yaml(args.config)
    check_output_dir(args.out_dir, "merge", overwrite=args.overwrite, inputs=spec.inputs())
    start = time.perf_counter()
    merge(spec, args.out_dir, seed=args.seed, device=args.device,
          max_shard_bytes=int(args.max_shard_size * 1e9), overwrite=args.overwrite, progress=None if args.quiet else _progress)
    print(f"imm merge: wrote {args.out_dir} in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    return 0
