"""The MovieLens data: reading and validating its layouts (reader), span layouts (spans), histories,
the examples ExampleGen writes, the download cache, synthetic data and file access. No TFX component
code: components/, pipeline/ and app/ build on it."""
import core  # noqa: F401  (Keras 2 before TensorFlow)
