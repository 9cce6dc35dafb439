"""Baselines: the recommenders any deep model has to beat, scored on ExampleGen's eval split.

Every baseline row of the report comes from here, and so does the Evaluator's
default value floor (components.evaluator): the best baseline's top-GATE_K
accuracy. As a component on ExampleGen's output, the baselines run wherever
the pipeline runs (locally, Vertex AI, Kubeflow), on exactly the rows the
Evaluator scores the models on.

Baselines (top-k accuracy on the eval split, keyed by k):
  popularity  the k movies with the most train ratings (ties by movie id),
              recommended to everyone.

The output artifact holds `baselines.json`: {name: {k: accuracy}}.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Dict, List, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec

from trainer.config import TOP_KS, metrics_by_k
from transform import features as F

EXAMPLES_KEY = "examples"
BASELINES_KEY = "baselines"
BASELINES_FILE = "baselines.json"


# ---------------------------------------------------------------------------
# The baselines, as plain functions of the splits' movie ids.


def popularity_top_k(train_movies: Sequence, eval_movies: Sequence, ks: Sequence[int]) -> Dict[int, float]:
    """{k: share of eval ratings whose movie is among the k most-rated train movies}.

    Movie ids are decimal strings or bytes; ties are broken by the smaller id.
    """
    counts = Counter(train_movies)
    ranking = sorted(counts, key=lambda movie: (-counts[movie], int(movie)))
    rank = {movie: position for position, movie in enumerate(ranking)}
    eval_ranks = np.array([rank.get(movie, len(ranking)) for movie in eval_movies])
    return {int(k): float(np.mean(eval_ranks < k)) for k in ks}


def compute(train_movies: Sequence, eval_movies: Sequence, ks: Sequence[int] = TOP_KS) -> Dict[str, Dict[int, float]]:
    """Every baseline's top-k accuracies: {name: {k: accuracy}}."""
    return {"popularity": popularity_top_k(train_movies, eval_movies, ks)}


def best_at(baselines: Mapping[str, Mapping[int, float]], k: int) -> float:
    """The best baseline's top-k accuracy (the Evaluator's default value floor)."""
    return max(accuracies[k] for accuracies in baselines.values())


# ---------------------------------------------------------------------------
# Artifact I/O (tf.io.gfile: the artifact may be on gs://).


def write(baselines: Mapping[str, Mapping[int, float]], artifact: types.Artifact) -> None:
    tf.io.gfile.makedirs(artifact.uri)
    with tf.io.gfile.GFile(f"{artifact.uri.rstrip('/')}/{BASELINES_FILE}", "w") as f:
        json.dump(baselines, f, indent=2)


def read(uri: str) -> Dict[str, Dict[int, float]]:
    """{name: {k: accuracy}} from a Baselines output artifact's URI."""
    with tf.io.gfile.GFile(f"{uri.rstrip('/')}/{BASELINES_FILE}") as f:
        return {name: metrics_by_k(accuracies) for name, accuracies in json.load(f).items()}


def _movie_ids(examples: types.Artifact, split: str) -> List[bytes]:
    """The movie_id of every rating example of `split`, in file order."""
    pattern = f"{artifact_utils.get_split_uri([examples], split).rstrip('/')}/*"
    dataset = tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)), compression_type="GZIP").batch(100_000)
    spec = {F.MOVIE_ID: tf.io.FixedLenFeature([], tf.string)}
    return [movie for batch in dataset for movie in tf.io.parse_example(batch, spec)[F.MOVIE_ID].numpy().tolist()]


# ---------------------------------------------------------------------------
# The component.


class BaselinesSpec(ComponentSpec):
    PARAMETERS = {}
    INPUTS = {EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples)}
    OUTPUTS = {BASELINES_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation)}


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        baselines = compute(_movie_ids(examples, "train"), _movie_ids(examples, "eval"))
        write(baselines, artifact_utils.get_single_instance(output_dict[BASELINES_KEY]))


class Baselines(base_component.BaseComponent):
    """Scores the baselines on the rating examples' eval split (see module docstring)."""

    SPEC_CLASS = BaselinesSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel):
        super().__init__(spec=BaselinesSpec(
            examples=examples, baselines=channel.Channel(type=standard_artifacts.ModelEvaluation)
        ))
