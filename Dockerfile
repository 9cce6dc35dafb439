# The pipeline image for Vertex AI Pipelines / Kubeflow Pipelines:
# TFX 1.16 plus TFRS, tf-keras and this package (model code by module name).
FROM gcr.io/tfx-oss-public/tfx:1.16.0
ENV TF_USE_LEGACY_KERAS=1
WORKDIR /pipeline
COPY requirements.lock pyproject.toml ./
RUN pip install --no-cache-dir tensorflow-recommenders==0.7.7 tf_keras==2.16.0 dill==0.4.1 matplotlib==3.10.9
COPY core core
COPY app app
COPY components components
COPY movielens movielens
COPY baselines baselines
COPY pipeline pipeline
COPY transform transform
COPY trainer trainer
RUN pip install --no-cache-dir --no-deps .
