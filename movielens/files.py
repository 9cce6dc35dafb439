"""File access for local paths (os) and remote URIs such as gs://bucket/dir (tf.io.gfile).

TensorFlow is imported only for a remote URI, so reading local data stays light.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from typing import BinaryIO, List, Tuple


def is_remote(path: str) -> bool:
    return "://" in path


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def isdir(path: str) -> bool:
    return _gfile().isdir(path) if is_remote(path) else os.path.isdir(path)


def join(base: str, *names: str) -> str:
    return posixpath.join(base, *names) if is_remote(base) else os.path.join(base, *names)


def listdir(path: str) -> List[str]:
    """Names of the entries of a directory (no trailing '/')."""
    names = _gfile().listdir(path) if is_remote(path) else os.listdir(path)
    return [n.rstrip("/") for n in names]


def makedirs(path: str) -> None:
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def remove_tree(path: str) -> None:
    """Deletes a directory and everything below it."""
    if is_remote(path):
        _gfile().rmtree(path)
    else:
        shutil.rmtree(path)


def write_bytes(path: str, data: bytes) -> None:
    if is_remote(path):
        with _gfile().GFile(path, "wb") as f:
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(data)


def open_binary(path: str) -> BinaryIO:
    return _gfile().GFile(path, "rb") if is_remote(path) else open(path, "rb")


def list_files(directory: str) -> List[str]:
    """Every file below `directory`, as '/'-separated paths relative to it."""
    walk = _gfile().walk if is_remote(directory) else os.walk
    out = []
    for root, _, files in walk(directory):
        rel = os.path.relpath(root, directory) if not is_remote(directory) else root[len(directory.rstrip("/")) + 1:]
        rel = "" if rel in (".", "") else rel.replace(os.sep, "/").rstrip("/")
        out.extend(posixpath.join(rel, f) if rel else f for f in files)
    return out


def identity(path: str) -> Tuple:
    """(path, modification time, size) of each file at `path` (a file or a directory's top level)."""
    if is_remote(path):
        gfile = _gfile()
        names = [join(path, f) for f in gfile.listdir(path)] if gfile.isdir(path) else [path]
        stats = [(n, gfile.stat(n)) for n in sorted(names) if not gfile.isdir(n)]
        return tuple((n, s.mtime_nsec, s.length) for n, s in stats)
    names = [os.path.join(path, f) for f in os.listdir(path)] if os.path.isdir(path) else [path]
    return tuple((n, os.stat(n).st_mtime_ns, os.stat(n).st_size) for n in sorted(names) if os.path.isfile(n))


def absolute(path: str) -> str:
    return path if is_remote(path) else os.path.abspath(path)


def split(path: str) -> Tuple[str, str]:
    """(parent directory, base name)."""
    path = path.rstrip("/")
    return (posixpath.split(path) if is_remote(path) else os.path.split(path))
