"""Build time and per-family accuracy of the world's base model at several pretraining lengths.

    python benchmarks/world_build.py --steps 500 1000 2000 [--device cuda] [--out DIR]

Each length is a separate build (the cosine schedule spans the whole run), written to DIR/steps_<N>;
prints one row per build and writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from imm.tasks.arith import FAMILIES
from imm.world.build import BuildConfig, build

from _log import machine, write_section


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, nargs="+", default=[1500])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("/tmp/world_builds"))
    args = parser.parse_args()
    header = "| steps | seconds | params | " + " | ".join(FAMILIES) + " |"
    rows = [header, "|" + "---|" * (3 + len(FAMILIES))]
    for steps in args.steps:
        r = build(args.out / f"steps_{steps}", BuildConfig(steps=steps), args.device)
        acc = " | ".join(f"{r['accuracy'][f]:.1%}" for f in FAMILIES)
        rows.append(f"| {steps} | {r['seconds']:.0f} | {r['parameters']:,} | {acc} |")
        print(rows[-1], flush=True)
    write_section("World base build by length", rows, "Greedy strict-match accuracy on 300 test problems per family.",
                  setting=f"{machine()}, device {args.device}")


if __name__ == "__main__":
    main()
