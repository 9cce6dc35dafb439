"""The Trainer's `run_fn`: train the retrieval model, measure it, export it.

`fn_args.custom_config` holds a ModelConfig (trainer.config) plus the catalog's
file pattern (added by components.retrieval_trainer) and the TensorBoard run's
name (the job's variant, added by the pipeline). The run writes:
  serving_model_dir   the SavedModel (trainer.export): raw inputs -> top-K movies
  serving_model_dir/assets.extra/warm_start   the weights and vocabularies a later
                      run can warm start from (trainer.warm_start)
  model_run_dir/metrics.json   FactorizedTopK accuracies on train and eval, loss
                      per epoch, epochs trained, wall time; with warm_start in the
                      config, what was copied from the base model (`warm_start`)
  model_run_dir/<run>/{train,eval}   TensorBoard logs (trainer.config):
                      loss per epoch and per TENSORBOARD_STEPS steps, learning
                      rate, top-k accuracy on train and eval
"""

from __future__ import annotations

import json
import logging
import time
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft
from tensorflow.python.autograph.core import config as autograph_config

from trainer import export, warm_start
from trainer.config import (
    CATALOG_PATTERN_KEY,
    METRICS_FILE,
    TENSORBOARD_EVAL,
    TENSORBOARD_RUN_KEY,
    TENSORBOARD_STEPS,
    TENSORBOARD_TRAIN,
    TOP_KS,
    ModelConfig,
    top_k_tag,
)
from trainer.model import CandidateTower, HistoryQueryTower, MovieCandidateTower, QueryTower, RetrievalModel
from transform import features as F

# AutoGraph leaves Keras alone by its module name, "keras"; the Keras 2 that
# TFRS and TFT need is now the package "tf_keras", which it converts function
# by function: ~12 s of the first training run. Give tf_keras the rule Keras 2
# had under TF <= 2.15.
if not any(getattr(rule, "_prefix", None) == "tf_keras" for rule in autograph_config.CONVERSION_RULES):
    autograph_config.CONVERSION_RULES = (autograph_config.DoNotConvert("tf_keras"),) + autograph_config.CONVERSION_RULES

# Train accuracy is a diagnostic (over-fitting): it is measured on a seeded
# sample of at most this many train examples: as many as ml-100k's eval split
# (binomial standard error 0.003 at top-100); the whole 80,000 cost 2-4 s more
# per model.
TRAIN_METRICS_MAX_EXAMPLES = 20_000
_METRICS_BATCH = 4096
# The Keras optimizer of each name in trainer.config.OPTIMIZERS.
OPTIMIZER_CLASSES = {"adagrad": tf.keras.optimizers.Adagrad, "adam": tf.keras.optimizers.Adam}
# The raw rating features the model reads, through the Transform layer.
RAW_RATING_SPEC = F.raw_rating_spec()
# Features whose values give every rating example a canonical position.
_ORDER_KEYS = (F.USER_ID, F.MOVIE_TITLE, F.TIMESTAMP)


# One file pattern, or several (TFX's train_files of a span run's window: one per span).
Patterns = Union[str, Sequence[str]]


def records(file_pattern: Patterns) -> tf.data.Dataset:
    """Serialized tf.Examples, string [], from gzipped TFRecords, in file order (sorted file names)."""
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = sorted(name for pattern in patterns for name in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no example files match {', '.join(patterns)}")
    return tf.data.TFRecordDataset(files, compression_type="GZIP")


def parsed(file_pattern: Patterns, feature_spec: Dict, batch_size: int) -> tf.data.Dataset:
    """Batches of examples parsed with `feature_spec`, in file order."""
    return records(file_pattern).batch(batch_size).map(lambda batch: tf.io.parse_example(batch, feature_spec))


def _column(parts: List[Dict[str, tf.Tensor]], name: str):
    """One feature of every batch: a tensor [n], or a RaggedTensor [n, None] for a list feature."""
    values = [part[name] for part in parts]
    if isinstance(values[0], tf.SparseTensor):
        return tf.concat([tf.RaggedTensor.from_sparse(v) for v in values], axis=0)
    return tf.concat(values, axis=0)


def _order(parts: List[Dict[str, tf.Tensor]]) -> np.ndarray:
    """canonical_order of parsed batches that carry the _ORDER_KEYS."""
    return np.lexsort([_column(parts, name).numpy() for name in reversed(_ORDER_KEYS)])


def canonical_order(file_pattern: Patterns) -> np.ndarray:
    """int64 [num_ratings]: the file-order positions of the split's ratings sorted by user, title,
    timestamp (ties in file order), so that the order does not depend on how the files were written."""
    return _order(list(parsed(file_pattern, {name: RAW_RATING_SPEC[name] for name in _ORDER_KEYS}, 100_000)))


def raw_ratings(file_pattern: Patterns) -> Dict[str, tf.Tensor]:
    """The split's raw model inputs (RAW_RATING_SPEC), each a tensor [num_ratings] (ragged
    [num_ratings, None] for the history lists), in canonical_order whatever the file order."""
    parts = list(parsed(file_pattern, RAW_RATING_SPEC, 100_000))
    order = _order(parts)  # from the batches already read: the files once
    return {name: tf.gather(_column(parts, name), order) for name in RAW_RATING_SPEC}


# The raw rated movie id, kept next to the transformed features (for the metric).
RAW_MOVIE_ID = "raw_movie_id"


def _with_raw_history(transform_layer):
    """Raw batch -> transformed features plus the raw history (the movies to exclude from the top-K)
    and the raw rated movie id."""
    def apply(batch):
        out = export.transform_raw(transform_layer, batch)
        for name in (F.HISTORY, F.RATED_BEFORE):
            movies = batch[name]
            out[name] = movies if isinstance(movies, tf.SparseTensor) else movies.to_sparse()
        out[RAW_MOVIE_ID] = batch[F.MOVIE_ID]
        return out
    return apply


def _columns_of(parts: List[Dict[str, tf.Tensor]]) -> Dict[str, tf.Tensor]:
    """Batches of features concatenated into columns (_column), every feature of the first batch."""
    return {name: _column(parts, name) for name in parts[0]}


def _rows(columns: Dict[str, tf.Tensor], rows: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The rows `rows` of every column; ragged columns come back as SparseTensors (as parsed lists are)."""
    out = {}
    for name, column in columns.items():
        value = tf.gather(column, rows)
        out[name] = value.to_sparse() if isinstance(value, tf.RaggedTensor) else value
    return out


def _row_batches(columns: Dict[str, tf.Tensor], rows: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    return rows.batch(batch_size).map(lambda batch: _rows(columns, batch))


# What training reads: every raw input but rated_before. That list (every movie
# the user rated before, history or not) only sets the metrics' exclusions, and
# it is the longest: at 1M synthetic ratings about 80 ids a rating, 64M strings.
TRAINING_SPEC = {name: spec for name, spec in RAW_RATING_SPEC.items() if name != F.RATED_BEFORE}


def transformed_ratings(file_pattern: Patterns, transform_layer, order: Optional[np.ndarray] = None,
                        chunk_size: int = 16_384) -> Dict[str, tf.Tensor]:
    """`transform_layer` applied once to every rating of the split (TRAINING_SPEC), streamed from the
    files chunk by chunk: transformed columns (ragged [rows, None] for list features) in canonical_order
    (`order`, computed when not given). Only transformed features are held (int ids, not raw strings)."""
    return transformed_ratings_and_order(file_pattern, transform_layer, order, chunk_size)[0]


def transformed_ratings_and_order(file_pattern: Patterns, transform_layer, order: Optional[np.ndarray] = None,
                                  chunk_size: int = 16_384):
    """(transformed_ratings, canonical_order) of the split from ONE read of its files: without `order`,
    the order keys are kept from the same parsed chunks (canonical_order read the files again: 8 s of
    a Trainer at 1M ratings). The same columns and order as transformed_ratings and canonical_order."""
    def transform(raw):
        keys = {name: raw[name] for name in _ORDER_KEYS} if order is None else {}
        return export.transform_raw(transform_layer, raw), keys
    chunks = list(parsed(file_pattern, TRAINING_SPEC, chunk_size).map(transform, num_parallel_calls=tf.data.AUTOTUNE))
    columns = _columns_of([transformed for transformed, _ in chunks])
    if order is None:
        order = _order([keys for _, keys in chunks])
    return {name: tf.gather(column, order) for name, column in columns.items()}, order


def shuffled_batches(columns: Dict[str, tf.Tensor], batch_size: int, seed: int) -> tf.data.Dataset:
    """Batches of the rows of `columns`, each pass in a new seeded order: the same columns and seed give
    the same batches. Shuffling row numbers, not the rows, keeps one copy of the data (8M ratings:
    12 GB peak when the examples were shuffled)."""
    size = int(next(iter(columns.values())).shape[0])
    rows = tf.data.Dataset.range(size).shuffle(size, seed=seed, reshuffle_each_iteration=True)
    return _row_batches(columns, rows, batch_size).prefetch(tf.data.AUTOTUNE)


def sampled_ratings(file_pattern: Patterns, order: np.ndarray, max_rows: int, seed: int) -> Dict[str, tf.Tensor]:
    """Every raw input (RAW_RATING_SPEC, rated_before included) of a seeded sample of at most `max_rows`
    of the split's ratings (all when there are fewer): the sample drawn over canonical positions (`order`:
    canonical_order), the rows read in file order, streamed; only the sample is held, and only the
    sample's records are parsed (parsing all of them, rated_before's ~80 strings a rating at 1M, was
    7 s of a Trainer, now 2 s; the same rows and values)."""
    size = len(order)
    positions = np.arange(size) if size <= max_rows else np.random.default_rng(seed).permutation(size)[:max_rows]
    keep = np.zeros(size, bool)
    keep[order[positions]] = True
    parts, start = [], 0
    for serialized in records(file_pattern).batch(100_000):
        count = int(tf.shape(serialized)[0])
        rows = np.flatnonzero(keep[start:start + count])
        start += count
        batch = tf.io.parse_example(tf.gather(serialized, rows), RAW_RATING_SPEC)
        parts.append({name: tf.RaggedTensor.from_sparse(value) if isinstance(value, tf.SparseTensor) else value
                      for name, value in batch.items()})
    return {name: tf.concat([part[name] for part in parts], axis=0) for name in RAW_RATING_SPEC}


def rating_batches(file_pattern: Patterns, transform_layer, batch_size: int, shuffle_seed=None) -> tf.data.Dataset:
    """Batches of rating features from ExampleGen's raw examples through `transform_layer` (the
    Transform layer the exported model applies to its raw inputs).

    Without `shuffle_seed` (measuring): one pass in file order, streamed; each batch also carries the
    raw history, rated_before and movie id (the metric's exclusions). With `shuffle_seed` (training):
    the transformed features alone, the split transformed ONCE and held in memory (raw_ratings,
    transformed_ratings), each pass in a new seeded order (shuffled_batches).
    """
    if shuffle_seed is not None:
        return shuffled_batches(transformed_ratings(file_pattern, transform_layer), batch_size, shuffle_seed)
    raw = parsed(file_pattern, RAW_RATING_SPEC, batch_size)
    return raw.map(_with_raw_history(transform_layer), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def metric_batches(columns: Dict[str, tf.Tensor], transform_layer) -> tf.data.Dataset:
    """Batches of raw rating `columns` through `transform_layer`, with the raw history, rated_before and
    movie id (as rating_batches without a seed), for factorized_top_k."""
    size = int(next(iter(columns.values())).shape[0])
    raw = _row_batches(columns, tf.data.Dataset.range(size), _METRICS_BATCH)
    return raw.map(_with_raw_history(transform_layer), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def read_catalog(file_pattern: str) -> Dict[str, np.ndarray]:
    """The catalog: movie_id and movie_title, string arrays [num_movies]."""
    columns = {F.MOVIE_ID: [], F.MOVIE_TITLE: []}
    for batch in parsed(file_pattern, F.catalog_spec(), _METRICS_BATCH):
        for key in columns:
            columns[key].append(batch[key].numpy())
    return {key: np.concatenate(value) for key, value in columns.items()}


def candidate_probabilities(tf_transform_output: tft.TFTransformOutput, vocabulary: str, frequencies: str) -> np.ndarray:
    """Each candidate's share of train ratings, float32 [vocabulary size + 1] (OOV last).

    vocabulary / frequencies: Transform's vocabulary of the candidate key and
    the same with train counts (lines "<count> <key>").
    """
    keys = tf_transform_output.vocabulary_by_name(vocabulary)
    counts = {}
    for line in tf_transform_output.vocabulary_by_name(frequencies):
        count, key = line.split(b" ", 1)
        counts[key] = int(count)
    values = np.array([counts[k] for k in keys] + [1], dtype=np.float64)
    return (values / values.sum()).astype(np.float32)


def build_model(tf_transform_output: tft.TFTransformOutput, config: ModelConfig) -> RetrievalModel:
    """The compiled retrieval model for `config`, sized from Transform's vocabularies."""
    tf.keras.utils.set_random_seed(config.seed)
    if config.history_length:
        num_movies = tf_transform_output.vocabulary_size_by_name(F.MOVIE_VOCAB)
        candidate_tower = MovieCandidateTower(num_movies, config)
        query_tower = HistoryQueryTower(candidate_tower, num_movies, config)
        vocabularies = (F.MOVIE_VOCAB, F.MOVIE_FREQUENCY_VOCAB)
    else:  # the tutorial's towers
        if F.USER_INDEX not in tf_transform_output.transformed_feature_spec():
            raise ValueError("the Transform graph has no tutorial-tower features (TransformConfig.tutorial_features "
                             "is off: it was built for a model with history); run Transform for this model config")
        num_buckets = config_num_buckets(tf_transform_output)
        query_tower = QueryTower(tf_transform_output.vocabulary_size_by_name(F.USER_VOCAB), num_buckets, config)
        candidate_tower = CandidateTower(
            tf_transform_output.vocabulary_size_by_name(F.TITLE_VOCAB),
            tf_transform_output.vocabulary_size_by_name(F.TOKEN_VOCAB),
            config,
        )
        vocabularies = (F.TITLE_VOCAB, F.TITLE_FREQUENCY_VOCAB)
    probability = None
    if config.sampling_bias_correction:
        probability = tf.constant(candidate_probabilities(tf_transform_output, *vocabularies))
    model = RetrievalModel(query_tower, candidate_tower, config.temperature, probability, config.embedding_l2)
    model.compile(optimizer=OPTIMIZER_CLASSES[config.optimizer](learning_rate=config.learning_rate))
    return model


def model_vocabularies(model: RetrievalModel, tf_transform_output: tft.TFTransformOutput) -> Dict[str, List[bytes]]:
    """{name: ids, bytes in row order} of every Transform vocabulary indexing one of the model's tables."""
    names = set(warm_start.vocabulary_tables(model).values())
    return {name: tf_transform_output.vocabulary_by_name(name) for name in sorted(names)}


def start_from_base(model: RetrievalModel, tf_transform_output: tft.TFTransformOutput, base_model: Optional[str],
                    batches: tf.data.Dataset) -> Dict:
    """Warm starts `model` from the base model's sidecar (trainer.warm_start); returns the summary.

    Keras creates a model's weights on its first call, so both towers are
    first called on one batch of `batches` (transformed rating features).
    Without a base model (the pipeline's first run) the model is left alone:
    it trains exactly as with warm_start off.
    """
    if base_model is None:
        return warm_start.warm_start(model, None, {})  # the summary of a cold start
    for batch in batches.take(1):
        model.query_tower(batch)
        model.candidate_tower(batch)
    return warm_start.warm_start(model, base_model, model_vocabularies(model, tf_transform_output))


def config_num_buckets(tf_transform_output: tft.TFTransformOutput) -> int:
    """Largest timestamp bucket id Transform can emit (its boundary count)."""
    return int(tf_transform_output.transformed_metadata.schema.feature[_feature_index(
        tf_transform_output, F.TIMESTAMP_BUCKET)].int_domain.max)


def _feature_index(tf_transform_output, name: str) -> int:
    for i, feature in enumerate(tf_transform_output.transformed_metadata.schema.feature):
        if feature.name == name:
            return i
    raise KeyError(name)


def catalog_embeddings(model: RetrievalModel, transform_layer, catalog: Dict[str, np.ndarray]) -> tf.Tensor:
    """Candidate embeddings of the catalog, float32 [num_movies, embedding_dim]."""
    dataset = tf.data.Dataset.from_tensor_slices(catalog).batch(_METRICS_BATCH)
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


def run_fn(fn_args) -> None:
    config = ModelConfig.from_custom_config(fn_args.custom_config)
    # Seeded and deterministic kernels: the same data and config train the same model.
    tf.config.experimental.enable_op_determinism()
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    transform_layer = tf_transform_output.transform_features_layer()
    train_files, eval_files = fn_args.train_files, fn_args.eval_files

    model = build_model(tf_transform_output, config)
    # Transformed once, not once per epoch; raw inputs are held only for the train metric's sample.
    columns, order = transformed_ratings_and_order(train_files, transform_layer)
    train = shuffled_batches(columns, config.batch_size, config.seed)
    train_sample = metric_batches(sampled_ratings(train_files, order, TRAIN_METRICS_MAX_EXAMPLES, config.seed),
                                  transform_layer)
    started = time.time()
    warm = None
    if config.warm_start:
        # fn_args.base_model: the latest blessed model's serving directory (the
        # Trainer's base_model channel), None on the first run.
        warm = start_from_base(model, tf_transform_output, fn_args.base_model, train)
    epochs = config.epochs_to_train(bool(warm and warm["warm_started"]))
    log_dir = tensorboard_dir(fn_args.model_run_dir, fn_args.custom_config)
    callbacks = [
        LearningRateLogger(),
        # Epoch logs; the step logs are BatchSummaries' (without the per-step cost).
        tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch", write_graph=False, profile_batch=0),
        BatchSummaries(f"{log_dir}/{TENSORBOARD_TRAIN}", TENSORBOARD_STEPS),
    ]
    history = model.fit(train, epochs=epochs, verbose=0, callbacks=callbacks)
    train_seconds = time.time() - started

    catalog = read_catalog(fn_args.custom_config[CATALOG_PATTERN_KEY])
    candidate_names = [F.MOVIE_TITLE] + ([F.MOVIE_ID] if config.history_length else [])
    candidates = catalog_embeddings(model, transform_layer, {name: catalog[name] for name in candidate_names})
    exclusions = catalog[F.MOVIE_ID] if config.exclude_history else None
    eval_batches = rating_batches(eval_files, transform_layer, _METRICS_BATCH)
    metrics = {
        "config": config.to_custom_config(),
        "train_seconds": train_seconds,
        "epochs": epochs,
        "loss": [float(x) for x in history.history["loss"]],
        "catalog_size": int(len(catalog[F.MOVIE_ID])),
        "train": factorized_top_k(model, candidates, train_sample, TOP_KS, exclusions),
        "eval": factorized_top_k(model, candidates, eval_batches, TOP_KS, exclusions),
    }
    if warm is not None:
        metrics["warm_start"] = warm
    logging.info("retrieval metrics: %s", metrics)
    write_top_k_summaries(log_dir, metrics, config, epochs)
    write_metrics(fn_args.model_run_dir, metrics)

    export.save(
        fn_args.serving_model_dir,
        model,
        tf_transform_output,
        candidates,
        catalog[F.MOVIE_ID],
        catalog[F.MOVIE_TITLE],
        k=config.export_top_k,
        ks=TOP_KS,
        uses_history=bool(config.history_length),
        exclude_history=config.exclude_history,
    )
    warm_start.write_sidecar(fn_args.serving_model_dir, model, model_vocabularies(model, tf_transform_output))
