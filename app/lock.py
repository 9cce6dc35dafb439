"""One run at a time per output directory: an exclusive lock on `<output>/.lock`.

The lock is an fcntl lock, so the operating system releases it when the holder
exits, even on SIGKILL: a killed run never leaves a stale lock behind.

It is taken before anything under the output directory is written (the CLI
takes it first, before its heavy imports and before `replay` cuts spans), and
it is re-entrant within a process: the job and the replay loop take it again
around their work, which is then a no-op.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from typing import Dict, Iterator

from core.errors import UserError

LOCK_FILE = ".lock"

# Lock files this process holds, by real path: how many `exclusive` contexts are open on each.
_held: Dict[str, int] = {}


class OutputInUse(UserError):
    """Another run holds the output directory."""


class OutputNotWritable(UserError):
    """The output directory cannot be written (read-only, no space, no permission)."""


@contextlib.contextmanager
def exclusive(output_dir: str) -> Iterator[None]:
    path = os.path.join(output_dir, LOCK_FILE)
    key = os.path.realpath(path)
    if key in _held:  # this process holds it already
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    try:
        os.makedirs(output_dir, exist_ok=True)
        handle = open(path, "a+")
    except OSError as e:
        raise OutputNotWritable(f"cannot write {e.filename or output_dir}: {e.strerror}") from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise OutputInUse(
                f"{output_dir} is in use by another movielens-tfx run ({holder}); "
                "wait for it to finish or use another --output"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
            handle.flush()
        except OSError as e:
            raise OutputNotWritable(f"cannot write {path}: {e.strerror}") from None
        _held[key] = 1
        try:
            yield
        finally:
            del _held[key]
    finally:
        handle.close()  # releases the lock
