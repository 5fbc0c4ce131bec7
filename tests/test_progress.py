"""Progress in a log: plain lines at most every PLAIN_EVERY seconds per stage, never `\\r` redraws."""

from __future__ import annotations

from imm import progress as progress_module
from imm.progress import PlainProgress, progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_come_at_most_every_period_and_at_the_end(capsys):
    """40 steps, one per 0.5 s, period 10 s: a line at step 1 (0.5 s), at step 21 (10.5 s, the first update
    10 s after that line), none at step 40 (20 s, only 9.5 s later), and one at close: 3 lines."""
    clock = Clock()
    bar = PlainProgress(40, "fine-tune imm/iter_1", "step", every=10.0, clock=clock)
    for _ in range(40):
        clock.now += 0.5
        bar.set_postfix(loss="0.500")
        bar.update(1)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["fine-tune imm/iter_1: 1/40 step (2%, 0s, loss=0.500)",
                     "fine-tune imm/iter_1: 21/40 step (52%, 10s, loss=0.500)",
                     "fine-tune imm/iter_1: 40/40 step (100%, 20s, loss=0.500)"]
    assert "\r" not in capsys.readouterr().err


def test_a_log_or_a_side_by_side_process_gets_plain_lines(capsys, monkeypatch):
    """Under pytest stderr is not a terminal: plain lines; a process marked side by side stays plain even on one."""
    assert isinstance(progress(3, "sample", "q"), PlainProgress)
    monkeypatch.setattr(progress_module.sys.stderr, "isatty", lambda: True, raising=False)
    assert not isinstance(progress(3, "sample", "q"), PlainProgress)
    monkeypatch.setattr(progress_module, "_PLAIN", False)
    progress_module.plain_lines()
    assert isinstance(progress(3, "sample", "q"), PlainProgress)
