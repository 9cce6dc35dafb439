"""The pipeline DAG (`create_pipeline`) and its runners (local, Kubeflow / Vertex AI)."""
import core  # noqa: F401  (Keras 2 before TensorFlow)
