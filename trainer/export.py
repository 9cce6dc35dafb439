"""The exported SavedModel: the Transform graph, the query tower and the catalog.

Signatures (all take *raw* inputs; the Transform layer is inside):

* ``serving_default(user_id: string [batch], timestamp: int64 [batch],
  history: string [batch, None], history_timestamps: int64 [batch, None])``
  -> ``movie_ids``, ``movie_titles`` (string [batch, K]) and ``scores``
  (float32 [batch, K]): the top-K catalog movies by score, best first.
  `history` is the user's movies rated before `timestamp`, most recent
  first, padded with "" (an empty history is a row of ""), and
  `history_timestamps` their rating times, aligned (padding: any value).
  Send every movie the user rated: the query tower reads the most recent
  history_length of them, and with exclude_history none of them is ever in
  the top-K. Unknown movie ids are ignored; an unknown user id falls in the
  vocabulary's OOV bucket. Every model takes the four inputs; its family
  (trainer.families: QUERY_FEATURES) says which its query tower reads: the
  tutorial's ignores the history.
* ``evaluate_hits(examples: string [batch])``: serialized rating tf.Examples
  -> ``hit_at_{k}`` float32 [batch], 1.0 when the rated movie is within the
  top k by the definition of tfrs.metrics.FactorizedTopK (the true movie's
  score is compared with the top-k catalog scores; ties count as hits), with
  the same exclusion as serving: the example's history and rated_before. The Evaluator (TFMA) averages these into
  top-k accuracy.
* ``query_embedding(user_id, timestamp, history, history_timestamps)``, the
  same four raw inputs as serving_default -> ``query_embedding`` float32
  [batch, d]: the query vector serving_default multiplies with the catalog
  (d = embedding_dim, plus affinity_dim with an *_affinity time feature). Its
  dot product with a movie's candidate embedding is that movie's score.

Beside the SavedModel, `save` writes the catalog's candidate embeddings with
their ids and titles as Vertex AI Vector Search JSON lines,
``embeddings/candidates.json`` (retrieval.embeddings): an approximate index
(retrieval.index, or Vector Search) built from them and queried with
query_embedding serves the same scores; the Pusher publishes the file inside
the version.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from retrieval import embeddings
from retrieval.embeddings import QUERY_OUTPUT, QUERY_SIGNATURE  # noqa: F401 (part of this module's interface)
from trainer import families
from transform import features as F

SERVING_SIGNATURE = "serving_default"
EVAL_SIGNATURE = "evaluate_hits"
# The input name of EVAL_SIGNATURE: the serialized tf.Examples.
EVAL_INPUT = "examples"


def hit_output(k: int) -> str:
    return f"hit_at_{k}"


def transform_raw(transform_layer, raw: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Transformed features from raw features: [batch] tensors, or sparse / ragged [batch, None] lists.

    The Transform graph takes the schema's shape, [batch, 1] for scalars and
    sparse for lists; outputs whose raw inputs are not given are not computed.
    """
    def shaped(value):
        if isinstance(value, tf.SparseTensor):
            return value
        if isinstance(value, tf.RaggedTensor):
            return value.to_sparse()
        return tf.reshape(value, [-1, 1])
    return transform_layer({name: shaped(value) for name, value in raw.items()})


def history_lists(history: tf.Tensor, history_timestamps: tf.Tensor) -> Dict[str, tf.SparseTensor]:
    """Raw history features (sparse) from "" -padded dense [batch, None] ids and aligned timestamps."""
    ids = tf.sparse.from_dense(history)  # drops the "" padding
    times = tf.SparseTensor(ids.indices, tf.gather_nd(history_timestamps, ids.indices), ids.dense_shape)
    return {F.HISTORY: ids, F.HISTORY_TIMESTAMPS: times}


def catalog_positions(movie_ids) -> tf.lookup.StaticHashTable:
    """Movie id (bytes) -> position in the catalog, -1 when not in it."""
    movie_ids = tf.constant(movie_ids)
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(movie_ids, tf.range(tf.size(movie_ids, out_type=tf.int64))), -1)


def exclude(scores: tf.Tensor, history: tf.SparseTensor, positions: tf.lookup.StaticHashTable) -> tf.Tensor:
    """`scores` float32 [batch, movies] with -inf at each row's history movies (ids not in the catalog: ignored)."""
    found = positions.lookup(history.values)
    known = found >= 0
    excluded = tf.stack([tf.boolean_mask(history.indices[:, 0], known), tf.boolean_mask(found, known)], axis=1)
    mask = tf.scatter_nd(excluded, tf.ones([tf.shape(excluded)[0]], tf.bool), tf.shape(scores, out_type=tf.int64))
    return tf.where(mask, tf.constant(-np.inf, tf.float32), scores)


def hits(scores: tf.Tensor, positive: tf.Tensor, ks: Sequence[int]) -> Dict[int, tf.Tensor]:
    """{k: float32 [batch]}: 1.0 when fewer than k catalog movies score strictly higher than `positive` [batch]."""
    greater = tf.reduce_sum(tf.cast(scores > positive[:, None], tf.int32), axis=1)
    return {k: tf.cast(greater < k, tf.float32) for k in ks}


def positive_scores(scores: tf.Tensor, target_ids: tf.Tensor, fallback: tf.Tensor,
                    positions: tf.lookup.StaticHashTable) -> tf.Tensor:
    """The rated movie's score, float32 [batch]: its catalog column of `scores` (the same matmul, so it never
    outranks itself by a rounding difference), or `fallback` for a movie not in the catalog."""
    found = positions.lookup(target_ids)
    column = tf.gather(scores, tf.maximum(found, 0), batch_dims=1)
    return tf.where(found >= 0, column, fallback)


# The raw query inputs of serving_default and query_embedding.
QUERY_INPUTS = [
    tf.TensorSpec([None], tf.string, name=F.USER_ID),
    tf.TensorSpec([None], tf.int64, name=F.TIMESTAMP),
    tf.TensorSpec([None, None], tf.string, name=F.HISTORY),
    tf.TensorSpec([None, None], tf.int64, name=F.HISTORY_TIMESTAMPS),
]


class RetrievalModule(tf.Module):
    """What the SavedModel holds; see the module docstring for its signatures."""

    def __init__(self, model, tf_transform_output: tft.TFTransformOutput, candidates, movie_ids, titles, k: int,
                 ks: Sequence[int], family: str, exclude_history: bool):
        super().__init__()
        self.transform_layer = tf_transform_output.transform_features_layer()
        self.query_tower = model.query_tower
        self.candidate_tower = model.candidate_tower
        self.candidates = tf.Variable(candidates, trainable=False, name="catalog_embeddings")
        self.movie_ids = tf.Variable(movie_ids, trainable=False, name="catalog_movie_ids")
        self.titles = tf.Variable(titles, trainable=False, name="catalog_titles")
        # Movie id -> catalog position, for excluding a history's movies and finding the rated one.
        self.catalog_positions = catalog_positions(movie_ids)
        self._k = min(int(k), int(candidates.shape[0]))
        self._ks = tuple(int(x) for x in ks)
        self._family = families.get(family)  # a module: not tracked, not saved
        self._exclude_history = bool(exclude_history)

    def _query(self, raw: Dict[str, tf.Tensor]) -> tf.Tensor:
        """Query embeddings float32 [batch, d] from raw query features (those the family's query tower reads)."""
        names = self._family.QUERY_FEATURES
        return self.query_tower(transform_raw(self.transform_layer, {name: raw[name] for name in names}))

    def _scores(self, query: tf.Tensor, *excluded: tf.SparseTensor) -> tf.Tensor:
        """Catalog scores float32 [batch, movies]; -inf for the movies of `excluded` with exclude_history."""
        scores = tf.matmul(query, self.candidates, transpose_b=True)
        if self._exclude_history:
            for movies in excluded:
                scores = exclude(scores, movies, self.catalog_positions)
        return scores

    @tf.function(input_signature=QUERY_INPUTS)
    def serve(self, user_id, timestamp, history, history_timestamps):
        raw = {F.USER_ID: user_id, F.TIMESTAMP: timestamp, **history_lists(history, history_timestamps)}
        scores = self._scores(self._query(raw), raw[F.HISTORY])
        top_scores, top = tf.math.top_k(scores, k=self._k)
        return {
            "scores": top_scores,
            "movie_ids": tf.gather(self.movie_ids, top),
            "movie_titles": tf.gather(self.titles, top),
        }

    @tf.function(input_signature=QUERY_INPUTS)
    def query_embedding(self, user_id, timestamp, history, history_timestamps):
        raw = {F.USER_ID: user_id, F.TIMESTAMP: timestamp, **history_lists(history, history_timestamps)}
        return {QUERY_OUTPUT: self._query(raw)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EVAL_INPUT)])
    def evaluate_hits(self, examples):
        parsed = tf.io.parse_example(examples, F.raw_rating_spec())
        query = self._query(parsed)
        names = self._family.CANDIDATE_FEATURES
        true_candidate = self.candidate_tower(transform_raw(self.transform_layer, {n: parsed[n] for n in names}))
        scores = self._scores(query, parsed[F.HISTORY], parsed[F.RATED_BEFORE])
        positive = positive_scores(scores, parsed[F.MOVIE_ID], tf.reduce_sum(query * true_candidate, axis=1),
                                   self.catalog_positions)
        # FactorizedTopK's definition: a hit at k when fewer than k catalog
        # movies score strictly higher than the rated one.
        return {hit_output(k): hit for k, hit in hits(scores, positive, self._ks).items()}


def save(path: str, model, tf_transform_output, candidates, movie_ids: np.ndarray, titles: np.ndarray, k: int,
         ks: Sequence[int], family: str = "tutorial", exclude_history: bool = False) -> None:
    """Saves the model of `family` (ModelConfig.family) with its catalog, and the catalog's embeddings file
    (embeddings/candidates.json): see the module docstring."""
    module = RetrievalModule(model, tf_transform_output, candidates, movie_ids, titles, k, ks, family, exclude_history)
    tf.saved_model.save(
        module,
        path,
        signatures={SERVING_SIGNATURE: module.serve, EVAL_SIGNATURE: module.evaluate_hits,
                    QUERY_SIGNATURE: module.query_embedding},
    )
    # The catalog variables' own values, so the file and the SavedModel cannot disagree.
    embeddings.write(path, module.movie_ids.numpy(), module.titles.numpy(), module.candidates.numpy())
