"""The tutorial's towers: user id (+ time) against the movie title (+ title words), as the TFRS
context-features tutorial builds them. The family `tutorial` (trainer.families); no history
(ModelConfig.history_length 0).
"""

from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf
import tensorflow_transform as tft

from trainer.config import ModelConfig
from trainer.model import projection
from transform import features as F

NAME = "tutorial"
# Transform's user and title vocabularies, title words and timestamp buckets.
TUTORIAL_FEATURES = True
CANDIDATE_VOCABULARIES = (F.TITLE_VOCAB, F.TITLE_FREQUENCY_VOCAB)
CANDIDATE_FEATURES = (F.MOVIE_TITLE,)
QUERY_FEATURES = (F.USER_ID, F.TIMESTAMP)


def towers(tf_transform_output: tft.TFTransformOutput, config: ModelConfig) -> Tuple[tf.keras.Model, tf.keras.Model]:
    """(QueryTower, CandidateTower) sized from Transform's user, title and title-word vocabularies."""
    if F.USER_INDEX not in tf_transform_output.transformed_feature_spec():
        raise ValueError("the Transform graph has no tutorial-tower features (TransformConfig.tutorial_features "
                         "is off: it was built for a model with history); run Transform for this model config")
    query_tower = QueryTower(tf_transform_output.vocabulary_size_by_name(F.USER_VOCAB),
                             num_timestamp_buckets(tf_transform_output), config)
    candidate_tower = CandidateTower(
        tf_transform_output.vocabulary_size_by_name(F.TITLE_VOCAB),
        tf_transform_output.vocabulary_size_by_name(F.TOKEN_VOCAB),
        config,
    )
    return query_tower, candidate_tower


def num_timestamp_buckets(tf_transform_output: tft.TFTransformOutput) -> int:
    """Largest timestamp bucket id Transform can emit (its boundary count)."""
    for feature in tf_transform_output.transformed_metadata.schema.feature:
        if feature.name == F.TIMESTAMP_BUCKET:
            return int(feature.int_domain.max)
    raise KeyError(F.TIMESTAMP_BUCKET)


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
        self.projection = projection(config.tower_layers, d, "query_projection")

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
        self.projection = projection(config.tower_layers, d, "candidate_projection")

    def call(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        tokens = features[F.TITLE_TOKENS]
        if not self.token_embedding.built:
            self.token_embedding.build(None)
        # Mean of the title's word embeddings; zeros for a title with no words.
        text = tf.nn.safe_embedding_lookup_sparse(self.token_embedding.embeddings, tokens, combiner="mean")
        title = self.title_embedding(features[F.TITLE_INDEX])
        return self.projection(tf.concat([title, text], axis=1))
