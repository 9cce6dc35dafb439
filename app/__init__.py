"""The application around the pipeline: command line, main job, report, lock, logs."""
import core  # noqa: F401  (Keras 2 before TensorFlow)
