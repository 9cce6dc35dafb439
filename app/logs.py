"""Keeps TensorFlow, absl, Beam and TFX log output and third-party warnings out of the terminal.

Every command runs inside `quiet_logs(path, verbose)`: whatever is written to
file descriptor 2 (Python warnings, Python logging, absl, TensorFlow's C++
start-up messages) goes to the command's log file. With `verbose` it goes to
the log file and to the terminal. The command's own output is on stdout, and
its one-line errors are printed by the CLI after the context is left.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from typing import Iterator

# Messages that say nothing about the run, dropped before they reach any handler. TFX 1.21
# asks ML Metadata for a component's executions with a filter query that ml-metadata 1.21
# (built without ZetaSQL) no longer supports, falls back to an equivalent plain query, and
# logs one absl WARNING per component each time ("Fallback to non-ZetaSQL contexts execution
# query due to: filter_query is not supported ..."): 20 lines per `run`, none on TFX 1.16.
EXPECTED_NOISE = ("Fallback to non-ZetaSQL contexts execution query",)


class _DropExpectedNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(EXPECTED_NOISE))


def drop_expected_noise() -> None:
    """Installs the filter on the absl logger (TFX logs through it) once."""
    absl_logger = logging.getLogger("absl")
    if not any(isinstance(f, _DropExpectedNoise) for f in absl_logger.filters):
        absl_logger.addFilter(_DropExpectedNoise())


def log_file(directory: str, command: str, create: bool = True) -> str:
    """`<directory>/<command>.log`; for a command that only reads `directory` (not `create`), the user's
    cache directory when `directory` does not exist or the log cannot be written there (a read-only
    model volume, as in production)."""
    path = os.path.join(directory, f"{command}.log")
    if not create and not _writable(directory, path):
        path = os.path.join(os.path.expanduser("~"), ".cache", "movielens-tfx", "logs", f"{command}.log")
    return path


def _writable(directory: str, path: str) -> bool:
    if not os.path.isdir(directory):
        return False
    return os.access(path, os.W_OK) if os.path.exists(path) else os.access(directory, os.W_OK)


@contextlib.contextmanager
def quiet_logs(log_path: str, verbose: bool = False) -> Iterator[None]:
    """Sends everything written to stderr to `log_path` (appended); with `verbose`, to the terminal too.

    Python code keeps a handle on the terminal through sys.stdout.
    """
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    drop_expected_noise()
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "a", buffering=1) as log:
        handler = None
        pump = None
        if verbose:
            pump = _Tee(log.fileno(), saved)
            os.dup2(pump.write_end, 2)
            os.close(pump.write_end)
        else:
            os.dup2(log.fileno(), 2)
            # Python logging records (absl, TFX, Beam) in the file, with their time.
            handler = logging.StreamHandler(log)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logging.getLogger().addHandler(handler)
        try:
            yield
        finally:
            if handler is not None:
                logging.getLogger().removeHandler(handler)
            sys.stderr.flush()
            os.dup2(saved, 2)
            if pump is not None:
                pump.join()
            os.close(saved)


class _Tee(threading.Thread):
    """Copies what is written to a pipe into two file descriptors until the pipe closes."""

    def __init__(self, *targets: int):
        super().__init__(name="log-tee", daemon=True)
        self.read_end, self.write_end = os.pipe()
        self.targets = targets
        self.start()

    def run(self) -> None:
        while True:
            chunk = os.read(self.read_end, 65536)
            if not chunk:
                break
            for target in self.targets:
                os.write(target, chunk)
        os.close(self.read_end)

    def join(self, timeout: float = 5.0) -> None:
        # A child process that inherited the pipe may hold it open: do not wait for it forever.
        super().join(timeout)
