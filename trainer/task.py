"""The Trainer's `run_fn`: train the retrieval model, measure it, export it.

`fn_args.custom_config` holds a ModelConfig (pipeline.config) plus the catalog's
file pattern (added by components.retrieval_trainer). The run writes:
  serving_model_dir   the SavedModel (trainer.export): raw inputs -> top-K movies
  model_run_dir/metrics.json   FactorizedTopK accuracies on train and eval, loss
                      per epoch, wall time
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft

from components.retrieval_trainer import CATALOG_PATTERN_CONFIG_KEY
from pipeline.config import TOP_KS, ModelConfig
from trainer import export
from trainer.model import CandidateTower, QueryTower, RetrievalModel
from transform import features as F

METRICS_FILE = "metrics.json"
# Features whose values give every rating example a canonical position.
_ORDER_KEYS = (F.USER_INDEX, F.TITLE_INDEX, F.TIMESTAMP_Z)


def examples_dataset(
    file_pattern: str, feature_spec: Dict, batch_size: int, shuffle_seed=None
) -> tf.data.Dataset:
    """Batches of parsed examples from gzipped TFRecords, one pass.

    With `shuffle_seed` the examples are shuffled, a new seeded order each
    epoch, starting from a canonical order (sorted by user, title, timestamp):
    ExampleGen writes its splits in no fixed order, and this keeps training
    reproducible. The split is then held in memory.
    """
    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise FileNotFoundError(f"no example files match {file_pattern}")
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    if shuffle_seed is None:
        dataset = records
    else:
        everything = tf.concat(list(records.batch(100_000)), axis=0)
        keys = tf.io.parse_example(everything, {name: feature_spec[name] for name in _ORDER_KEYS})
        order = np.lexsort([keys[name].numpy() for name in reversed(_ORDER_KEYS)])
        dataset = tf.data.Dataset.from_tensor_slices(tf.gather(everything, order)).shuffle(
            len(order), seed=shuffle_seed, reshuffle_each_iteration=True
        )
    return (
        dataset.batch(batch_size)
        .map(lambda batch: tf.io.parse_example(batch, feature_spec), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def read_catalog(file_pattern: str) -> Dict[str, np.ndarray]:
    """The catalog: movie_id and movie_title, string arrays [num_movies]."""
    spec = {
        F.MOVIE_ID: tf.io.FixedLenFeature([], tf.string),
        F.MOVIE_TITLE: tf.io.FixedLenFeature([], tf.string),
    }
    columns = {F.MOVIE_ID: [], F.MOVIE_TITLE: []}
    for batch in examples_dataset(file_pattern, spec, 4096):
        for key in columns:
            columns[key].append(batch[key].numpy())
    return {key: np.concatenate(value) for key, value in columns.items()}


def candidate_probabilities(tf_transform_output: tft.TFTransformOutput) -> np.ndarray:
    """Each title's share of train ratings, float32 [num_titles + 1] (OOV last)."""
    titles = tf_transform_output.vocabulary_by_name(F.TITLE_VOCAB)
    counts = {}
    for line in tf_transform_output.vocabulary_by_name(F.TITLE_FREQUENCY_VOCAB):
        count, title = line.split(b" ", 1)
        counts[title] = int(count)
    values = np.array([counts[t] for t in titles] + [1], dtype=np.float64)
    return (values / values.sum()).astype(np.float32)


def build_model(tf_transform_output: tft.TFTransformOutput, config: ModelConfig) -> RetrievalModel:
    """The compiled retrieval model for `config`, sized from Transform's vocabularies."""
    tf.keras.utils.set_random_seed(config.seed)
    num_buckets = config_num_buckets(tf_transform_output)
    query_tower = QueryTower(tf_transform_output.vocabulary_size_by_name(F.USER_VOCAB), num_buckets, config)
    candidate_tower = CandidateTower(
        tf_transform_output.vocabulary_size_by_name(F.TITLE_VOCAB),
        tf_transform_output.vocabulary_size_by_name(F.TOKEN_VOCAB),
        config,
    )
    probability = None
    if config.sampling_bias_correction:
        probability = tf.constant(candidate_probabilities(tf_transform_output))
    model = RetrievalModel(query_tower, candidate_tower, config.temperature, probability, config.embedding_l2)
    optimizers = {"adagrad": tf.keras.optimizers.Adagrad, "adam": tf.keras.optimizers.Adam}
    if config.optimizer not in optimizers:
        raise ValueError(f"unknown optimizer {config.optimizer!r}: choose one of {', '.join(optimizers)}")
    model.compile(optimizer=optimizers[config.optimizer](learning_rate=config.learning_rate))
    return model


def config_num_buckets(tf_transform_output: tft.TFTransformOutput) -> int:
    """Largest timestamp bucket id Transform can emit (its boundary count)."""
    return int(tf_transform_output.transformed_metadata.schema.feature[_feature_index(
        tf_transform_output, F.TIMESTAMP_BUCKET)].int_domain.max)


def _feature_index(tf_transform_output, name: str) -> int:
    for i, feature in enumerate(tf_transform_output.transformed_metadata.schema.feature):
        if feature.name == name:
            return i
    raise KeyError(name)


def catalog_embeddings(model: RetrievalModel, tf_transform_output: tft.TFTransformOutput, titles: np.ndarray) -> tf.Tensor:
    """Candidate embeddings of the catalog, float32 [num_movies, embedding_dim]."""
    transform_layer = tf_transform_output.transform_features_layer()
    dataset = tf.data.Dataset.from_tensor_slices(titles).batch(4096)
    return tf.concat(
        [model.candidate_tower(export.transform_raw(transform_layer, {F.MOVIE_TITLE: batch})) for batch in dataset], axis=0
    )


def factorized_top_k(model: RetrievalModel, candidates: tf.Tensor, dataset: tf.data.Dataset, ks: Sequence[int]) -> Dict[str, float]:
    """tfrs.metrics.FactorizedTopK accuracies of `model` over the catalog.

    candidates: float32 [num_movies, embedding_dim]; dataset: batches of
    transformed rating examples.
    """
    metric = tfrs.metrics.FactorizedTopK(
        candidates=tf.data.Dataset.from_tensor_slices(candidates).batch(4096), ks=tuple(ks)
    )

    @tf.function
    def update(batch):
        metric.update_state(model.query_tower(batch), model.candidate_tower(batch))

    for batch in dataset:
        update(batch)
    return {f"top_{k}": float(value) for k, value in zip(ks, metric.result())}


def run_fn(fn_args) -> None:
    config = ModelConfig.from_custom_config(fn_args.custom_config)
    # Seeded and deterministic kernels: the same data and config train the same model.
    tf.config.experimental.enable_op_determinism()
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = tf_transform_output.transformed_feature_spec()
    train_files, eval_files = _one(fn_args.train_files), _one(fn_args.eval_files)

    model = build_model(tf_transform_output, config)
    train = examples_dataset(train_files, spec, config.batch_size, shuffle_seed=config.seed)
    started = time.time()
    history = model.fit(train, epochs=config.epochs, verbose=0)
    train_seconds = time.time() - started

    catalog = read_catalog(fn_args.custom_config[CATALOG_PATTERN_CONFIG_KEY])
    candidates = catalog_embeddings(model, tf_transform_output, catalog[F.MOVIE_TITLE])
    metrics = {
        "config": config.to_custom_config(),
        "train_seconds": train_seconds,
        "loss": [float(x) for x in history.history["loss"]],
        "catalog_size": int(len(catalog[F.MOVIE_ID])),
        "train": factorized_top_k(model, candidates, examples_dataset(train_files, spec, 4096), TOP_KS),
        "eval": factorized_top_k(model, candidates, examples_dataset(eval_files, spec, 4096), TOP_KS),
    }
    logging.info("retrieval metrics: %s", metrics)
    os.makedirs(fn_args.model_run_dir, exist_ok=True)
    with open(os.path.join(fn_args.model_run_dir, METRICS_FILE), "w") as f:
        json.dump(metrics, f, indent=2)

    export.save(
        fn_args.serving_model_dir,
        model,
        tf_transform_output,
        candidates,
        catalog[F.MOVIE_ID],
        catalog[F.MOVIE_TITLE],
        k=config.export_top_k,
        ks=TOP_KS,
    )


def _one(files: List[str]) -> str:
    return files[0] if isinstance(files, (list, tuple)) else files
