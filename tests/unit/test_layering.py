"""Packages by layer: app -> pipeline -> components -> trainer / baselines / movielens -> retrieval / transform -> core.

A package imports only from the layers after it, never back up: model code
(trainer, transform) imports nothing of the orchestration or the application;
the MovieLens data (movielens) and the baseline algorithms (baselines) nothing
of the components, the pipeline or the application; core nothing of the
project. Each case imports its modules in a fresh interpreter and lists the
project packages that got loaded.
"""

import glob
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGES = ("app", "pipeline", "components", "trainer", "baselines", "movielens", "retrieval", "transform", "core")


def _modules(package):
    return [f"{package}.{os.path.basename(p)[:-3]}" for p in sorted(glob.glob(os.path.join(REPO, package, "*.py")))
            if not p.endswith("__init__.py")]


def _loaded(modules, watched):
    """The top-level names of `watched` loaded by importing `modules` in a fresh interpreter."""
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(watched)!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


def test_trainer_transform_and_the_tfma_metric_load_without_pipeline_or_app():
    modules = ["trainer.task", "trainer.tfma_metric", "transform.preprocessing", "trainer.families.tutorial",
               "trainer.families.history", "trainer.export"]
    assert _loaded(modules, ("pipeline", "app", "components", "baselines", "movielens")) == "[]"


@pytest.mark.parametrize("package", ["movielens", "baselines"])
def test_the_data_and_the_baselines_load_nothing_of_components_pipeline_or_app(package):
    modules = _modules(package)
    assert modules
    assert _loaded(modules, ("pipeline", "app", "components")) == "[]"


def test_the_baselines_are_plain_numpy_without_tensorflow():
    assert _loaded(_modules("baselines"), ("tensorflow", "tfx", "movielens")) == "[]"


def test_transform_and_core_load_nothing_above_them():
    assert _loaded(_modules("transform"), set(PACKAGES) - {"transform", "core"}) == "[]"
    assert _loaded(_modules("core"), set(PACKAGES) - {"core"}) == "[]"


def test_the_index_and_the_embeddings_file_load_nothing_above_them_nor_tensorflow_or_faiss():
    """`recommend` stays fast to start: faiss and TensorFlow load only when an index is built or a file read."""
    assert _loaded(_modules("retrieval"), set(PACKAGES) - {"retrieval", "core"} | {"tensorflow", "faiss"}) == "[]"
