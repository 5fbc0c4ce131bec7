"""Child processes die with the run: the one way imm asks the kernel to end a child when its parent ends.

Every process imm starts (a stage run side by side, a generation worker, a training launcher) calls
`die_with_parent` first, so a run killed even by SIGKILL leaves no process computing, writing into a run
folder another process may resume, or printing into the terminal (Linux's PR_SET_PDEATHSIG; elsewhere
a no-op).

The signal is SIGKILL: a Python child ends at once and silently. A launcher of other processes
(`accelerate launch`, torchrun) gets SIGTERM instead, which it passes on to the processes it started;
SIGKILL would end it alone and orphan them.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """Run first in a child of process `parent`: the kernel sends `sig` when the parent ends. When the
    parent has ended already (before the request took effect), the child ends now."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # only here: the one caller of libc

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig))
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def launcher_dies_with(parent: int):
    """`preexec_fn` for a launcher subprocess: SIGTERM when `parent` ends (see the module's note)."""
    return lambda: die_with_parent(parent, signal.SIGTERM)
