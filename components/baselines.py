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
from scipy import sparse
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import artifact_utils, channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from core.comparison import GATE_K
from trainer import tfma_metric
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


class Ragged:
    """Rows of item indices, flat: row i is values[offsets[i]:offsets[i + 1]] (values int32, offsets int64).
    Iterates and indexes like the list of its rows; slices are Ragged views."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values, self.offsets = values, offsets

    @classmethod
    def of(cls, rows) -> "Ragged":
        """`rows` itself if Ragged, else a Ragged of a sequence of index arrays."""
        if isinstance(rows, Ragged):
            return rows
        lengths = np.fromiter((len(row) for row in rows), np.int64, len(rows))
        values = np.concatenate([np.asarray(row) for row in rows]) if len(rows) else np.zeros(0)
        return cls(values.astype(np.int32), np.concatenate([[0], np.cumsum(lengths)]))

    @classmethod
    def concat(cls, parts: Sequence["Ragged"]) -> "Ragged":
        lengths = np.concatenate([np.diff(part.offsets) for part in parts] or [np.zeros(0, np.int64)])
        return cls(np.concatenate([part.flat() for part in parts] or [np.zeros(0, np.int32)]),
                   np.concatenate([[0], np.cumsum(lengths)]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            assert step == 1, step
            return Ragged(self.values, self.offsets[start:stop + 1] if stop > start else self.offsets[start:start + 1])
        return self.values[self.offsets[key]:self.offsets[key + 1]]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def row_ids(self) -> np.ndarray:
        """Each value's row (0-based within this view)."""
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))

    def flat(self) -> np.ndarray:
        return self.values[self.offsets[0]:self.offsets[-1]]


class Split:
    """Ratings as item indices into the catalog: users [n], items [n], timestamps [n], histories (per rating, an
    array of item indices; a list of arrays or a Ragged: what kNN and EASE score from), rated (what is never
    recommended: per rating, item indices; a list of arrays, a Ragged, or a tuple of Raggeds whose rows' union
    is excluded; default: the histories)."""

    def __init__(self, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, histories,
                 rated=None):
        self.users, self.items, self.timestamps = users, items, timestamps
        self.histories = Ragged.of(histories)
        rated = self.histories if rated is None else rated
        self.rated = tuple(rated) if isinstance(rated, tuple) else (Ragged.of(rated),)


def _positions(tiebreak: np.ndarray) -> np.ndarray:
    """Each item's place in the strict order of equal scores: larger `tiebreak` first, then the smaller index."""
    order = np.lexsort((np.arange(len(tiebreak)), -tiebreak))
    position = np.empty(len(tiebreak), np.int32)
    position[order] = np.arange(len(tiebreak))
    return position


def top_k_hits(scores: np.ndarray, targets: np.ndarray, excluded: Sequence[Ragged], position: np.ndarray,
               ks: Sequence[int]) -> np.ndarray:
    """Hits [len(ks), rows] of a batch: fewer than k non-excluded items ahead of the target.

    scores: float [rows, items]; targets: int [rows]; excluded: Raggeds of `rows` rows each, item indices
    that may not be recommended (the union of their rows); position: int [items], `_positions(tiebreak)`:
    the order of equal scores (tiebreak larger first, then the smaller index).
    """
    rows = np.arange(len(targets))
    target_score = scores[rows, targets][:, None]
    ahead = scores > target_score
    tie = scores == target_score
    tie &= position[None, :] < position[targets][:, None]
    ahead |= tie
    for part in excluded:
        if part.offsets[-1] > part.offsets[0]:
            ahead[part.row_ids(), part.flat()] = False
    rank = np.count_nonzero(ahead, axis=1)
    return np.stack([rank < k for k in ks])


def _scored(score_fn, evaluation: Split, tiebreak: np.ndarray, exclude: bool, ks: Sequence[int],
                per_rating: Optional[Dict[int, np.ndarray]] = None) -> Dict[int, float]:
    """{k: top-k accuracy}; with `per_rating`, it also gets {k: each eval rating's hit, bool [ratings]}."""
    hits = []
    position = _positions(tiebreak)
    for start in range(0, len(evaluation.items), _BATCH):
        stop = min(start + _BATCH, len(evaluation.items))
        scores = score_fn(evaluation.histories[start:stop])
        excluded = [part[start:stop] for part in evaluation.rated] if exclude else []
        hits.append(top_k_hits(scores, evaluation.items[start:stop], excluded, position, ks))
    hits = np.concatenate(hits, axis=1)
    if per_rating is not None:
        per_rating.update({int(k): hits[i] for i, k in enumerate(ks)})
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
    """score_fn: for each history (a Ragged), the sum of `matrix`'s rows of its items.

    A sparse 0/1 [histories, items] product: scipy adds each history's rows in their order, as
    matrix[items].sum(axis=0) did in a per-history loop (the same float32 sums, bit for bit), ~2x faster.
    """
    def score(histories: Ragged):
        offsets = histories.offsets - histories.offsets[0]
        indicator = sparse.csr_matrix((np.ones(offsets[-1], matrix.dtype), histories.flat(), offsets),
                                      shape=(len(histories), matrix.shape[0]))
        return np.asarray(indicator @ matrix, dtype=np.float32)
    return score


def compute(train: Split, evaluation: Split, num_items: int, exclude_history: bool,
            ks: Sequence[int] = TOP_KS, per_rating: Optional[Dict[str, Dict[int, np.ndarray]]] = None
            ) -> Dict[str, Dict]:
    """Every baseline's top-k accuracies: {name: {k: accuracy}}, and "notes" on skipped ones. With `per_rating`,
    it also gets {name: {k: each eval rating's hit}} (the Evaluator's paired comparison with the floor)."""
    popularity = _counts(train.items, num_items)
    tiebreak = popularity
    constant = lambda vector: (lambda histories: np.broadcast_to(vector, (len(histories), num_items)))  # noqa: E731
    out: Dict[str, Dict] = {}
    notes: Dict[str, str] = {}

    def _accuracies(score_fn, name):
        hits = per_rating.setdefault(name, {}) if per_rating is not None else None
        return _scored(score_fn, evaluation, tiebreak, exclude_history, ks, hits)

    out["popularity"] = _accuracies(constant(popularity), "popularity")
    recent = train.timestamps >= train.timestamps.max() - RECENT_DAYS * 86400
    out["recent_popularity"] = _accuracies(constant(_counts(train.items[recent], num_items)), "recent_popularity")
    x = _user_item(train, num_items)
    gram = x.T @ x  # co-occurrence, float32 [items, items]
    norms = np.sqrt(np.diag(gram))
    cosine = gram / np.maximum(norms[:, None] * norms[None, :], 1e-12)
    np.fill_diagonal(cosine, 0.0)
    out["item_knn"] = _accuracies(_history_sum(cosine), "item_knn")
    if num_items <= EASE_MAX_ITEMS:
        p = np.linalg.inv(gram.astype(np.float64) + EASE_LAMBDA * np.eye(num_items))
        b = (-p / np.diag(p)[None, :]).astype(np.float32)
        np.fill_diagonal(b, 0.0)
        out["ease"] = _accuracies(_history_sum(b), "ease")
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
    return accuracies_only(baselines)[best_name_at(baselines, k)][k]


def best_name_at(baselines: Mapping[str, Mapping[int, float]], k: int) -> str:
    """The best baseline at top-k (the first listed of equals): the Evaluator's floor baseline."""
    scored = accuracies_only(baselines)
    return max(scored, key=lambda name: scored[name][k])


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
            # What is never recommended: the union of the two lists (top_k_hits excludes both).
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
