"""The history towers: the rating's most recent earlier movies, pooled by attention and a mean, against
the movie, with ONE movie embedding table shared by both towers (a movie in a history and the same movie
as a candidate are the same vector), so a brand-new user with a few ratings is served as well as an old
one. The family `history` (trainer.families); it reads ModelConfig.history_length (>= 1) movies.
"""

from __future__ import annotations

from typing import Dict, Tuple

import tensorflow as tf
import tensorflow_transform as tft

from trainer.config import AFFINITY_FEATURES, ModelConfig
from trainer.model import first_known, history_indices, pooled_history, projection
from transform import features as F

NAME = "history"
# The movie vocabulary, the history's indices and the time features only.
TUTORIAL_FEATURES = False
CANDIDATE_VOCABULARIES = (F.MOVIE_VOCAB, F.MOVIE_FREQUENCY_VOCAB)
CANDIDATE_FEATURES = (F.MOVIE_TITLE, F.MOVIE_ID)
QUERY_FEATURES = (F.USER_ID, F.TIMESTAMP, F.HISTORY, F.HISTORY_TIMESTAMPS)


def towers(tf_transform_output: tft.TFTransformOutput, config: ModelConfig) -> Tuple[tf.keras.Model, tf.keras.Model]:
    """(HistoryQueryTower, MovieCandidateTower) sharing one table sized from Transform's movie vocabulary."""
    num_movies = tf_transform_output.vocabulary_size_by_name(F.MOVIE_VOCAB)
    candidate_tower = MovieCandidateTower(num_movies, config)  # first: the query tower holds it
    return HistoryQueryTower(candidate_tower, num_movies, config), candidate_tower


def uses_affinity(config: ModelConfig) -> bool:
    """Whether the rating's time scores movies through their affinity vectors (an *_affinity time feature)."""
    return config.use_timestamps and any(name in AFFINITY_FEATURES for name in config.time_features)


class MovieCandidateTower(tf.keras.Model):
    """Movie -> candidate embedding, float32 [batch, embedding_dim] (L2-normalised with `normalize`), and with
    an affinity time feature the movie's affinity vector after it: [batch, embedding_dim + affinity_dim].

    Input: movie_index int64 [batch] (or [batch, n]: embeds each). The
    embedding table `movie_embedding` is shared with HistoryQueryTower.
    """

    key = F.MOVIE_INDEX
    # A table absent from a model (the affinities without an affinity feature) is skipped by trainer.warm_start.
    VOCABULARY_TABLES = {"movie_embedding": F.MOVIE_VOCAB, "affinity_embedding": F.MOVIE_VOCAB}

    def __init__(self, num_movies: int, config: ModelConfig):
        super().__init__(name="candidate_tower")
        # +1: the vocabulary's OOV bucket.
        self.movie_embedding = tf.keras.layers.Embedding(num_movies + 1, config.embedding_dim, name="movie_embedding")
        self._normalize = config.normalize
        if uses_affinity(config):
            self.affinity_embedding = tf.keras.layers.Embedding(num_movies + 1, config.affinity_dim,
                                                                name="movie_affinity_embedding")

    def embed(self, movie_index: tf.Tensor) -> tf.Tensor:
        return self.movie_embedding(movie_index)

    def call(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
        out = self.embed(features[F.MOVIE_INDEX])
        out = tf.math.l2_normalize(out, axis=-1) if self._normalize else out
        if hasattr(self, "affinity_embedding"):
            out = tf.concat([out, self.affinity_embedding(features[F.MOVIE_INDEX])], axis=-1)
        return out


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
    embedding. With the affinity features, the embeddings of the rating's hour
    and weekday (affinity_dim each, summed, dropped whole with time_dropout)
    follow the normalised query, float32 [batch, d + affinity_dim]: the score
    gains their dot product with the movie's affinity vector.
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
        self.projection = projection(config.tower_layers, d, "query_projection")
        if "hour_affinity" in self._time:
            self.hour_affinity = tf.keras.layers.Embedding(F.HOURS_PER_DAY, config.affinity_dim,
                                                           name="hour_affinity_embedding")
        if "weekday_affinity" in self._time:
            self.weekday_affinity = tf.keras.layers.Embedding(F.DAYS_PER_WEEK, config.affinity_dim,
                                                              name="weekday_affinity_embedding")

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
        out = tf.math.l2_normalize(out, axis=-1) if self._normalize else out
        affinity = [layer(features[name]) for layer, name in ((getattr(self, "hour_affinity", None), F.HOUR_OF_DAY),
                                                              (getattr(self, "weekday_affinity", None), F.DAY_OF_WEEK))
                    if layer is not None]
        if affinity:
            context = tf.add_n(affinity)
            if self.time_dropout is not None:
                context = self.time_dropout(context, training=training)
            out = tf.concat([out, context], axis=-1)
        return out
