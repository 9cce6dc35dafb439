"""What every process of the project needs before TensorFlow loads; dependency-free.

TFRS, tensorflow-transform and TFMA need Keras 2 (the `tf_keras` package), and
TensorFlow 2.16 picks Keras 3 unless TF_USE_LEGACY_KERAS is set when it is
first imported. Every package of the project imports `core` first, so this is
the one place that sets it. (A TFX container imports TensorFlow before any of
our code: the Dockerfile sets the same variable for it.)
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ start-up notices (CUDA, oneDNN) are not for the terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
