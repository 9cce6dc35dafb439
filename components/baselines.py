"""Baselines: the recommenders any deep model has to beat, scored on ExampleGen's eval split.

Every baseline row of the report comes from here, and so does the Evaluator's
default value floor (components.evaluator): the best baseline's top-GATE_K
accuracy. As a component on ExampleGen's output, the baselines run wherever
the pipeline runs (locally, Vertex AI, Kubeflow), on exactly the rows the
Evaluator scores the models on, with the model's rule for movies the user
already rated (`exclude_history`: the example's history and rated_before are
never recommended, as in serving).

Each baseline scores the whole catalog for an eval rating; top-k accuracy is
the share of eval ratings whose movie ranks in the top k. Ranks use a strict
order (score, then train popularity, then movie id), so ties never count as
hits.

  popularity         train rating counts, the same list for everyone
  recent_popularity  counts over the last RECENT_DAYS days of train
  item_knn           sum over the rating's history of the cosine similarity
                     of item co-occurrence vectors (train users)
  ease               EASE (Steck 2019): B = I - P / diag(P), P = (X'X + lambda I)^-1
                     over the binary train user-item matrix X; score = sum of
                     the history's rows of B. Skipped above EASE_MAX_ITEMS movies.

item_knn and ease read the same history as the model (the example's `history`:
the user's most recent movies rated strictly before the rating). The output
artifact holds `baselines.json`: {name: {k: accuracy}} plus "notes".
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

from trainer.config import TOP_KS, metrics_by_k
from transform import features as F

EXAMPLES_KEY = "examples"
TRAIN_EXAMPLES_KEY = "train_examples"
TRAIN_SPLIT_KEY = "train_split"
CATALOG_KEY = "catalog"
BASELINES_KEY = "baselines"
EXCLUDE_HISTORY_KEY = "exclude_history"
BASELINES_FILE = "baselines.json"
RECENT_DAYS = 30
# EASE's L2 weight. Of 50, 200 and 500 on ml-100k's temporal split, 500 was
# strongest (0.52 / 0.58 / 0.60 top-100, full history excluded): the largest
# makes the gate's floor the hardest to beat, so it is the one kept.
EASE_LAMBDA = 500.0
EASE_MAX_ITEMS = 20_000  # X'X inverse: 20k^2 floats, ~1 min on 2 cores
_BATCH = 2048


# ---------------------------------------------------------------------------
# The baselines, as plain functions of integer item indices.


class Split:
    """Ratings as item indices into the catalog: users [n], items [n], timestamps [n], histories (list of arrays:
    what kNN and EASE score from), rated (list of arrays: what is never recommended; default: the histories)."""

    def __init__(self, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, histories: List[np.ndarray],
                 rated: Optional[List[np.ndarray]] = None):
        self.users, self.items, self.timestamps, self.histories = users, items, timestamps, histories
        self.rated = histories if rated is None else rated


def top_k_hits(scores: np.ndarray, targets: np.ndarray, excluded: Sequence[np.ndarray], tiebreak: np.ndarray,
               ks: Sequence[int]) -> np.ndarray:
    """Hits [len(ks), rows] of a batch: fewer than k non-excluded items ahead of the target.

    scores: float [rows, items]; targets: int [rows]; excluded: per row, item
    indices that may not be recommended; tiebreak: float [items], larger first
    on equal scores (then the smaller index).
    """
    rows = np.arange(len(targets))
    target_score = scores[rows, targets][:, None]
    order_key = tiebreak[None, :]
    target_key = tiebreak[targets][:, None]
    items = np.arange(scores.shape[1])[None, :]
    ahead = (scores > target_score) | ((scores == target_score) & (
        (order_key > target_key) | ((order_key == target_key) & (items < targets[:, None]))))
    lengths = [len(items_out) for items_out in excluded]
    if sum(lengths):
        ahead[np.repeat(rows, lengths), np.concatenate(excluded).astype(np.int64)] = False
    rank = ahead.sum(axis=1)
    return np.stack([rank < k for k in ks])


def _accuracies(score_fn, evaluation: Split, tiebreak: np.ndarray, exclude: bool, ks: Sequence[int]) -> Dict[int, float]:
    hits = []
    for start in range(0, len(evaluation.items), _BATCH):
        stop = min(start + _BATCH, len(evaluation.items))
        histories = evaluation.histories[start:stop]
        scores = score_fn(histories)
        excluded = evaluation.rated[start:stop] if exclude else [np.zeros(0, np.int64)] * len(histories)
        hits.append(top_k_hits(scores, evaluation.items[start:stop], excluded, tiebreak, ks))
    hits = np.concatenate(hits, axis=1)
    return {int(k): float(hits[i].mean()) for i, k in enumerate(ks)}


def _counts(items: np.ndarray, num_items: int) -> np.ndarray:
    return np.bincount(items, minlength=num_items).astype(np.float64)


def _user_item(train: Split, num_items: int) -> np.ndarray:
    """Binary train user-item matrix, float32 [users, items]."""
    _, users = np.unique(train.users, return_inverse=True)
    x = np.zeros((users.max() + 1, num_items), np.float32)
    x[users, train.items] = 1.0
    return x


def _history_sum(matrix: np.ndarray):
    """score_fn: for each history, the sum of `matrix`'s rows of its items."""
    def score(histories):
        out = np.zeros((len(histories), matrix.shape[1]), np.float32)
        for row, items in enumerate(histories):
            if len(items):
                out[row] = matrix[items].sum(axis=0)
        return out
    return score


def compute(train: Split, evaluation: Split, num_items: int, exclude_history: bool,
            ks: Sequence[int] = TOP_KS) -> Dict[str, Dict]:
    """Every baseline's top-k accuracies: {name: {k: accuracy}}, and "notes" on skipped ones."""
    popularity = _counts(train.items, num_items)
    tiebreak = popularity
    constant = lambda vector: (lambda histories: np.broadcast_to(vector, (len(histories), num_items)))  # noqa: E731
    out: Dict[str, Dict] = {}
    notes: Dict[str, str] = {}
    out["popularity"] = _accuracies(constant(popularity), evaluation, tiebreak, exclude_history, ks)
    recent = train.timestamps >= train.timestamps.max() - RECENT_DAYS * 86400
    out["recent_popularity"] = _accuracies(constant(_counts(train.items[recent], num_items)), evaluation, tiebreak,
                                           exclude_history, ks)
    x = _user_item(train, num_items)
    gram = x.T @ x  # co-occurrence, float32 [items, items]
    norms = np.sqrt(np.diag(gram))
    cosine = gram / np.maximum(norms[:, None] * norms[None, :], 1e-12)
    np.fill_diagonal(cosine, 0.0)
    out["item_knn"] = _accuracies(_history_sum(cosine), evaluation, tiebreak, exclude_history, ks)
    if num_items <= EASE_MAX_ITEMS:
        p = np.linalg.inv(gram.astype(np.float64) + EASE_LAMBDA * np.eye(num_items))
        b = (-p / np.diag(p)[None, :]).astype(np.float32)
        np.fill_diagonal(b, 0.0)
        out["ease"] = _accuracies(_history_sum(b), evaluation, tiebreak, exclude_history, ks)
    else:
        notes["ease"] = f"skipped: {num_items} movies > {EASE_MAX_ITEMS} (its item-item inverse would not fit the time)"
    if notes:
        out["notes"] = notes
    return out


def accuracies_only(baselines: Mapping[str, Mapping]) -> Dict[str, Dict[int, float]]:
    """The {name: {k: accuracy}} part of `compute`'s result (without "notes")."""
    return {name: dict(values) for name, values in baselines.items() if name != "notes"}


def best_at(baselines: Mapping[str, Mapping[int, float]], k: int) -> float:
    """The best baseline's top-k accuracy (the Evaluator's default value floor)."""
    return max(accuracies[k] for accuracies in accuracies_only(baselines).values())


# ---------------------------------------------------------------------------
# Artifact I/O (tf.io.gfile: the artifact may be on gs://).


def write(baselines: Mapping[str, Mapping], artifact: types.Artifact) -> None:
    tf.io.gfile.makedirs(artifact.uri)
    with tf.io.gfile.GFile(f"{artifact.uri.rstrip('/')}/{BASELINES_FILE}", "w") as f:
        json.dump(baselines, f, indent=2)


def read(uri: str) -> Dict[str, Dict]:
    """{name: {k: accuracy}} (and "notes") from a Baselines output artifact's URI."""
    with tf.io.gfile.GFile(f"{uri.rstrip('/')}/{BASELINES_FILE}") as f:
        stored = json.load(f)
    return {name: (values if name == "notes" else metrics_by_k(values)) for name, values in stored.items()}


def _split_files(examples: Sequence[types.Artifact], split: str) -> List[str]:
    return sorted(name for artifact in examples
                  for name in tf.io.gfile.glob(f"{artifact_utils.get_split_uri([artifact], split).rstrip('/')}/*"))


def _lists(ragged: tf.RaggedTensor, table: tf.lookup.StaticHashTable, *more: tf.RaggedTensor) -> List[np.ndarray]:
    """Each row's catalog indices of `ragged`'s ids (and of the same rows of `more`): ids not in the
    catalog dropped; with `more`, the row's distinct indices, sorted (np.union1d of the lists)."""
    rows = np.concatenate([part.value_rowids().numpy() for part in (ragged, *more)])
    found = np.concatenate([table.lookup(part.values).numpy() for part in (ragged, *more)])
    known = found >= 0
    rows, found = rows[known], found[known]
    if more:
        size = int(table.size())
        keys = np.unique(rows * size + found)  # sorted by row, then index
        rows, found = keys // size, keys % size
    counts = np.bincount(rows, minlength=int(ragged.nrows()))
    return np.split(found.astype(np.int64), np.cumsum(counts)[:-1])


def _read_split(examples: Sequence[types.Artifact], split: str, index: Mapping[bytes, int]) -> Split:
    """The ratings of `split` of every artifact of `examples` (a span run's window: several)."""
    spec = {
        F.USER_ID: tf.io.FixedLenFeature([], tf.string),
        F.MOVIE_ID: tf.io.FixedLenFeature([], tf.string),
        F.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
        F.HISTORY: tf.io.VarLenFeature(tf.string),
        F.RATED_BEFORE: tf.io.VarLenFeature(tf.string),
    }
    # Vectorised: a dict lookup and np.union1d per rating were most of the component's time.
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(index), tf.string),
                                            tf.constant(list(index.values()), tf.int64)), -1)
    users, items, timestamps, histories, rated = [], [], [], [], []
    dataset = tf.data.TFRecordDataset(_split_files(examples, split), compression_type="GZIP").batch(50_000)
    for batch in dataset:
        parsed = tf.io.parse_example(batch, spec)
        users.extend(parsed[F.USER_ID].numpy().tolist())
        movies = table.lookup(parsed[F.MOVIE_ID]).numpy()
        if (movies < 0).any():
            raise KeyError(parsed[F.MOVIE_ID].numpy()[np.argmax(movies < 0)])  # a rated movie not in the catalog
        items.extend(movies.tolist())
        timestamps.append(parsed[F.TIMESTAMP].numpy())
        history = tf.RaggedTensor.from_sparse(parsed[F.HISTORY])
        histories.extend(_lists(history, table))
        rated.extend(_lists(history, table, tf.RaggedTensor.from_sparse(parsed[F.RATED_BEFORE])))
    return Split(np.array(users, dtype=object), np.array(items, np.int64), np.concatenate(timestamps), histories, rated)


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
        train = _read_split(train_examples, exec_properties.get(TRAIN_SPLIT_KEY) or "train", index)
        baselines = compute(train, _read_split(examples, "eval", index), len(index),
                            exclude_history=bool(exec_properties[EXCLUDE_HISTORY_KEY]))
        write(baselines, artifact_utils.get_single_instance(output_dict[BASELINES_KEY]))


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
