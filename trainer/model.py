"""The two-tower retrieval models.

* The TFRS context-features tutorial's towers (QueryTower, CandidateTower):
  user id (+ timestamp features) against movie title (+ title words).
* The history-aware towers (HistoryQueryTower, MovieCandidateTower): the
  user's recent movies, pooled by attention and a mean, against the movie,
  with ONE movie embedding table shared by both towers (a movie in a history
  and the same movie as a candidate are the same vector), so a brand-new
  user with a few ratings is served as well as an old one.

All towers read *transformed* features (vocabulary indices, buckets; see
transform.features); the Transform layer in the exported model maps raw
inputs to them.

Vocabulary-keyed tables: each tower's VOCABULARY_TABLES maps an embedding
layer (by attribute) to the Transform vocabulary (transform.features) that
indexes its rows: row i embeds the vocabulary's i-th entry and the last row,
len(vocabulary), is its one OOV bucket (num_oov_buckets=1), so the table has
len(vocabulary) + 1 rows. trainer.warm_start moves rows by id through it.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from trainer.config import ModelConfig
from transform import features as F


def _projection(layers: Sequence[int], embedding_dim: int, name: str) -> tf.keras.Sequential:
    """Hidden ReLU layers, then a linear projection to embedding_dim."""
    return tf.keras.Sequential(
        [tf.keras.layers.Dense(units, activation="relu") for units in layers]
        + [tf.keras.layers.Dense(embedding_dim)],
        name=name,
    )


class QueryTower(tf.keras.Model):
    """User (and context) features -> query embedding, float32 [batch, embedding_dim].

    Inputs: user_index int64 [batch]; with use_timestamps also timestamp_bucket
    int64 [batch] and timestamp_z float32 [batch]; with time_of_day also
    hour_of_day and day_of_week int64 [batch].
    """

    VOCABULARY_TABLES = {"user_embedding": F.USER_VOCAB}

    def __init__(self, num_users: int, num_timestamp_buckets: int, config: ModelConfig):
        super().__init__(name="query_tower")
        d = config.embedding_dim
        self._use_timestamps = config.use_timestamps
        self._time_of_day = config.use_timestamps and config.time_of_day
        # +1: the vocabulary's OOV bucket.
        self.user_embedding = tf.keras.layers.Embedding(num_users + 1, d, name="user_embedding")
        if self._use_timestamps:
            self.timestamp_embedding = tf.keras.layers.Embedding(
                num_timestamp_buckets + 1, d, name="timestamp_bucket_embedding"
            )
        if self._time_of_day:
            self.hour_embedding = tf.keras.layers.Embedding(F.HOURS_PER_DAY, d, name="hour_embedding")
            self.weekday_embedding = tf.keras.layers.Embedding(F.DAYS_PER_WEEK, d, name="weekday_embedding")
        self.projection = _projection(config.tower_layers, d, "query_projection")

    def call(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        parts = [self.user_embedding(features[F.USER_INDEX])]
        if self._use_timestamps:
            parts.append(self.timestamp_embedding(features[F.TIMESTAMP_BUCKET]))
            parts.append(tf.reshape(tf.cast(features[F.TIMESTAMP_Z], tf.float32), (-1, 1)))
        if self._time_of_day:
            parts.append(self.hour_embedding(features[F.HOUR_OF_DAY]))
            parts.append(self.weekday_embedding(features[F.DAY_OF_WEEK]))
        return self.projection(tf.concat(parts, axis=1))


class CandidateTower(tf.keras.Model):
    """Movie title features -> candidate embedding, float32 [batch, embedding_dim].

    Inputs: title_index int64 [batch] and title_tokens, int64 SparseTensor
    [batch, None] of title-word indices (their embeddings are averaged, as the
    tutorial's TextVectorization + GlobalAveragePooling1D).
    """

    key = F.TITLE_INDEX  # the candidate's identity (logQ frequencies are counted by it)
    VOCABULARY_TABLES = {"title_embedding": F.TITLE_VOCAB, "token_embedding": F.TOKEN_VOCAB}

    def __init__(self, num_titles: int, num_tokens: int, config: ModelConfig):
        super().__init__(name="candidate_tower")
        d = config.embedding_dim
        self.title_embedding = tf.keras.layers.Embedding(num_titles + 1, d, name="title_embedding")
        self.token_embedding = tf.keras.layers.Embedding(num_tokens + 1, d, name="title_token_embedding")
        self.projection = _projection(config.tower_layers, d, "candidate_projection")

    def call(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        tokens = features[F.TITLE_TOKENS]
        if not self.token_embedding.built:
            self.token_embedding.build(None)
        # Mean of the title's word embeddings; zeros for a title with no words.
        text = tf.nn.safe_embedding_lookup_sparse(self.token_embedding.embeddings, tokens, combiner="mean")
        title = self.title_embedding(features[F.TITLE_INDEX])
        return self.projection(tf.concat([title, text], axis=1))


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


class MovieCandidateTower(tf.keras.Model):
    """Movie -> candidate embedding, float32 [batch, embedding_dim] (L2-normalised with `normalize`).

    Input: movie_index int64 [batch] (or [batch, n]: embeds each). The
    embedding table `movie_embedding` is shared with HistoryQueryTower.
    """

    key = F.MOVIE_INDEX
    VOCABULARY_TABLES = {"movie_embedding": F.MOVIE_VOCAB}

    def __init__(self, num_movies: int, config: ModelConfig):
        super().__init__(name="candidate_tower")
        # +1: the vocabulary's OOV bucket.
        self.movie_embedding = tf.keras.layers.Embedding(num_movies + 1, config.embedding_dim, name="movie_embedding")
        self._normalize = config.normalize

    def embed(self, movie_index: tf.Tensor) -> tf.Tensor:
        return self.movie_embedding(movie_index)

    def call(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        out = self.embed(features[F.MOVIE_INDEX])
        return tf.math.l2_normalize(out, axis=-1) if self._normalize else out


class HistoryQueryTower(tf.keras.Model):
    """The user's recent movies (and, with use_timestamps, the time) -> query embedding, float32 [batch, d].

    Inputs: history_index, int64 sparse [batch, <= N] (most recent first;
    missing or OOV movies are ignored); with use_timestamps, per
    config.time_features: history_age int64 sparse [batch, <= N],
    since_previous, hour_of_day, day_of_week int64 [batch]. The history's movie embeddings (shared with
    the candidate tower; while training each is dropped whole with probability
    history_dropout) plus a position embedding
    are pooled two ways: their mean, and one learned query token attending
    over them (multi-head attention); an empty history pools to zeros and
    the query token alone. Time features: embeddings of the calendar and of
    the gap since the previous rating (each dropped whole while training with
    probability time_dropout), and each history movie's age added to its
    embedding.
    """

    def __init__(self, movies: MovieCandidateTower, num_movies: int, config: ModelConfig):
        super().__init__(name="query_tower")
        d = config.embedding_dim
        self._movies = movies
        self._num_movies = num_movies
        self._length = config.history_length
        self._time = set(config.time_features) if config.use_timestamps else set()
        self._normalize = config.normalize
        self.dropout = tf.keras.layers.Dropout(config.history_dropout, noise_shape=(None, config.history_length, 1))
        self.position_embedding = tf.keras.layers.Embedding(config.history_length, d, name="position_embedding")
        self.attention = None
        if config.history_encoder == "attention":
            self.query_token = self.add_weight(name="query_token", shape=(1, 1, d), initializer="random_normal")
            self.attention = tf.keras.layers.MultiHeadAttention(
                num_heads=config.attention_heads, key_dim=d // config.attention_heads, name="history_attention")
        if "calendar" in self._time:
            self.hour_embedding = tf.keras.layers.Embedding(F.HOURS_PER_DAY, d, name="hour_embedding")
            self.weekday_embedding = tf.keras.layers.Embedding(F.DAYS_PER_WEEK, d, name="weekday_embedding")
        # Each rating-time embedding (calendar, since_previous) dropped whole while training (noise [B, 1]).
        self.time_dropout = (tf.keras.layers.Dropout(config.time_dropout, noise_shape=(None, 1), name="time_dropout")
                             if config.time_dropout and self._time - {"history_age"} else None)
        if "since_previous" in self._time:
            self.since_previous_embedding = tf.keras.layers.Embedding(F.NUM_LOG_BUCKETS, d, name="since_previous_embedding")
        if "history_age" in self._time:
            self.age_embedding = tf.keras.layers.Embedding(F.NUM_LOG_BUCKETS, d, name="history_age_embedding")
        self.projection = _projection(config.tower_layers, d, "query_projection")

    def call(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        aligned = [history_indices(features, F.HISTORY_AGE)] if "history_age" in self._time else []
        items, valid, *ages = first_known(history_indices(features, F.HISTORY_INDEX), self._num_movies, self._length,
                                          *aligned)  # [B, N]: missing and unknown movies dropped
        items = tf.maximum(items, 0)
        valid = tf.cast(valid, tf.float32)
        # Each movie's dropout factor [B, N]: the layer's mask (noise shape [B, N, 1]) drawn on ones.
        keep = self.dropout(tf.ones_like(valid)[:, :, None], training=training)[:, :, 0]
        gathered = self._movies.embed(items)  # [B, N, d]: also builds the shared table
        mean, attended = pooled_history(
            gathered, self._movies.movie_embedding.embeddings, items, keep, valid,
            self.position_embedding(tf.range(self._length)),
            tf.maximum(ages[0], 0) if ages else None,
            self.age_embedding(tf.range(F.NUM_LOG_BUCKETS)) if ages else None,
            self.attention, self.query_token if self.attention is not None else None)
        parts = [mean] + ([attended] if attended is not None else [])
        timed = []
        if "calendar" in self._time:
            timed += [self.hour_embedding(features[F.HOUR_OF_DAY]), self.weekday_embedding(features[F.DAY_OF_WEEK])]
        if "since_previous" in self._time:
            timed.append(self.since_previous_embedding(features[F.SINCE_PREVIOUS]))
        if self.time_dropout is not None:
            timed = [self.time_dropout(part, training=training) for part in timed]
        parts += timed
        out = self.projection(tf.concat(parts, axis=1))
        return tf.math.l2_normalize(out, axis=-1) if self._normalize else out


class RetrievalModel(tfrs.models.Model):
    """In-batch softmax retrieval over (query, movie) pairs.

    `candidate_probability`, float32 [num_titles + 1], is each title's share of
    the training ratings; when given, the in-batch logits are corrected by
    -log(probability) (logQ correction of the sampling bias). `embedding_l2`
    adds that multiple of the squared norms of the batch's query and candidate
    embeddings to the loss.
    No metrics are computed while training (trainer.task measures the model
    with tfrs.metrics.FactorizedTopK over the whole catalog afterwards).
    """

    def __init__(
        self,
        query_tower: QueryTower,
        candidate_tower: CandidateTower,
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
        loss = self.task(
            query,
            candidate,
            candidate_sampling_probability=probability,
            compute_metrics=not training,
            compute_batch_metrics=False,
        )
        if self._embedding_l2:
            loss += self._embedding_l2 * (tf.reduce_sum(tf.square(query)) + tf.reduce_sum(tf.square(candidate)))
        return loss
