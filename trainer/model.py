"""The generic parts of the two-tower retrieval models: the towers' projections, the history's pooling,
and the retrieval model over any pair of towers. The towers themselves are the model families'
(trainer.families: the tutorial's, user id against title; the history's, recent movies against movie).

All towers read *transformed* features (vocabulary indices, buckets; see
transform.features); the Transform layer in the exported model maps raw
inputs to them.

Vocabulary-keyed tables: each tower's VOCABULARY_TABLES maps an embedding
layer (by attribute) to the Transform vocabulary (transform.features) that
indexes its rows: row i embeds the vocabulary's i-th entry and the last row,
len(vocabulary), is its one OOV bucket (num_oov_buckets=1), so the table has
len(vocabulary) + 1 rows. trainer.warm_start moves rows by id through it.
A candidate tower's `key` is the transformed feature of the candidate's identity
(the logQ correction's probabilities are looked up by it).
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs


def projection(layers: Sequence[int], embedding_dim: int, name: str) -> tf.keras.Sequential:
    """Hidden ReLU layers, then a linear projection to embedding_dim."""
    return tf.keras.Sequential(
        [tf.keras.layers.Dense(units, activation="relu") for units in layers]
        + [tf.keras.layers.Dense(embedding_dim)],
        name=name,
    )


def history_indices(features: Dict[str, tf.Tensor], name: str) -> tf.Tensor:
    """A sparse history feature as int64 [batch, width], -1 padded (every value, in order)."""
    return tf.sparse.to_dense(features[name], default_value=-1)


def first_known(items: tf.Tensor, num_movies: int, length: int, *aligned: tf.Tensor):
    """The first `length` known movies of each row (missing and OOV ones dropped, order kept).

    items: int64 [batch, width] vocabulary indices, -1 padded; aligned: tensors
    of the same shape that follow the items. Returns (items, valid, *aligned),
    each [batch, length], items -1 where not valid. So an unknown id in a
    request is ignored: it neither counts towards `length` nor shifts the
    positions of the known movies.
    """
    valid = (items >= 0) & (items < num_movies)  # the vocabulary's OOV index is num_movies
    order = tf.argsort(tf.cast(~valid, tf.int32), axis=1, stable=True)  # known ones first, in order
    pad = [[0, 0], [0, tf.maximum(length - tf.shape(items)[1], 0)]]
    out = []
    for tensor, fill in ((tf.where(valid, items, -1), -1), (valid, False)) + tuple((t, 0) for t in aligned):
        tensor = tf.gather(tensor, order, batch_dims=1)
        out.append(tf.pad(tensor, pad, constant_values=fill)[:, :length])
    return tuple(out)


def _build_attention(attention: tf.keras.layers.MultiHeadAttention, query: tf.Tensor, d: int) -> None:
    """Builds `attention`'s four projections as MultiHeadAttention.call builds them (in its order, under its
    name), without calling it: it is never called, only its weights are used (pooled_history)."""
    if not attention._built_from_signature:
        attention._build_from_signature(query=query, value=tf.zeros([1, 1, d]))
    for layer in (attention._query_dense, attention._key_dense, attention._value_dense, attention._output_dense):
        if not layer.built:
            with tf.name_scope(attention.name):
                layer(query if layer is not attention._output_dense else tf.zeros([1, 1, attention._num_heads,
                                                                                    attention._value_dim]))


def pooled_history(gathered: tf.Tensor, movies: tf.Tensor, items: tf.Tensor, keep: tf.Tensor, valid: tf.Tensor,
                   positions: tf.Tensor, ages: Optional[tf.Tensor] = None, age_table: Optional[tf.Tensor] = None,
                   attention: Optional[tf.keras.layers.MultiHeadAttention] = None,
                   query: Optional[tf.Tensor] = None) -> Sequence[tf.Tensor]:
    """The history's mean and, with `attention`, one shared query attending over it: float32 [batch, d] each.

    movies: float32 [num_movies + 1, d], the movie embedding table; items: int64 [batch, n], rows of it;
    gathered: float32 [batch, n, d], those rows (movies[items]);
    keep: float32 [batch, n], each movie's dropout factor (0 or 1 / (1 - rate) while training, else 1);
    valid: float32 [batch, n], 1 for a movie, 0 for padding; positions: float32 [n, d]; ages: int64
    [batch, n] rows of age_table, float32 [buckets, d] (both optional); query: float32 [1, 1, d].

    Movie i of a row is the vector e_i = valid_i (keep_i movies[items_i] + positions_i + age_table[ages_i]).
    Returned: the mean of the valid e_i (zeros for an empty row) and Keras'
    MultiHeadAttention(query, [query; e], mask [1; valid]) (no attention dropout), the same
    functions of the same weights computed in another order, so that no [batch, n, d] tensor but the
    gathered movie vectors is made (each such tensor, and its gradient, is a pass over 13 MB at batch
    1024: they were most of a training step):
      * with one query vector q per head, q . (e W_k + b_k) = e . (W_k q) + b_k . q, and e_i . W_k q is
        gathered from each table's product with W_k q ([rows, heads]);
      * the softmax-weighted sum of the values (e W_v + b_v) is (sum_i p_i e_i) W_v + b_v, and the mean
        is a weighted sum too: sum_i c_i e_i for the coefficients c of the mean and of each head is one
        batched product with the gathered movie vectors, one with `positions`, and one with the ages'
        one-hot counts.
    """
    coefficients = [(valid / (tf.reduce_sum(valid, axis=1, keepdims=True) + 1e-6))[:, None, :]]  # the mean: [B, 1, n]
    if attention is not None:
        _build_attention(attention, query, movies.shape[-1])
        key_dense, value_dense = attention._key_dense, attention._value_dense
        q = attention._query_dense(query)[0, 0] * (1.0 / math.sqrt(float(attention._key_dim)))  # [heads, key_dim]
        folded = tf.einsum("dhk,hk->dh", key_dense.kernel, q)  # W_k q: [d, heads]
        bias = tf.reduce_sum(key_dense.bias * q, axis=1)  # b_k . q: [heads]
        scores = keep[:, :, None] * tf.gather(tf.matmul(movies, folded), items)  # [B, n, heads]
        scores += tf.matmul(positions, folded)[None]
        if ages is not None:
            scores += tf.gather(tf.matmul(age_table, folded), ages)
        scores = tf.transpose(scores, [0, 2, 1]) + bias[None, :, None]  # [B, heads, n]
        scores += (1.0 - valid[:, None, :]) * -1e9  # Keras' Softmax mask
        token = tf.matmul(query[0], folded)[0] + bias  # the query's own score: [heads]
        token = tf.broadcast_to(token[None, :, None], [tf.shape(scores)[0], attention._num_heads, 1])
        weights = tf.nn.softmax(tf.concat([token, scores], axis=2), axis=-1)  # [B, heads, 1 + n]
        coefficients.append(weights[:, :, 1:] * valid[:, None, :])
    c = tf.concat(coefficients, axis=1)  # [B, 1 + heads, n]
    pooled = tf.matmul(c * keep[:, None, :], gathered) + tf.einsum("bkn,nd->bkd", c, positions)  # [B, 1 + heads, d]
    if ages is not None:
        counts = tf.matmul(c, tf.one_hot(ages, tf.shape(age_table)[0]))  # [B, 1 + heads, buckets]
        pooled += tf.einsum("bkm,md->bkd", counts, age_table)
    if attention is None:
        return pooled[:, 0], None
    attended = weights[:, :, :1] * query[0] + pooled[:, 1:]  # [B, heads, d]
    values = tf.einsum("bhd,dhk->bhk", attended, value_dense.kernel) + value_dense.bias  # [B, heads, value_dim]
    return pooled[:, 0], attention._output_dense(values[:, None])[:, 0]


def global_batch_candidates(candidate: tf.Tensor, probability: Optional[tf.Tensor]):
    """The in-batch candidates of the GLOBAL batch, this replica's own first: (candidates, probabilities).

    With one replica (the default strategy, or any cross-replica context) `candidate` and `probability`
    themselves, untouched. Under MultiWorkerMirroredStrategy each worker holds a contiguous share of the
    global batch (trainer.data.worker_batches); its queries are scored against every worker's
    candidates, all-gathered in replica order (the global batch) and rolled so that its own come first,
    where tfrs' Retrieval task puts the positives (labels eye(queries, candidates); the other
    candidates are extra negatives). So each query has the negatives it has on one worker, the
    replicas' summed losses are the one-worker loss of the global batch, and the all-gather's gradient
    (an all-reduce of the upstream gradient, then this replica's rows) carries each candidate's share
    back to the worker that computed it.
    """
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return candidate, probability
    sizes = context.all_gather(tf.shape(candidate)[:1], axis=0)
    offset = tf.reduce_sum(sizes[:context.replica_id_in_sync_group])
    candidates = tf.roll(context.all_gather(candidate, axis=0), -offset, axis=0)
    if probability is not None:
        probability = tf.roll(context.all_gather(probability, axis=0), -offset, axis=0)
    return candidates, probability


class RetrievalModel(tfrs.models.Model):
    """In-batch softmax retrieval over (query, movie) pairs.

    `candidate_probability`, float32 [num_titles + 1], is each title's share of
    the training ratings; when given, the in-batch logits are corrected by
    -log(probability) (logQ correction of the sampling bias). `embedding_l2`
    adds that multiple of the squared norms of the batch's query and candidate
    embeddings to the loss.
    Under MultiWorkerMirroredStrategy the in-batch negatives are the whole global batch's
    (global_batch_candidates), as on one worker.
    No metrics are computed while training (trainer.metrics measures the model
    with tfrs.metrics.FactorizedTopK over the whole catalog afterwards).
    """

    def __init__(
        self,
        query_tower: tf.keras.Model,
        candidate_tower: tf.keras.Model,
        temperature: float = 1.0,
        candidate_probability: Optional[tf.Tensor] = None,
        embedding_l2: float = 0.0,
    ):
        super().__init__()
        self.query_tower = query_tower
        self.candidate_tower = candidate_tower
        self._candidate_probability = candidate_probability
        self._embedding_l2 = embedding_l2
        self.task = tfrs.tasks.Retrieval(temperature=temperature if temperature != 1.0 else None)

    def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        query = self.query_tower(features, training=training)
        candidate = self.candidate_tower(features)
        probability = None
        if self._candidate_probability is not None:
            probability = tf.gather(self._candidate_probability, features[self.candidate_tower.key])
        candidates, probability = global_batch_candidates(candidate, probability)
        loss = self.task(
            query,
            candidates,
            candidate_sampling_probability=probability,
            compute_metrics=not training,
            compute_batch_metrics=False,
        )
        if self._embedding_l2:
            loss += self._embedding_l2 * (tf.reduce_sum(tf.square(query)) + tf.reduce_sum(tf.square(candidate)))
        return loss
