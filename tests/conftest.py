"""Shared fixtures. The fast unit layer (tests/unit) runs first."""

import core  # noqa: F401  (first: Keras 2 before TensorFlow loads)

# isort: split
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ML_100K = os.path.join(REPO, "..", "shared", "data", "ml-100k")
UNIT = os.path.join(REPO, "tests", "unit")


def pytest_collection_modifyitems(items):
    """Unit tests first: a broken contract shows in seconds, before any pipeline runs."""
    items.sort(key=lambda item: not str(item.fspath).startswith(UNIT))


class Cli:
    """The installed `movielens-tfx` command, run in a subprocess."""

    path = os.path.join(os.path.dirname(sys.executable), "movielens-tfx")

    def __call__(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([self.path, *args], capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="session")
def cli() -> Cli:
    return Cli()


@pytest.fixture(scope="session")
def ml100k_path():
    if not os.path.exists(os.path.join(ML_100K, "u.data")):
        pytest.skip("the real ml-100k files are not at ../shared/data/ml-100k")
    return ML_100K
