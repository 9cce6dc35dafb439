"""tensorflow-transform preprocessing (runs in the Transform and Trainer containers)."""
import core  # noqa: F401  (Keras 2 before TensorFlow)
