"""The Trainer's `run_fn`: build the retrieval model of the config's family, train it, measure it, export it.

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

The input pipeline is trainer.data's, the measurements and logs trainer.metrics', the towers the family's
(trainer.families); this module builds the model from them and runs the whole.

When TF_CONFIG names several workers (Vertex AI Training with several replicas), every worker runs
run_fn under MultiWorkerMirroredStrategy and only the chief writes the outputs above
(trainer.distribute); with one worker nothing changes.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tensorflow.python.autograph.core import config as autograph_config

from trainer import cluster, distribute, export, families, warm_start
from trainer.config import CATALOG_PATTERN_KEY, TENSORBOARD_STEPS, TENSORBOARD_TRAIN, TOP_KS, ModelConfig
from trainer.data import (
    METRICS_BATCH,
    metric_batches,
    rating_batches,
    read_catalog,
    sampled_ratings,
    shuffled_batches,
    transformed_ratings_and_order,
    worker_batches,
)
from trainer.metrics import (
    BatchSummaries,
    LearningRateLogger,
    catalog_embeddings,
    factorized_top_k,
    tensorboard_dir,
    write_metrics,
    write_top_k_summaries,
)
from trainer.model import RetrievalModel
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
# The Keras optimizer of each name in trainer.config.OPTIMIZERS.
OPTIMIZER_CLASSES = {"adagrad": tf.keras.optimizers.Adagrad, "adam": tf.keras.optimizers.Adam}


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
    """The compiled retrieval model for `config`: its family's towers, sized from Transform's vocabularies."""
    tf.keras.utils.set_random_seed(config.seed)
    family = families.get(config.family)
    query_tower, candidate_tower = family.towers(tf_transform_output, config)
    probability = None
    if config.sampling_bias_correction:
        probability = tf.constant(candidate_probabilities(tf_transform_output, *family.CANDIDATE_VOCABULARIES))
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


def run_fn(fn_args) -> None:
    """Trains, measures and exports (the module docstring); under MultiWorkerMirroredStrategy when
    TF_CONFIG names several workers (trainer.distribute), each worker then running the whole of it and
    only the chief writing to the outputs. With one worker the run is what it always was."""
    config = ModelConfig.from_custom_config(fn_args.custom_config)
    workers = cluster.from_environment()
    if not workers.distributed:
        train_and_export(fn_args, config, fn_args.serving_model_dir, fn_args.model_run_dir)
        return
    strategy = distribute.strategy(workers)  # before any other TensorFlow op
    with distribute.output_dirs(workers, fn_args.serving_model_dir, fn_args.model_run_dir) as (serving, run_dir):
        train_and_export(fn_args, config, serving, run_dir, strategy)
        distribute.barrier(strategy)  # no worker leaves before the chief has written


def train_and_export(fn_args, config: ModelConfig, serving_model_dir: str, model_run_dir: str,
                     strategy: Optional[tf.distribute.Strategy] = None) -> None:
    """run_fn's work, writing to serving_model_dir and model_run_dir; with a multi-worker `strategy`,
    this worker's part of it (trainer.distribute: global batch, sharding, negatives)."""
    family = families.get(config.family)
    # Seeded and deterministic kernels: the same data and config train the same model.
    tf.config.experimental.enable_op_determinism()
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    transform_layer = tf_transform_output.transform_features_layer()
    train_files, eval_files = fn_args.train_files, fn_args.eval_files

    def scope():  # where variables are created: mirrored on every worker (a scope is entered once)
        return strategy.scope() if strategy is not None else contextlib.nullcontext()

    with scope():
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
        with scope():
            warm = start_from_base(model, tf_transform_output, fn_args.base_model, train)
    epochs = config.epochs_to_train(bool(warm and warm["warm_started"]))
    log_dir = tensorboard_dir(model_run_dir, fn_args.custom_config)
    callbacks = [
        LearningRateLogger(),
        # Epoch logs; the step logs are BatchSummaries' (without the per-step cost).
        tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch", write_graph=False, profile_batch=0),
        BatchSummaries(f"{log_dir}/{TENSORBOARD_TRAIN}", TENSORBOARD_STEPS),
    ]
    fit_arguments = {}
    if strategy is not None:
        # Each worker's share of every global batch of config.batch_size rows (trainer.data.worker_batches),
        # as a distributed dataset: Keras neither re-shards nor re-batches it.
        train = strategy.distribute_datasets_from_function(
            lambda context: worker_batches(columns, config.batch_size, config.seed, context.num_input_pipelines,
                                           context.input_pipeline_id))
        fit_arguments["steps_per_epoch"] = -(-len(order) // config.batch_size)
    history = model.fit(train, epochs=epochs, verbose=0, callbacks=callbacks, **fit_arguments)
    train_seconds = time.time() - started

    catalog = read_catalog(fn_args.custom_config[CATALOG_PATTERN_KEY])
    candidates = catalog_embeddings(model, transform_layer, {name: catalog[name] for name in family.CANDIDATE_FEATURES})
    exclusions = catalog[F.MOVIE_ID] if config.exclude_history else None
    eval_batches = rating_batches(eval_files, transform_layer, METRICS_BATCH)
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
    write_metrics(model_run_dir, metrics)

    export.save(
        serving_model_dir,
        model,
        tf_transform_output,
        candidates,
        catalog[F.MOVIE_ID],
        catalog[F.MOVIE_TITLE],
        k=config.export_top_k,
        ks=TOP_KS,
        family=config.family,
        exclude_history=config.exclude_history,
    )
    warm_start.write_sidecar(serving_model_dir, model, model_vocabularies(model, tf_transform_output))
