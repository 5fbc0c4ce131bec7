"""Crash safety under chaos: `imm run` killed (SIGKILL) at random moments, resumed each time, ends with
the summary.csv and every checkpoint of an uninterrupted run, byte for byte; Ctrl-C exits within seconds
with the resume hint and leaves nothing half-written; two runs never write one folder at once.

The fast variant forks the test process (torch already imported) for each killed run of a tiny config;
the slow one kills real `python -m imm run --config smoke` processes. Kill moments come from a seeded
generator, printed, so a failure can be replayed (docs/reliability.md)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imm import cli
from imm.layout import RunLayout
from imm.outputs import is_temporary
from imm.run_lock import RunLock
from imm.tensor_files import tensor_table

# both arms, 2 iterations: sampling, verifying, fine-tuning, merging, evaluating, linking what the arms share
TINY = ("--config", "smoke", "model.threads=1", "data.train_questions=4", "data.ood_tasks=[]", "eval.limit=2",
        "eval.diversity_k=0", "analysis.enabled=false", "sampling.max_new_tokens=40", "eval.max_new_tokens=40")
SMOKE = ("--config", "smoke", "model.threads=1")
# files whose content records wall time; everything else must match byte for byte (the run's own path aside)
TIMED = {"timings.jsonl", "train_log.jsonl", "run.lock"}
TIMED_KEYS = {"seconds", "tokens_per_s"}


def comparable(run: Path) -> dict[str, object]:
    """Every file of a run folder, as bytes, or parsed without its timing fields where it records time."""
    found = {}
    for path in sorted(p for p in run.rglob("*") if p.is_file()):
        rel = path.relative_to(run).as_posix()
        if path.name in TIMED or rel.startswith("report/"):
            continue  # logs of wall time, the lock, and the HTML report (it prints times)
        if path.name == "finetune_stats.json":
            found[rel] = {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMED_KEYS}
        else:  # merge_config.yml and config.yaml name the run's own folder
            found[rel] = path.read_bytes().replace(str(run.parent).encode(), b"<out_dir>")
    return found


def assert_no_partial_output(run: Path) -> None:
    """What a killed run leaves: temporaries (removed on resume) and whole files, never a torn one."""
    layout = RunLayout(run)
    for path in run.rglob("*"):
        if any(is_temporary(part) for part in map(Path, path.relative_to(run).parts)) or not path.is_file():
            continue
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl" and path.name not in TIMED:
            [json.loads(line) for line in path.read_text().splitlines()]
        elif path.suffix == ".safetensors":
            tensor_table(path.parent)  # header whole and file as long as it says
    for model in list(run.glob("arms/*/iter_*/finetuned")) + list(run.glob("arms/*/iter_*/merged")):
        assert (model / "imm_output.json").is_file(), f"{model} is taken as done without its marker"
    assert layout.config.is_file()


class Forked:
    """`imm run ARGS` in a forked child of this process (no interpreter start, no torch import)."""

    startup = 0.3  # seconds before its first stage resumes
    def __init__(self, args: list[str], log: Path):
        self.returncode = None
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                os.dup2(fd, 1), os.dup2(fd, 2)
                code = cli.main(["run", *args])
            finally:
                os._exit(code)

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        if self.returncode is None:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            self.returncode = os.waitstatus_to_exitcode(status) if pid else None
        return self.returncode


@pytest.fixture(scope="module")
def tiny_reference(tmp_path_factory) -> tuple[Path, float]:
    """An uninterrupted tiny run and its wall time in a warm process, as the forked runs start warm: a first
    run in this process pays its one-time costs (imports, task questions, the report's fonts), about 2 s of a
    5 s run, which would put kill moments past the forked runs' ends."""
    assert cli.main(["run", *TINY, f"out_dir={tmp_path_factory.mktemp('warm-up')}"]) == 0
    out = tmp_path_factory.mktemp("reference")
    started = time.perf_counter()
    assert cli.main(["run", *TINY, f"out_dir={out}"]) == 0
    return out / "smoke", time.perf_counter() - started


def chaos(args: tuple, out: Path, duration: float, kills: int, seed: int, start: type, log: Path,
          startup: float | None = None) -> list[float]:
    """Kill `kills` runs in turn, each resuming the last, at seeded uniform random points of an
    uninterrupted run of `duration` (each run is given its start-up time on top: `startup`, else the
    class's); then resume to the end. The points at which a run was killed."""
    rng, killed, done = random.Random(seed), [], 0.0
    startup = start.startup if startup is None else startup
    for point in sorted(rng.uniform(0.02, 0.95) * duration for _ in range(kills)):
        proc = start([*args, f"out_dir={out}"], log)
        deadline = time.monotonic() + startup + point - done
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            killed.append(round(point, 2))
        code, done = proc.wait(), point
        assert code in (-signal.SIGKILL, 0), open(log).read()[-2000:]
        if (out / "smoke").exists():
            assert_no_partial_output(out / "smoke")
    final = start([*args, f"out_dir={out}"], log)
    assert final.wait() == 0, open(log).read()[-2000:]
    print(f"chaos seed {seed}: killed at {killed} s of a {duration:.1f} s uninterrupted run")
    return killed


def test_a_run_killed_at_random_moments_resumes_to_the_uninterrupted_result(tiny_reference, tmp_path):
    """Fast variant: 3 kills (SIGKILL) of a tiny both-arm, 2-iteration run, then one resume."""
    reference, duration = tiny_reference
    seed = int(os.environ.get("IMM_CHAOS_SEED", "1"))
    assert len(chaos(TINY, tmp_path, duration, 3, seed, Forked, tmp_path / "log.txt")) >= 2
    run = tmp_path / "smoke"
    assert not [p for p in run.rglob("*") if is_temporary(p)], "a temporary outlived the resume"
    assert comparable(run) == comparable(reference)
    assert (run / "summary.csv").read_bytes() == (reference / "summary.csv").read_bytes()


class Process(subprocess.Popen):
    """`python -m imm run ARGS`, its own process group, output appended to a log."""

    def __init__(self, args: list[str], log: Path):
        with open(log, "a") as f:
            super().__init__([sys.executable, "-m", "imm", "run", *args], stdout=f, stderr=f, start_new_session=True)

    def kill(self) -> None:
        os.killpg(self.pid, signal.SIGKILL)


@pytest.mark.slow
def test_the_smoke_run_killed_five_times_resumes_to_the_uninterrupted_result(tmp_path):
    """Slow variant: real `imm run --config smoke` processes, SIGKILLed at 5 random moments."""
    # The uninterrupted run is a process like the killed ones, so the kill moments are points of the work those
    # do: a run inside this test process pays for the test process's size and gave moments near or past the end.
    # Its start-up (interpreter, imports: 3-5 s, more than the first third of the run) is measured, not assumed:
    # until its run folder's config.yaml appears, written before any stage.
    started = time.perf_counter()
    reference = Process([*SMOKE, f"out_dir={tmp_path / 'reference'}"], tmp_path / "reference.txt")
    while not (tmp_path / "reference" / "smoke" / "config.yaml").exists() and reference.poll() is None:
        time.sleep(0.02)
    startup = time.perf_counter() - started
    assert reference.wait() == 0
    duration = time.perf_counter() - started - startup
    seed = int(os.environ.get("IMM_CHAOS_SEED", "2"))
    assert len(chaos(SMOKE, tmp_path / "chaos", duration, 5, seed, Process, tmp_path / "log.txt", startup)) >= 3
    reference, run = tmp_path / "reference" / "smoke", tmp_path / "chaos" / "smoke"
    assert comparable(run) == comparable(reference)
    for model in reference.rglob("model.safetensors"):
        assert (run / model.relative_to(reference)).read_bytes() == model.read_bytes()


def test_ctrl_c_exits_within_seconds_with_the_resume_hint_and_nothing_half_written(tmp_path):
    """SIGINT to the process group (what Ctrl-C sends) while θ0 is being evaluated or later."""
    log = tmp_path / "log.txt"
    proc = Process([*TINY, f"out_dir={tmp_path}"], log)
    started = tmp_path / "smoke" / "config.yaml"
    deadline = time.time() + 120
    while not started.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # inside a stage: θ0's evaluation
    os.killpg(proc.pid, signal.SIGINT)
    sent = time.monotonic()
    code = proc.wait(timeout=60)
    waited = time.monotonic() - sent
    text = log.read_text()
    assert code == 130 and "interrupted; re-run the same command to resume" in text, text[-2000:]
    assert "Traceback" not in text and waited < 10, (waited, text[-2000:])
    run = tmp_path / "smoke"
    assert not [p for p in run.rglob("*") if is_temporary(p)], "the interrupted stage left a temporary"
    assert_no_partial_output(run)
    print(f"SIGINT answered in {waited:.2f} s")


def test_a_second_run_on_one_folder_is_refused_and_a_dead_runs_lock_is_taken_over(tmp_path, capsys):
    """A live holder (another process) refuses the run in one line naming it; once that process is
    SIGKILLed, its lock file stays behind, stale, and the next run takes it over."""
    run = tmp_path / "smoke"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from imm.run_lock import RunLock; "
                               "RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(600)",
                               str(run / "run.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cli.main(["run", *TINY, f"out_dir={tmp_path}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by another imm run (process {holder.pid} on" in err[0], err
        assert sorted(p.name for p in run.iterdir()) == ["run.lock"], "the refused run wrote into the folder"
    finally:
        holder.kill()
        holder.wait()
    with RunLock(run / "run.lock"):  # the kernel dropped the dead holder's flock: free again
        pass
    out = capsys.readouterr().out
    assert f"left by an earlier run (process {holder.pid} on" in out and "no longer running" in out
