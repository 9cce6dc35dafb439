"""One run at a time per output directory: an exclusive lock on `<output>/.lock`.

The lock is an fcntl lock, so the operating system releases it when the holder
exits, even on SIGKILL: a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from typing import Iterator

from core.errors import UserError

LOCK_FILE = ".lock"


class OutputInUse(UserError):
    """Another run holds the output directory."""


class OutputNotWritable(UserError):
    """The output directory cannot be written (read-only, no space, no permission)."""


@contextlib.contextmanager
def exclusive(output_dir: str) -> Iterator[None]:
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        os.makedirs(output_dir, exist_ok=True)
        handle = open(path, "a+")
    except OSError as e:
        raise OutputNotWritable(f"cannot write the output directory {output_dir}: {e.strerror}") from None
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
        yield
    finally:
        handle.close()  # releases the lock
