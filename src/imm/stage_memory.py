"""Peak memory of one loop stage, as `imm run` records it in timings.jsonl, and freeing between stages.

Each stage loads its own model and drops it when it returns; on leaving a stage the loop collects the
garbage and hands the GPU's cached blocks back to the driver, so the next stage (or a child process:
training processes, a vLLM engine) starts with an empty GPU and two models never share it. The record:

    peak_rss_mib            the most resident memory the loop process held during the stage: Linux's high-water
                            mark (VmHWM), reset when the stage starts, so exact and per stage. It includes what
                            the process held before (interpreter, libraries, about 0.5 GiB with torch).
    children_peak_rss_mib   the most the child processes the stage started held together (accelerate's training
                            processes, a vLLM engine), sampled every 0.25 s, so a shorter peak can be missed; 0
                            without any. A child that outlives its stage (a worker pool) counts in the stage that
                            started it only.
    peak_gpu_mib            with CUDA: the most the loop process's tensors held on the GPU during the stage
                            (torch.cuda.max_memory_allocated, reset when the stage starts). Child processes' GPU
                            memory is not in it: theirs returns to the driver when they exit.
    gpu_held_after_mib      with CUDA: what the loop process still holds on the GPU after the stage (near 0: the
                            stage freed its model).

Where the high-water mark cannot be reset or read (not Linux, or a sandbox whose /proc does not offer it)
peak_rss_mib is sampled like the children's: a peak shorter than the sampling interval can then be missed.
"""

from __future__ import annotations

import gc
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

MIB = 2**20
INTERVAL = 0.25  # seconds between samples of the child processes (each costs about 2 ms)


def _reset_high_water_mark() -> bool:
    """Reset the peak RSS to the current RSS (Linux >= 4.0); False where that is refused or silently ignored
    (a sandbox's /proc), found by the peak not having come down to the current figure."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    peak, now = _status("VmHWM"), _status("VmRSS")
    return peak is not None and now is not None and peak - now <= 16 * MIB


def _status(field: str) -> int | None:
    """A memory figure of /proc/self/status in bytes; None where there is none."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024  # kB
    return None


_FREEZING = False  # within `long_lived_frozen`


@contextmanager
def long_lived_frozen():
    """For one command (imm.cli): what survives its first stage's collection (imported libraries, the
    command's own state) is moved out of the collector's sight (`gc.freeze`), so that each later stage's
    collection walks only what was made since: a full collection with torch and transformers loaded walks
    about 365,000 objects (0.3 s), about 30 times a default run. Handed back (`gc.unfreeze`) when the command
    ends, so that a process running several commands (the tests) keeps nothing for good."""
    global _FREEZING
    _FREEZING = True
    try:
        yield
    finally:
        _FREEZING = False
        gc.unfreeze()


def _cuda():
    """torch.cuda where this process already uses it; None otherwise (measuring must not start CUDA)."""
    torch = sys.modules.get("torch")
    return torch.cuda if torch is not None and torch.cuda.is_initialized() else None


class StageMemory:
    """`with StageMemory() as memory: stage()`, then `memory.record()` for timings.jsonl."""

    def __enter__(self) -> "StageMemory":
        import psutil

        self._process = psutil.Process()
        self._exact = _reset_high_water_mark()
        self._older = {c.pid for c in self._process.children(recursive=True)}  # a pool an earlier stage started
        self._own = self._children = 0
        if cuda := _cuda():
            cuda.reset_peak_memory_stats()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        import psutil

        while True:
            held = 0
            for child in self._process.children(recursive=True):
                if child.pid in self._older:
                    continue
                try:
                    held += child.memory_info().rss
                except psutil.Error:  # it ended between listing and reading
                    pass
            self._children = max(self._children, held)
            self._own = max(self._own, self._process.memory_info().rss)
            if self._stop.wait(INTERVAL):
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sampler.join()
        own = (_status("VmHWM") if self._exact else None) or max(self._own, self._process.memory_info().rss)
        self._record = {"peak_rss_mib": round(own / MIB), "children_peak_rss_mib": round(self._children / MIB)}
        gc.collect()  # a model of this stage caught in a reference cycle is freed here, not at some later stage
        if _FREEZING and not gc.get_freeze_count():
            gc.freeze()
        if cuda := _cuda():
            cuda.empty_cache()  # cached blocks back to the driver: the next stage's child process may need them
            self._record |= {"peak_gpu_mib": round(cuda.max_memory_allocated() / MIB),
                             "gpu_held_after_mib": round(cuda.memory_allocated() / MIB)}

    def record(self) -> dict:
        return self._record
