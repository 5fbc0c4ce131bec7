"""A math-verify worker process: `python -m imm.verify.worker TIMEOUT_S`, driven by `imm.verify.symbolic`.

Reads one JSON line `[gold, predicted]` at a time from stdin and answers `1` (equivalent) or `0`
(not, or anything went wrong) on stdout; prints `ready` once math-verify is imported; ends at end of
input. Its address space is capped, and the parent kills it when an answer overruns its timeout.

math-verify is not run on its defaults: both answers arrive already extracted and normalised
(`imm.verify.latex`, decimals written as exact fractions), so they are parsed as LaTeX only, with no
string fallback (an unparsable answer is wrong, never compared as text), and compared with
FLOAT_ROUNDING digits where a float still appears, so a 6-decimal approximation is not 6-place equal.
"""

from __future__ import annotations

import json
import math
import sys

WORKER_MEMORY_BYTES = 4 << 30  # a runaway power (9^{9^{9^9}}) hits this cap instead of the machine's RAM
FLOAT_ROUNDING = 12  # math-verify's default is 6: 8.062258 would equal \sqrt{65}


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
    from math_verify import LatexExtractionConfig, parse, verify

    inner = max(1, math.floor(timeout_s))  # math-verify's own signal timeout, for Python-level loops
    config = [LatexExtractionConfig(boxed_match_priority=0)]

    def read(answer: str) -> list:
        return parse(_as_latex(answer), extraction_config=config, fallback_mode="no_fallback",
                     parsing_timeout=inner)

    print("ready", flush=True)
    for line in sys.stdin:
        try:
            gold, predicted = json.loads(line)
            g, p = read(gold), read(predicted)
            ok = bool(g and p and verify(g, p, float_rounding=FLOAT_ROUNDING, timeout_seconds=inner))
        except BaseException:  # noqa: BLE001 - anything the checker raises on hostile input is "wrong"
            ok = False
        print("1" if ok else "0", flush=True)


if __name__ == "__main__":
    serve(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0)
