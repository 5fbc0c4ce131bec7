"""Processes die with the run: after SIGKILL of the main process during generation, no generation worker
survives and nothing is printed (the kernel ends them: imm.parent_death)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

GENERATE = """
import torch
from imm.engines.hf import generate
from imm.models import load_model
torch.set_num_threads(2)
model, tokenizer = load_model("builtin", device="cpu")
print("generating", flush=True)
generate(model, tokenizer, ["Q: 1 + 1 = ?\\nA:"] * 64, k=1, temperature=1.0, max_new_tokens=400, batch_size=4,
         workers=2, seed=0, stop=())
print("finished", flush=True)
"""


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    """Running or sleeping; a zombie (dead, not yet reaped by whoever adopted it) counts as ended."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _wait_for(condition, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_sigkill_during_generation_leaves_no_worker_and_prints_nothing():
    run = subprocess.Popen([sys.executable, "-c", GENERATE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    try:
        assert run.stdout.readline().strip() == "generating"
        assert _wait_for(lambda: len(_children(run.pid)) == 2, 60), "the two generation workers never started"
        workers = _children(run.pid)
        time.sleep(1.0)  # both are mid-batch: 16 batches of 400 tokens take far longer
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
        assert _wait_for(lambda: not any(map(_alive, workers)), 2), "a generation worker outlived the run"
        out, err = run.communicate(timeout=10)  # EOF only once every holder of the pipes has ended
    finally:
        if run.poll() is None:
            run.kill()
    assert "finished" not in out and err == ""


# --- bounded inputs --------------------------------------------------------------------------------

LONG_QUESTION = """
import resource, sys
from imm.engines.hf import generate
from imm.errors import UserError
from imm.models import load_model
model, tokenizer = load_model("builtin", device="cpu")
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    generate(model, tokenizer, ["Q: 1 + 1 = ?\\nA:", "Q: " + "7 + 1 = ? " * 100_000 + "\\nA:"], max_new_tokens=16)
except UserError as err:
    print(err)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, "MB more")
"""


def test_a_1mb_question_is_refused_before_generation_in_bounded_memory():
    """The builtin context is 512 positions; a 1 MB question is ~10^5 tokens: refused, and the process's peak
    memory grows by well under 1 GB (generating it took about 4 GB within 7 s)."""
    out = subprocess.run([sys.executable, "-c", LONG_QUESTION], capture_output=True, text=True, timeout=300).stdout
    refusal, growth = out.strip().splitlines()
    assert "does not fit the model's context of 512 positions with 16 for the answer" in refusal
    assert int(growth.split()[0]) < 1024, growth
