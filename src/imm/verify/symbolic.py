"""Symbolic equivalence through math-verify, in worker processes with a hard per-answer timeout.

Model output is untrusted: parsing `9^{9^{9^9}}` or a hundred nested fractions can hang sympy inside
C code where no signal reaches it. So every comparison runs in a worker process (`python -m
imm.verify.worker`, address space capped), the parent waits at most `timeout_s` per answer, and
a worker that overruns is killed and replaced; its answer counts as wrong. Workers are plain
subprocesses speaking JSON lines, so they start the same way from a script, a notebook or stdin.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

TIMEOUT_S = 5.0  # [ours] per answer; a real MATH answer verifies in well under 1 s
STARTUP_TIMEOUT_S = 120.0  # starting a worker imports sympy: seconds on a busy machine, never minutes


def _worker_env() -> dict[str, str]:
    """The parent's environment, with this copy of `imm` first on the path of the worker."""
    src = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}


class _Worker:
    """One `python -m imm.verify.worker` process and the answer it is working on."""

    def __init__(self, timeout_s: float):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "imm.verify.worker", str(timeout_s)], env=_worker_env(),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )
        self.ready, self.item, self.deadline = False, None, math.inf
        self.started = time.monotonic()

    def fileno(self) -> int:
        return self.process.stdout.fileno()

    def send(self, gold: str, predicted: str) -> None:
        self.process.stdin.write(json.dumps([gold, predicted]) + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()


class SymbolicJudge:
    """A pool of math-verify workers; `equivalent_many` judges (predicted, gold) pairs in parallel."""

    def __init__(self, workers: int = 2, timeout_s: float = TIMEOUT_S):
        self.timeout_s = timeout_s
        self._workers = [_Worker(timeout_s) for _ in range(max(1, workers))]
        self.timeouts = 0  # answers killed for overrunning: reported by the benchmark

    def equivalent_many(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """[is predicted equivalent to gold] for each (predicted, gold); overruns count as False."""
        results: list[bool | None] = [None] * len(pairs)
        queue = list(range(len(pairs)))[::-1]
        while queue or any(w.item is not None for w in self._workers):
            self._dispatch(queue, pairs)
            self._collect(results)
        return [bool(r) for r in results]

    def _dispatch(self, queue: list[int], pairs: Sequence[tuple[str, str]]) -> None:
        for worker in self._workers:
            if worker.ready and worker.item is None and queue:
                worker.item = queue.pop()
                predicted, gold = pairs[worker.item]
                worker.send(gold, predicted)
                worker.deadline = time.monotonic() + self.timeout_s

    def _collect(self, results: list[bool | None]) -> None:
        now = time.monotonic()
        wake = min([w.deadline for w in self._workers] + [now + 1.0])
        readable, _, _ = select.select(self._workers, [], [], max(0.0, wake - now))
        for worker in readable:
            line = worker.process.stdout.readline().strip()
            if not line:  # the worker died (e.g. out of memory): its answer is wrong
                if not worker.ready:
                    raise RuntimeError("a math-verify worker exited at start; check `python -m imm.verify.worker`")
                self._replace(worker, results)
            elif line == "ready":
                worker.ready = True
            else:
                results[worker.item], worker.item, worker.deadline = line == "1", None, math.inf
        self._enforce_deadlines(results)

    def _enforce_deadlines(self, results: list[bool | None]) -> None:
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.item is not None and now >= worker.deadline:
                self.timeouts += 1
                self._replace(worker, results)
            elif not worker.ready and now - worker.started > STARTUP_TIMEOUT_S:
                raise RuntimeError("a math-verify worker did not start in time; check that math-verify imports")

    def _replace(self, worker: _Worker, results: list[bool | None]) -> None:
        if worker.item is not None:
            results[worker.item] = False
        worker.kill()
        self._workers[self._workers.index(worker)] = _Worker(self.timeout_s)

    def close(self) -> None:
        """End every worker: close all inputs first so that they shut down in parallel."""
        for worker in self._workers:
            try:
                worker.process.stdin.close()  # end of input: the worker leaves its loop
            except OSError:
                pass
        for worker in self._workers:
            try:
                worker.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                worker.kill()
        self._workers = []


_default: SymbolicJudge | None = None


def default_judge() -> SymbolicJudge:
    """The shared pool (up to 2 workers, TIMEOUT_S), started on first use and closed at exit."""
    global _default
    if _default is None:
        _default = SymbolicJudge(workers=min(2, os.cpu_count() or 1))
        atexit.register(_default.close)
    return _default

