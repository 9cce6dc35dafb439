"""TFX components of the MovieLens pipeline: spec, component and a thin executor each."""
import core  # noqa: F401  (Keras 2 before TensorFlow)
