import os

# Before TensorFlow is imported anywhere: TFRS, TFT and TFMA need Keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ML_100K = os.path.join(REPO, "..", "shared", "data", "ml-100k")


@pytest.fixture(scope="session")
def ml100k_path():
    if not os.path.exists(os.path.join(ML_100K, "u.data")):
        pytest.skip("the real ml-100k files are not at ../shared/data/ml-100k")
    return ML_100K
