"""Build time and per-family accuracy of the world's base model at several pretraining lengths.

    python benchmarks/world_build.py --steps 500 1000 2000 [--device cuda] [--out DIR]

Each length is a separate build (the cosine schedule spans the whole run), written to DIR/steps_<N>;
prints one row per build and appends the table to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

from imm.tasks.arith import FAMILIES
from imm.world.build import BuildConfig, build


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, nargs="+", default=[1500])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("/tmp/world_builds"))
    parser.add_argument("--machine", default=f"{platform.machine()} CPU")
    parser.add_argument("--log", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    header = "| steps | seconds | params | " + " | ".join(FAMILIES) + " |"
    rows = [header, "|" + "---|" * (3 + len(FAMILIES))]
    for steps in args.steps:
        r = build(args.out / f"steps_{steps}", BuildConfig(steps=steps), args.device)
        acc = " | ".join(f"{r['accuracy'][f]:.1%}" for f in FAMILIES)
        rows.append(f"| {steps} | {r['seconds']:.0f} | {r['parameters']:,} | {acc} |")
        print(rows[-1], flush=True)
    section = (f"\n## World base build ({date.today()}, {args.machine}, device {args.device})\n\n"
               f"Command: `python benchmarks/world_build.py --steps {' '.join(map(str, args.steps))} --device {args.device}`\n"
               f"Greedy strict-match accuracy on 300 test problems per family.\n\n" + "\n".join(rows) + "\n")
    print(section)
    if str(args.log) not in ("", "."):
        args.log.parent.mkdir(parents=True, exist_ok=True)
        with open(args.log, "a") as f:
            f.write(section)


if __name__ == "__main__":
    main()
