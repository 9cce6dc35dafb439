"""The two-tower retrieval model (the TFRS context-features tutorial's architecture).

Both towers read *transformed* features (vocabulary indices, timestamp
buckets; see transform.features); the Transform layer in the exported model
maps raw inputs to them.
"""

from __future__ import annotations

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

    def call(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        parts = [self.user_embedding(features[F.USER_INDEX])]
        if self._use_timestamps:
            parts.append(self.timestamp_embedding(features[F.TIMESTAMP_BUCKET]))
            parts.append(tf.reshape(tf.cast(features[F.TIMESTAMP_Z], tf.float32), (-1, 1)))
        if self._time_of_day:
            parts.append(self.hour_embedding(features[F.HOUR_OF_DAY]))
            parts.append(self.weekday_embedding(features[F.DAY_OF_WEEK]))
        return self.projection(tf.concat(parts, axis=1))


class CandidateTower(tf.keras.Model):
    """Movie features -> candidate embedding, float32 [batch, embedding_dim].

    Inputs: title_index int64 [batch] and title_tokens, int64 SparseTensor
    [batch, None] of title-word indices (their embeddings are averaged, as the
    tutorial's TextVectorization + GlobalAveragePooling1D).
    """

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
        query = self.query_tower(features)
        candidate = self.candidate_tower(features)
        probability = None
        if self._candidate_probability is not None:
            probability = tf.gather(self._candidate_probability, features[F.TITLE_INDEX])
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
