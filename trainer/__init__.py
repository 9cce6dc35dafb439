"""The TFRS retrieval model, its run_fn and its TFMA metric (Trainer and Evaluator containers).

Imports nothing from `pipeline` or `app`: the pipeline names this code by module string.
"""
import core  # noqa: F401  (Keras 2 before TensorFlow)
