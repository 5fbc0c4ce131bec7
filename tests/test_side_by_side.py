"""Independent stages at once (imm.side_by_side): forked processes with a share of the threads each, errors
raised where the run is, nothing left running when the run is killed, and fine-tunes that give the weights
they give alone."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imm.errors import UserError
from imm.config import FinetuneConfig
from imm.finetune_launch import finetune_checkpoint
from imm.models import BUILTIN_DIR
from imm.side_by_side import side_by_side
from imm.verify.training_set import Example


def note(path: Path) -> None:
    path.write_text(f"{os.getpid()} {torch.get_num_threads()}")


def test_works_run_in_forked_processes_with_a_share_of_the_threads_each(tmp_path):
    side_by_side([lambda: note(tmp_path / "a"), lambda: note(tmp_path / "b")], threads=2)
    (pid_a, threads_a), (pid_b, threads_b) = ((tmp_path / n).read_text().split() for n in "ab")
    assert len({pid_a, pid_b, str(os.getpid())}) == 3
    assert threads_a == threads_b == "1"


def test_one_work_or_one_thread_runs_in_this_process(tmp_path):
    side_by_side([lambda: note(tmp_path / "a")], threads=2)
    side_by_side([lambda: note(tmp_path / "b"), lambda: note(tmp_path / "c")], threads=1)
    assert {(tmp_path / n).read_text().split()[0] for n in "abc"} == {str(os.getpid())}


def test_an_error_is_raised_here_after_every_work_has_ended(tmp_path):
    def fails():
        raise UserError("fine-tuning diverged")

    def slow():
        time.sleep(0.5)
        note(tmp_path / "slow")

    with pytest.raises(UserError, match="fine-tuning diverged"):
        side_by_side([fails, slow], threads=2)
    assert (tmp_path / "slow").exists()


def test_a_work_killed_without_a_result_is_an_error_that_names_the_way_out(tmp_path):
    with pytest.raises(UserError, match=r"ended without a result \(exit code -9\).*finetune.side_by_side=false"):
        side_by_side([lambda: os.kill(os.getpid(), signal.SIGKILL), lambda: note(tmp_path / "b")], threads=2)
    assert (tmp_path / "b").exists()


def test_a_killed_run_leaves_no_work_running(tmp_path):
    code = ("import os, sys, time; from pathlib import Path; from imm.side_by_side import side_by_side; "
            "d = Path(sys.argv[1]); "
            "side_by_side([lambda n=n: ((d / n).write_text(str(os.getpid())), time.sleep(120)) for n in 'ab'], threads=2)")
    run = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    deadline = time.monotonic() + 60
    while not all((tmp_path / n).exists() for n in "ab"):
        assert run.poll() is None and time.monotonic() < deadline, "the works did not start"
        time.sleep(0.05)
    pids = [int((tmp_path / n).read_text()) for n in "ab"]
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"works {pids} outlived their run"
        time.sleep(0.05)


def test_ctrl_c_stops_every_work_and_reaches_the_run_as_an_interrupt(tmp_path):
    """SIGINT to the process group, as a terminal's Ctrl-C: the run gets KeyboardInterrupt within seconds
    (its resume hint), and no work keeps running."""
    code = ("import os, sys, time; from pathlib import Path; from imm.side_by_side import side_by_side; "
            "d = Path(sys.argv[1])\n"
            "try:\n"
            "    side_by_side([lambda n=n: ((d / n).write_text(str(os.getpid())), time.sleep(120)) for n in 'ab'], threads=2)\n"
            "except KeyboardInterrupt:\n"
            "    sys.exit(130)\n")
    run = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], start_new_session=True)
    deadline = time.monotonic() + 60
    while not all((tmp_path / n).exists() for n in "ab"):
        assert run.poll() is None and time.monotonic() < deadline, "the works did not start"
        time.sleep(0.05)
    pids = [int((tmp_path / n).read_text()) for n in "ab"]
    os.killpg(run.pid, signal.SIGINT)
    assert run.wait(timeout=10) == 130
    assert not [pid for pid in pids if alive(pid)]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has ended; only its exit status waits to be read


def test_fine_tunes_at_once_give_the_weights_of_one_alone_on_all_threads(tmp_path):
    """What `imm run` relies on to train an iteration's fine-tunes at once (imm.loop.train): the built-in
    model's F_t on one thread of two equals, bit for bit, F_t trained alone on both."""
    rng = random.Random(0)
    sums = [(rng.randint(0, 99), rng.randint(0, 99)) for _ in range(96)]
    examples = [Example(f"q{i}", f"Q: {a} + {b} = ?\nA:", f" {a} + {b} = {a + b}. The answer is {a + b}.")
                for i, (a, b) in enumerate(sums)]
    cfg = FinetuneConfig(learning_rate=3e-4, epochs=2, batch_size=32)

    def fine_tune(name: str) -> None:
        finetune_checkpoint(BUILTIN_DIR, examples, cfg, tmp_path / name, tmp_path / f"{name}.json", seed=0, device="cpu")

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fine_tune("alone")
    finally:
        torch.set_num_threads(threads)
    side_by_side([lambda: fine_tune("first"), lambda: fine_tune("second")], threads=2)
    alone = load_file(tmp_path / "alone" / "model.safetensors")
    for name in ("first", "second"):
        at_once = load_file(tmp_path / name / "model.safetensors")
        assert at_once.keys() == alone.keys()
        assert all(torch.equal(at_once[k], alone[k]) for k in alone), name
    assert not torch.equal(alone["model.layers.0.mlp.up_proj.weight"],
                           load_file(BUILTIN_DIR / "model.safetensors")["model.layers.0.mlp.up_proj.weight"])
