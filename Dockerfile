# The pipeline image for Vertex AI Pipelines / Kubeflow Pipelines: TFX plus
# TFRS, tf-keras and this package (model code by module name).
# Default: the tfx121 stack (TFX 1.21, TensorFlow 2.21, Python 3.11; the image
# brings its own glibc, so the host's does not matter). The tfx116 stack:
#   docker build --build-arg TFX=1.16.0 --build-arg TF_KERAS=2.16.0 .
# (docs/stacks.md)
ARG TFX=1.21.0
FROM gcr.io/tfx-oss-public/tfx:${TFX}
ARG TF_KERAS=2.21.0
ENV TF_USE_LEGACY_KERAS=1
WORKDIR /pipeline
COPY requirements.lock requirements-tfx121.lock pyproject.toml ./
RUN pip install --no-cache-dir tensorflow-recommenders==0.7.7 tf_keras==${TF_KERAS} dill==0.4.1 matplotlib==3.10.9
COPY core core
COPY app app
COPY components components
COPY movielens movielens
COPY baselines baselines
COPY pipeline pipeline
COPY retrieval retrieval
COPY transform transform
COPY trainer trainer
RUN pip install --no-cache-dir --no-deps .
