"""Downloading the archive: verified against registered size and sha256, served from 127.0.0.1."""

import functools
import hashlib
import http.server
import os
import threading

import pytest

from movielens import download, reader, synthetic
from movielens.reader import DataError


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _archive(root):
    path = synthetic.generate(str(root), num_users=10, num_movies=10, num_ratings=100, as_zip=True)
    data = open(path, "rb").read()
    return path, download.Archive("ml-100k.zip", len(data), hashlib.sha256(data).hexdigest())


def test_registered_checksums_come_from_tensorflow_datasets():
    archive = download.registered_archives()["ml-100k.zip"]
    assert archive.size == 4924029
    assert archive.sha256 == "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229"


def test_download_verifies_and_caches(server, tmp_path):
    root, url = server
    _, archive = _archive(root)
    cache = tmp_path / "cache"
    path = download.fetch("ml-100k", cache_dir=str(cache), base_url=url, archives={archive.name: archive})
    assert path == str(cache / "ml-100k.zip")
    assert len(reader.load(path).ratings) == 100
    os.remove(root / "ml-100k.zip")  # served no more: the verified cache answers
    assert download.fetch("ml-100k", cache_dir=str(cache), base_url=url, archives={archive.name: archive}) == path


def test_corrupt_download_is_never_used(server, tmp_path):
    root, url = server
    _, archive = _archive(root)
    wrong = download.Archive(archive.name, archive.size, "0" * 64)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="corrupt .*sha256"):
        download.fetch("ml-100k", cache_dir=str(cache), base_url=url, archives={archive.name: wrong})
    assert os.listdir(cache) == []
    short = download.Archive(archive.name, archive.size - 10, archive.sha256)
    with pytest.raises(DataError, match="larger than the expected"):
        download.fetch("ml-100k", cache_dir=str(cache), base_url=url, archives={archive.name: short})
    assert os.listdir(cache) == []


def test_unreachable_server_says_what_to_do(tmp_path):
    archive = download.Archive("ml-100k.zip", 1, "0" * 64)
    with pytest.raises(DataError, match="could not download .*pass its path with --data"):
        download.fetch("ml-100k", cache_dir=str(tmp_path), base_url="http://127.0.0.1:9", archives={archive.name: archive}, timeout=5)
