"""What the Trainer measures and writes: FactorizedTopK accuracies over the catalog (with the exported
model's exclusions), metrics.json, and the TensorBoard logs (the epoch and step callbacks, the top-k
accuracies after training)."""

from __future__ import annotations

import json
import time
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from trainer import export
from trainer.config import (
    METRICS_FILE,
    TENSORBOARD_EVAL,
    TENSORBOARD_RUN_KEY,
    TENSORBOARD_TRAIN,
    ModelConfig,
    top_k_tag,
)
from trainer.data import METRICS_BATCH, RAW_MOVIE_ID
from trainer.model import RetrievalModel
from transform import features as F


def catalog_embeddings(model: RetrievalModel, transform_layer, catalog: Dict[str, np.ndarray]) -> tf.Tensor:
    """Candidate embeddings of the catalog, float32 [num_movies, embedding_dim]."""
    dataset = tf.data.Dataset.from_tensor_slices(catalog).batch(METRICS_BATCH)
    return tf.concat([model.candidate_tower(export.transform_raw(transform_layer, batch)) for batch in dataset], axis=0)


def _batch_function(dataset):
    """tf.function for one batch of `dataset`: traced once for a tf.data.Dataset (its element_spec:
    any batch size, any list width), by shape otherwise."""
    if isinstance(dataset, tf.data.Dataset):
        return tf.function(input_signature=[dataset.element_spec])
    return tf.function(reduce_retracing=True)


def factorized_top_k(model: RetrievalModel, candidates: tf.Tensor, dataset: tf.data.Dataset, ks: Sequence[int],
                     catalog_ids: Optional[np.ndarray] = None, per_rating: Optional[Dict[int, np.ndarray]] = None
                     ) -> Dict[int, float]:
    """tfrs.metrics.FactorizedTopK accuracies of `model` over the catalog.

    candidates: float32 [num_movies, embedding_dim]; dataset: batches of
    transformed rating features (rating_batches). With `catalog_ids` (the
    candidates' movie ids), movies in each rating's history and rated_before are excluded,
    with the exported model's own functions (export.exclude, export.hits):
    a hit at k when fewer than k non-excluded catalog movies score strictly
    higher than the rated movie (FactorizedTopK's definition). With catalog_ids
    and `per_rating`, that dict also gets {k: each rating's hit, float32
    [ratings]}, in the dataset's order (the paired comparisons of the benches).
    """
    if catalog_ids is None:
        # A brute-force index (one matmul and top-k per batch) rather than a
        # streamed candidate dataset: the same scores, without a tf.data pass
        # over the catalog for every batch.
        index = tfrs.layers.factorized_top_k.BruteForce(k=max(ks))
        index.index(candidates)
        metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=tuple(ks))

        @_batch_function(dataset)
        def update(batch):
            metric.update_state(model.query_tower(batch), model.candidate_tower(batch))

        for batch in dataset:
            update(batch)
        return {int(k): float(value) for k, value in zip(ks, metric.result(), strict=True)}

    positions = export.catalog_positions(catalog_ids)
    hits, count = np.zeros(len(ks)), 0

    @_batch_function(dataset)
    def batch_hits(batch):
        query = model.query_tower(batch)
        scores = tf.matmul(query, candidates, transpose_b=True)
        for name in (F.HISTORY, F.RATED_BEFORE):
            scores = export.exclude(scores, batch[name], positions)
        fallback = tf.reduce_sum(query * model.candidate_tower(batch), axis=1)
        positive = export.positive_scores(scores, batch[RAW_MOVIE_ID], fallback, positions)
        return tf.stack(list(export.hits(scores, positive, ks).values()))

    kept = []
    for batch in dataset:
        got = batch_hits(batch).numpy()
        hits += got.sum(axis=1)
        count += got.shape[1]
        if per_rating is not None:
            kept.append(got)
    if per_rating is not None:
        every = np.concatenate(kept, axis=1)
        per_rating.update({int(k): every[i] for i, k in enumerate(ks)})
    return {int(k): float(h / count) for k, h in zip(ks, hits, strict=True)}


def write_metrics(model_run_dir: str, metrics: Dict) -> str:
    """Writes `metrics` to model_run_dir/metrics.json and returns its path.

    tf.io.gfile: model_run_dir may be a gs:// URI (Vertex AI, Kubeflow).
    """
    tf.io.gfile.makedirs(model_run_dir)
    path = f"{model_run_dir.rstrip('/')}/{METRICS_FILE}"
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(metrics, f, indent=2)
    return path


class LearningRateLogger(tf.keras.callbacks.Callback):
    """Adds the optimizer's learning rate to each epoch's logs.

    Keras' TensorBoard callback, which comes after it, writes it as
    epoch_learning_rate (by itself it logs only learning-rate schedules).
    """

    _supports_tf_logs = True  # no per-batch conversion of the logs to numpy on its account

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(tf.keras.backend.get_value(self.model.optimizer.learning_rate))


class BatchSummaries(tf.keras.callbacks.Callback):
    """Every `every` steps, the step's logs (batch_loss, ...) and the steps per second since the last write, to
    `log_dir`: what Keras' TensorBoard callback writes with update_freq and write_steps_per_second, the same
    tags at the same steps, without its work on every step. That callback runs eager summary ops after
    every step (one per log and the step rate, each asking the writer's record_if whether to record): in
    the pipeline's process that was more of the main thread than the training step itself (py-spy, 1M
    ratings: 291 samples against 168), and the next step waits for it.
    """

    _supports_tf_logs = True  # the logs stay tensors: no per-step conversion to numpy

    def __init__(self, log_dir: str, every: int):
        super().__init__()
        self._log_dir, self._every = log_dir, every
        self._writer = None

    def on_train_begin(self, logs=None):
        self._writer = tf.summary.create_file_writer(self._log_dir)
        self._step, self._since = 0, time.time()  # steps of this fit (Keras' train counter)

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        if self._step % self._every:
            return
        now = time.time()
        with self._writer.as_default(), tf.summary.record_if(True):
            tf.summary.scalar("batch_steps_per_second", self._every / max(now - self._since, 1e-9), step=self._step)
            for name, value in (logs or {}).items():
                tf.summary.scalar(f"batch_{name}", value, step=self._step)
        self._since = now

    def on_train_end(self, logs=None):
        self._writer.close()


def tensorboard_dir(model_run_dir: str, custom_config: Dict) -> str:
    """Where the run's TensorBoard logs go: <model_run_dir>/<run> (trainer.config.TENSORBOARD_RUN_KEY)."""
    run = custom_config.get(TENSORBOARD_RUN_KEY)
    return f"{model_run_dir.rstrip('/')}/{run}" if run else model_run_dir.rstrip("/")


def write_top_k_summaries(log_dir: str, metrics: Dict, config: ModelConfig, epochs: int) -> None:
    """Top-k accuracies (train sample and eval, after `epochs` epochs) and the config, as TensorBoard summaries."""
    step = epochs - 1  # measured after the last epoch, as Keras numbers epochs
    for split, run in (("train", TENSORBOARD_TRAIN), ("eval", TENSORBOARD_EVAL)):
        writer = tf.summary.create_file_writer(f"{log_dir}/{run}")
        with writer.as_default():
            for k, value in metrics[split].items():
                tf.summary.scalar(top_k_tag(k), value, step=step)
            if split == "train":
                tf.summary.text("config", "```\n" + json.dumps(config.to_custom_config(), indent=2, sort_keys=True) + "\n```", step=0)
        writer.close()

