"""The exported SavedModel: the Transform graph, the query tower and the catalog.

Signatures (all take *raw* inputs; the Transform layer is inside):

* ``serving_default(user_id: string [batch], timestamp: int64 [batch])`` ->
  ``movie_ids``, ``movie_titles`` (string [batch, K]) and ``scores``
  (float32 [batch, K]): the top-K catalog movies by dot product, best first.
  An unknown user id falls in the vocabulary's OOV bucket.
* ``evaluate_hits(examples: string [batch])``: serialized rating tf.Examples
  -> ``hit_at_{k}`` float32 [batch], 1.0 when the rated movie is within the
  top k by the definition of tfrs.metrics.FactorizedTopK (the true movie's
  score is compared with the top-k catalog scores; ties count as hits). The
  Evaluator (TFMA) averages these into top-k accuracy.
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from transform import features as F

SERVING_SIGNATURE = "serving_default"
EVAL_SIGNATURE = "evaluate_hits"


def hit_output(k: int) -> str:
    return f"hit_at_{k}"


def transform_raw(transform_layer, raw: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Transformed features from raw features of shape [batch].

    The Transform graph takes the schema's shape, [batch, 1]; features not
    given are not computed (each output depends on one raw feature).
    """
    return transform_layer({name: tf.reshape(value, [-1, 1]) for name, value in raw.items()})


class RetrievalModule(tf.Module):
    """What the SavedModel holds; see the module docstring for its signatures."""

    def __init__(self, model, tf_transform_output: tft.TFTransformOutput, candidates, movie_ids, titles, k: int, ks: Sequence[int]):
        super().__init__()
        self.transform_layer = tf_transform_output.transform_features_layer()
        self.query_tower = model.query_tower
        self.candidate_tower = model.candidate_tower
        self.candidates = tf.Variable(candidates, trainable=False, name="catalog_embeddings")
        self.movie_ids = tf.Variable(movie_ids, trainable=False, name="catalog_movie_ids")
        self.titles = tf.Variable(titles, trainable=False, name="catalog_titles")
        self._k = min(int(k), int(candidates.shape[0]))
        self._ks = tuple(int(x) for x in ks)

    def _query(self, user_id: tf.Tensor, timestamp: tf.Tensor) -> tf.Tensor:
        """Query embeddings float32 [batch, d] from raw user_id and timestamp [batch]."""
        return self.query_tower(transform_raw(self.transform_layer, {F.USER_ID: user_id, F.TIMESTAMP: timestamp}))

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name=F.USER_ID),
        tf.TensorSpec([None], tf.int64, name=F.TIMESTAMP),
    ])
    def serve(self, user_id, timestamp):
        scores = tf.matmul(self._query(user_id, timestamp), self.candidates, transpose_b=True)
        top_scores, top = tf.math.top_k(scores, k=self._k)
        return {
            "scores": top_scores,
            "movie_ids": tf.gather(self.movie_ids, top),
            "movie_titles": tf.gather(self.titles, top),
        }

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def evaluate_hits(self, examples):
        parsed = tf.io.parse_example(examples, F.raw_rating_spec())
        query = self._query(parsed[F.USER_ID], parsed[F.TIMESTAMP])
        true_candidate = self.candidate_tower(transform_raw(self.transform_layer, {F.MOVIE_TITLE: parsed[F.MOVIE_TITLE]}))
        positive = tf.reduce_sum(query * true_candidate, axis=1)
        top_scores, _ = tf.math.top_k(tf.matmul(query, self.candidates, transpose_b=True), k=max(self._ks))
        # FactorizedTopK: in_top_k over [positive, top scores]; a hit at k when
        # fewer than k retrieved scores are strictly greater than the positive.
        greater = tf.cast(top_scores > positive[:, None], tf.int32)
        outputs = {}
        for k in self._ks:
            outputs[hit_output(k)] = tf.cast(tf.reduce_sum(greater, axis=1) < k, tf.float32)
        return outputs


def save(path: str, model, tf_transform_output, candidates, movie_ids: np.ndarray, titles: np.ndarray, k: int, ks: Sequence[int]) -> None:
    module = RetrievalModule(model, tf_transform_output, candidates, movie_ids, titles, k, ks)
    tf.saved_model.save(
        module,
        path,
        signatures={SERVING_SIGNATURE: module.serve, EVAL_SIGNATURE: module.evaluate_hits},
    )
