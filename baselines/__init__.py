"""The baselines any model has to beat (baselines.algorithms): plain numpy / scipy, no TFX, no TensorFlow.

The Baselines component (components.baselines) runs them in the pipeline."""
import core  # noqa: F401  (Keras 2 before TensorFlow)
