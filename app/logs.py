"""Keeps TensorFlow, Beam and TFX log output out of the terminal (it goes to a file)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def quiet_logs(log_path: str) -> Iterator[None]:
    """Sends everything written to stderr (Python logging, absl, TF's C++ logs) to `log_path`.

    Python code keeps a handle on the terminal through sys.stdout.
    """
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(log_path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 2)
        handler = logging.StreamHandler(log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            yield
        finally:
            root.removeHandler(handler)
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
