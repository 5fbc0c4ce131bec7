"""One writer per run folder: `imm run` holds an exclusive lock on `<run>/run.lock` while it works.

The lock is an `flock` on the file, so the kernel drops it the moment its process ends, however it
ends (Ctrl-C, SIGKILL, a crash, a power cut of a remote shell). A second `imm run` on the same folder
is refused with one line naming the holder. A lock file left by a process that is gone is stale: its
flock is free, so the next run takes it over and says whose it was. The file records the holder's
process id, host and start time; it is never deleted while a run may hold it (`--restart` deletes the
folder with it, then locks the new one).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from imm.errors import UserError
from imm.outputs import plain_write_errors


class RunLock:
    """`with RunLock(path):` holds the run folder's lock, or raises UserError when another process does."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> None:
        with plain_write_errors(self.path.parent):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(_read_holder(fd))
            os.close(fd)
            raise UserError(f"{self.path.parent} is in use by another imm run ({holder}); wait for it to end or stop "
                            f"it, then re-run the same command to resume") from None
        stale = _read_holder(fd)
        if stale.get("pid") and not (stale.get("pid") == os.getpid() and stale.get("host") == socket.gethostname()):
            print(f"taking over the lock of {self.path.parent} left by an earlier run ({_describe(stale)}), "
                  f"which is no longer running", flush=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "process unknown"
    return f"process {holder['pid']} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
