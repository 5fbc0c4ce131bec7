"""Independent stages at once on a CPU, each in a forked process with its share of torch's threads.

`imm run` trains the arms' independent F_t of an iteration this way (docs/method.md §2: after t = 1 every arm
fine-tunes its own D_t from its own G). A fine-tune's matrix products use two threads fully, its many small
operations do not: on the 2-core machine two of the default run's fine-tunes on one thread each, at once,
end in 0.84 of the time they take one after the other on two (docs/benchmarks.md). A fine-tune on the built-in model gives the same weights, bit for bit, on one thread
as on two (tests/test_side_by_side.py), so which fine-tunes met does not change a run's results.

A forked process dies with the process that forked it (Linux's PR_SET_PDEATHSIG), so a killed run leaves
nothing writing into its folder; what a killed stage had half-written is a temporary the next run removes.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Callable, Sequence

import torch

from imm.errors import UserError

_WORKS: Sequence[Callable[[], object]] = ()  # what the forked processes inherit from their parent


def at_once(works: int, threads: int | None = None) -> int:
    """How many of `works` run at the same time on `threads` torch threads (default torch's count)."""
    return min(works, threads or torch.get_num_threads())


def side_by_side(works: Sequence[Callable[[], object]], threads: int | None = None) -> None:
    """Run every work, as many at once as there are torch threads (`threads`, default torch's count), each
    in a forked process with threads // (works at once) of them; one work, or one thread, runs here. Every
    work runs to its end; then the error of the first work that failed, in the order given, is raised here
    (a UserError as it was raised)."""
    global _WORKS
    threads = threads or torch.get_num_threads()
    lanes = at_once(len(works), threads)
    if lanes <= 1:
        for work in works:
            work()
        return
    import multiprocessing
    from multiprocessing.connection import wait

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # its thread pool does not survive fork
    fork, parent, queue = multiprocessing.get_context("fork"), os.getpid(), list(range(len(works)))
    running: dict = {}  # a process's end of its pipe -> (work, process)
    errors: dict[int, BaseException] = {}
    _WORKS = works
    try:
        while queue or running:
            while queue and len(running) < lanes:  # one fresh process per work: its memory ends with it
                reader, writer = fork.Pipe(duplex=False)
                i = queue.pop(0)
                process = fork.Process(target=_child, args=(i, threads // lanes, parent, writer), daemon=True)
                process.start()
                writer.close()
                running[reader] = i, process
            for reader in wait(list(running)):  # a result, or the end of a process that sent none
                i, process = running.pop(reader)
                try:
                    error = reader.recv()
                except EOFError:  # killed (out of memory?) or ended by os._exit
                    process.join()
                    error = UserError(f"a process running stages side by side ended without a result (exit code "
                                      f"{process.exitcode}); if memory ran out, run them one at a time "
                                      f"(finetune.side_by_side=false)")
                process.join()
                reader.close()
                if error is not None:
                    errors[i] = error
    except BaseException:  # Ctrl-C, or an error here: nothing keeps running
        for _, process in running.values():
            process.kill()
            process.join()
        raise
    finally:
        _WORKS = ()
    if errors:
        raise errors[min(errors)]


def _child(i: int, threads: int, parent: int, result) -> None:
    """Run work i and send its outcome: None, the UserError or Ctrl-C it raised, or another error with its
    traceback."""
    _die_with(parent)
    torch.set_num_threads(threads)
    try:
        _WORKS[i]()
        outcome = None
    except (UserError, KeyboardInterrupt) as err:  # raised there as here: one line, or the resume hint
        outcome = err
    except BaseException:  # noqa: BLE001  reported where the run is
        outcome = RuntimeError(f"a stage run side by side failed:\n{traceback.format_exc()}")
    result.send(outcome)
    result.close()


def _die_with(parent: int) -> None:
    """Ask the kernel to kill this process when its parent ends (Linux); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)
