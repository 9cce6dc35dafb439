"""Fetches an official MovieLens archive into a user cache, verified.

The expected size and sha256 of each GroupLens archive are the ones
tensorflow-datasets registers (`tensorflow_datasets/url_checksums/movielens.txt`).
A download goes to `<name>.zip.part` and becomes `<name>.zip` only once its
size and sha256 match, so a partial or corrupt file is never used; a cached
archive is verified again before use.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import urllib.request
from typing import Dict, Optional

from movielens.reader import DataError

DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens"
DEFAULT_DATASET = "ml-100k"


@dataclasses.dataclass(frozen=True)
class Archive:
    name: str  # e.g. "ml-100k.zip"
    size: int
    sha256: str


def registered_archives() -> Dict[str, Archive]:
    """Archive name -> expected size and sha256, from tensorflow-datasets."""
    import tensorflow_datasets

    path = os.path.join(os.path.dirname(tensorflow_datasets.__file__), "url_checksums", "movielens.txt")
    archives = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                url, size, sha256, name = line.split()
                archives[os.path.basename(url)] = Archive(os.path.basename(url), int(size), sha256)
    return archives


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "movielens-tfx")


def _verify(path: str, archive: Archive) -> Optional[str]:
    """None if `path` has the archive's size and sha256, else what is wrong."""
    size = os.path.getsize(path)
    if size != archive.size:
        return f"size {size} bytes, expected {archive.size}"
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != archive.sha256:
        return f"sha256 {digest.hexdigest()}, expected {archive.sha256}"
    return None


def fetch(
    dataset: str = DEFAULT_DATASET,
    cache_dir: Optional[str] = None,
    base_url: Optional[str] = None,
    archives: Optional[Dict[str, Archive]] = None,
    timeout: float = 60.0,
) -> str:
    """Path of the verified `<dataset>.zip` in the cache, downloading it if needed."""
    archives = archives if archives is not None else registered_archives()
    name = f"{dataset}.zip"
    if name not in archives:
        raise DataError(f"unknown MovieLens dataset {dataset!r}: known {', '.join(sorted(a[:-4] for a in archives))}")
    archive = archives[name]
    cache_dir = cache_dir or default_cache_dir()
    os.makedirs(cache_dir, exist_ok=True)
    target = os.path.join(cache_dir, name)
    if os.path.exists(target):
        if _verify(target, archive) is None:
            return target
        os.remove(target)  # corrupt cache entry: fetch again

    url = f"{(base_url or os.environ.get('MOVIELENS_TFX_BASE_URL') or DEFAULT_BASE_URL).rstrip('/')}/{name}"
    partial = target + ".part"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
            written = 0
            for block in iter(lambda: response.read(1 << 20), b""):
                written += len(block)
                if written > archive.size:
                    raise DataError(f"{url}: download is larger than the expected {archive.size} bytes")
                out.write(block)
    except DataError:
        _remove(partial)
        raise
    except OSError as e:
        _remove(partial)
        raise DataError(
            f"could not download {url}: {e}. Download it yourself and pass its path with --data"
        ) from None
    problem = _verify(partial, archive)
    if problem:
        _remove(partial)
        raise DataError(f"{url}: downloaded file is corrupt ({problem}); nothing was kept")
    os.replace(partial, target)
    return target


def _remove(path: str) -> None:
    if os.path.exists(path):
        os.remove(path)
