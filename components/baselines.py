"""Baselines: the recommenders any deep model has to beat, scored on ExampleGen's eval split.

Every baseline row of the report comes from here, and so does the Evaluator's
default value floor (components.evaluator): the best baseline's top-GATE_K
accuracy. As a component on ExampleGen's output, the baselines run wherever
the pipeline runs (locally, Vertex AI, Kubeflow), on exactly the rows the
Evaluator scores the models on, with the model's rule for movies the user
already rated (`exclude_history`: the example's history and rated_before are
never recommended, as in serving).

The algorithms are plain functions in `baselines.algorithms` (popularity,
recent popularity, item-kNN, EASE); this module is the component: its spec,
and an executor that reads the examples into `algorithms.Split`s, calls
`algorithms.compute` and writes the output artifact: `baselines.json`
({name: {k: accuracy}} plus "notes") and each eval rating's top-GATE_K hits
(trainer.tfma_metric.write_per_rating_hits).
"""

from __future__ import annotations

import json
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from baselines.algorithms import Ragged, Split, compute
from core.comparison import GATE_K
from trainer import tfma_metric
from trainer.config import metrics_by_k
from transform import features as F

EXAMPLES_KEY = "examples"
TRAIN_EXAMPLES_KEY = "train_examples"
TRAIN_SPLIT_KEY = "train_split"
CATALOG_KEY = "catalog"
BASELINES_KEY = "baselines"
EXCLUDE_HISTORY_KEY = "exclude_history"
BASELINES_FILE = "baselines.json"


# ---------------------------------------------------------------------------
# Artifact I/O (tf.io.gfile: the artifact may be on gs://).


def write(baselines: Mapping[str, Mapping], artifact: types.Artifact) -> None:
    tf.io.gfile.makedirs(artifact.uri)
    with tf.io.gfile.GFile(f"{artifact.uri.rstrip('/')}/{BASELINES_FILE}", "w") as f:
        json.dump(baselines, f, indent=2)


def per_rating_hits_path(uri: str) -> str:
    """Where a Baselines artifact holds each eval rating's hits (trainer.tfma_metric.write_per_rating_hits)."""
    return f"{uri.rstrip('/')}/{tfma_metric.PER_RATING_HITS_FILE}"


def read(uri: str) -> Dict[str, Dict]:
    """{name: {k: accuracy}} (and "notes") from a Baselines output artifact's URI."""
    with tf.io.gfile.GFile(f"{uri.rstrip('/')}/{BASELINES_FILE}") as f:
        stored = json.load(f)
    return {name: (values if name == "notes" else metrics_by_k(values)) for name, values in stored.items()}


def _split_files(examples: Sequence[types.Artifact], split: str) -> List[str]:
    return sorted(name for artifact in examples
                  for name in tf.io.gfile.glob(f"{artifact_utils.get_split_uri([artifact], split).rstrip('/')}/*"))


def _ragged(values: tf.SparseTensor, table: tf.lookup.StaticHashTable) -> Ragged:
    """Each row's catalog indices of `values`' ids, in order; ids not in the catalog dropped."""
    rows = values.indices[:, 0].numpy()
    found = table.lookup(values.values).numpy()
    known = found >= 0
    counts = np.bincount(rows[known], minlength=int(values.dense_shape[0]))
    return Ragged(found[known].astype(np.int32), np.concatenate([[0], np.cumsum(counts)]))


def _read_split(examples: Sequence[types.Artifact], split: str, index: Mapping[bytes, int],
                histories: bool = True) -> Split:
    """The ratings of `split` of every artifact of `examples` (a span run's window: several). Without
    `histories` (the train split: the baselines only count its ratings), no history or rated_before is
    parsed and the Split's are empty."""
    spec = {
        F.USER_ID: tf.io.FixedLenFeature([], tf.string),
        F.MOVIE_ID: tf.io.FixedLenFeature([], tf.string),
        F.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
    }
    if histories:
        spec.update({F.HISTORY: tf.io.VarLenFeature(tf.string), F.RATED_BEFORE: tf.io.VarLenFeature(tf.string)})
    # Vectorised: a dict lookup and np.union1d per rating were most of the component's time.
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(index), tf.string),
                                            tf.constant(list(index.values()), tf.int64)), -1)
    users, items, timestamps, history, rated_before = [], [], [], [], []
    dataset = tf.data.TFRecordDataset(_split_files(examples, split), compression_type="GZIP").batch(50_000)
    for batch in dataset:
        parsed = tf.io.parse_example(batch, spec)
        users.append(parsed[F.USER_ID].numpy())
        movies = table.lookup(parsed[F.MOVIE_ID]).numpy()
        if (movies < 0).any():
            raise KeyError(parsed[F.MOVIE_ID].numpy()[np.argmax(movies < 0)])  # a rated movie not in the catalog
        items.append(movies)
        timestamps.append(parsed[F.TIMESTAMP].numpy())
        if histories:
            # What is never recommended: the union of the two lists (algorithms.top_k_hits excludes both).
            history.append(_ragged(parsed[F.HISTORY], table))
            rated_before.append(_ragged(parsed[F.RATED_BEFORE], table))
    if not histories:
        empty = Ragged(np.zeros(0, np.int32), np.zeros(sum(map(len, items)) + 1, np.int64))
        history, rated_before = [empty], [empty]
    history = Ragged.concat(history)
    return Split(np.concatenate(users).astype(object), np.concatenate(items).astype(np.int64),
                 np.concatenate(timestamps), history,
                 (history, Ragged.concat(rated_before)))


def _catalog_index(catalog: types.Artifact) -> Dict[bytes, int]:
    dataset = tf.data.TFRecordDataset(_split_files([catalog], "catalog"), compression_type="GZIP").batch(50_000)
    ids: List[bytes] = []
    for batch in dataset:
        ids.extend(tf.io.parse_example(batch, {F.MOVIE_ID: tf.io.FixedLenFeature([], tf.string)})[F.MOVIE_ID]
                   .numpy().tolist())
    return {movie: i for i, movie in enumerate(sorted(ids, key=int))}


# ---------------------------------------------------------------------------
# The component.


class BaselinesSpec(ComponentSpec):
    PARAMETERS = {EXCLUDE_HISTORY_KEY: ExecutionParameter(type=int),
                  TRAIN_SPLIT_KEY: ExecutionParameter(type=str, optional=True)}
    INPUTS = {
        EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        TRAIN_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
        CATALOG_KEY: ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {BASELINES_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation)}


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        examples = [artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])]
        train_examples = input_dict.get(TRAIN_EXAMPLES_KEY) or examples
        index = _catalog_index(artifact_utils.get_single_instance(input_dict[CATALOG_KEY]))
        train = _read_split(train_examples, exec_properties.get(TRAIN_SPLIT_KEY) or "train", index,
                            histories=False)
        evaluation = _read_split(examples, "eval", index)
        per_rating: Dict[str, Dict[int, np.ndarray]] = {}
        baselines = compute(train, evaluation, len(index), exclude_history=bool(exec_properties[EXCLUDE_HISTORY_KEY]),
                            per_rating=per_rating)
        artifact = artifact_utils.get_single_instance(output_dict[BASELINES_KEY])
        write(baselines, artifact)
        movies = np.array(sorted(index, key=index.get), dtype=object)
        tfma_metric.write_per_rating_hits(
            per_rating_hits_path(artifact.uri), GATE_K, evaluation.users, movies[evaluation.items],
            evaluation.timestamps, {name: hits[GATE_K] for name, hits in per_rating.items()})


class Baselines(base_component.BaseComponent):
    """Scores the baselines on the rating examples' eval split (see module docstring), trained on their
    train split, or on split `train_split` of `train_examples` (a span run's resolved window)."""

    SPEC_CLASS = BaselinesSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, catalog: types.BaseChannel, exclude_history: bool,
                 train_examples: Optional[types.BaseChannel] = None, train_split: str = "train"):
        super().__init__(spec=BaselinesSpec(
            examples=examples, train_examples=train_examples, train_split=train_split, catalog=catalog,
            exclude_history=int(exclude_history),
            baselines=channel.Channel(type=standard_artifacts.ModelEvaluation),
        ))
