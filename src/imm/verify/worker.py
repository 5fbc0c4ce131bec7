"""A math-verify worker process: `python -m imm.verify.worker TIMEOUT_S`, driven by `imm.verify.symbolic`.

Reads one JSON line `[gold, predicted]` at a time from stdin and answers `1` (equivalent) or `0`
(not, or anything went wrong) on stdout; prints `ready` once math-verify is imported; ends at end of
input. Its address space is capped, and the parent kills it when an answer overruns its timeout.
"""

from __future__ import annotations

import json
import math
import sys

WORKER_MEMORY_BYTES = 4 << 30  # a runaway power (9^{9^{9^9}}) hits this cap instead of the machine's RAM


def _as_latex(answer: str) -> str:
    return answer if "$" in answer or "\\boxed" in answer else f"${answer}$"


def _cap_memory() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass  # no rlimit on this platform: the parent's kill still bounds time


def serve(timeout_s: float) -> None:
    _cap_memory()
    from math_verify import parse, verify

    inner = max(1, math.floor(timeout_s))  # math-verify's own signal timeout, for Python-level loops
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            gold, predicted = json.loads(line)
            g = parse(_as_latex(gold), parsing_timeout=inner)
            p = parse(_as_latex(predicted), parsing_timeout=inner)
            ok = bool(g and p and verify(g, p, timeout_seconds=inner))
        except BaseException:  # noqa: BLE001 - anything the checker raises on hostile input is "wrong"
            ok = False
        print("1" if ok else "0", flush=True)


if __name__ == "__main__":
    serve(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)
