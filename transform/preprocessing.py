"""preprocessing_fn: vocabularies and timestamp features, analysed on the train split.

Outputs (see transform.features for names and shapes):
  user_index, title_index, title_tokens   vocabulary lookups (one OOV bucket each)
  timestamp_bucket                         bucket of the timestamp (tutorial: 1000
                                           boundaries evenly between train min and max)
  timestamp_z                              timestamp standardised by train mean/variance
                                           (these five: the tutorial towers' features, only
                                           with TransformConfig.tutorial_features)
  hour_of_day, day_of_week                 calendar features of the timestamp (UTC)
  movie_index                              movie_id vocabulary lookup (the candidate key of
                                           history-aware models), with train frequencies for logQ
  history_index                            the same lookup of each history movie (sparse)
  history_age, since_previous              log2 buckets of each history movie's age and of the
                                           time since the previous rating (bounded for any gap)
Every output depends on the query side's raw features (user_id, timestamp,
history, history_timestamps) or on the candidate side's (movie_id,
movie_title), never on both, so each side can be transformed alone.
Time features stay bounded after the training range: timestamp_z is clipped
to the train range, buckets clamp, calendar features are periodic and the
log2 buckets are capped.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tensorflow_transform as tft

from transform import features as F
from transform.config import TransformConfig

_SECONDS_PER_DAY = 86400
# Keras TextVectorization's default standardisation: lower case, no punctuation.
_PUNCTUATION = r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']'


def title_tokens(titles: tf.Tensor) -> tf.RaggedTensor:
    """Words of each title: string [batch] -> ragged string [batch, None]."""
    standardized = tf.strings.regex_replace(tf.strings.lower(titles), _PUNCTUATION, "")
    return tf.strings.split(standardized)


def timestamp_boundaries(timestamps: tf.Tensor, mode: str, num_buckets: int) -> tf.Tensor:
    """Bucket boundaries, float32 [1, n], analysed over the whole train split."""
    values = tf.cast(timestamps, tf.float32)
    if mode == "uniform":
        low, high = tft.min(values), tft.max(values)
        steps = tf.range(num_buckets, dtype=tf.float32) / float(num_buckets - 1)
        return tf.expand_dims(low + (high - low) * steps, 0)
    if mode == "quantiles":
        return tft.quantiles(values, num_buckets=num_buckets, epsilon=1.0 / (4 * num_buckets))
    raise ValueError(f"unknown timestamp_buckets {mode!r}")  # TransformConfig validates it


def _dense(x) -> tf.Tensor:
    """A [batch] tensor from a [batch] or [batch, 1] feature (or a sparse one)."""
    if isinstance(x, tf.SparseTensor):
        x = tf.sparse.to_dense(x)
    return tf.reshape(x, [-1])


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    config = TransformConfig.from_custom_config(custom_config)
    outputs = {}
    timestamps = _dense(inputs[F.TIMESTAMP])
    if config.tutorial_features:
        outputs.update(tutorial_features(inputs, timestamps, config))
    seconds = tf.math.floormod(timestamps, _SECONDS_PER_DAY)
    outputs[F.HOUR_OF_DAY] = tf.cast(seconds // (_SECONDS_PER_DAY // F.HOURS_PER_DAY), tf.int64)
    # 1970-01-01 was a Thursday (3 when Monday is 0).
    outputs[F.DAY_OF_WEEK] = tf.cast(tf.math.floormod(timestamps // _SECONDS_PER_DAY + 3, F.DAYS_PER_WEEK), tf.int64)

    if F.MOVIE_ID in inputs:  # absent in the tutorial's own test fixtures
        movie_ids = _dense(inputs[F.MOVIE_ID])
        movie_vocab = tft.vocabulary(movie_ids, vocab_filename=F.MOVIE_VOCAB)
        tft.vocabulary(movie_ids, vocab_filename=F.MOVIE_FREQUENCY_VOCAB, store_frequency=True)
        outputs[F.MOVIE_INDEX] = tft.apply_vocabulary(movie_ids, movie_vocab, num_oov_buckets=1)
        if F.HISTORY in inputs:
            outputs[F.HISTORY_INDEX] = tft.apply_vocabulary(inputs[F.HISTORY], movie_vocab, num_oov_buckets=1)
            outputs.update(history_times(timestamps, inputs[F.HISTORY_TIMESTAMPS]))
    return outputs


def tutorial_features(inputs: Dict[str, Any], timestamps: tf.Tensor, config: TransformConfig) -> Dict[str, Any]:
    """What the tutorial's towers read: user_index, title_index, title_tokens, timestamp_bucket, timestamp_z."""
    outputs = {}
    outputs[F.USER_INDEX] = tft.compute_and_apply_vocabulary(
        _dense(inputs[F.USER_ID]), vocab_filename=F.USER_VOCAB, num_oov_buckets=1
    )

    titles = _dense(inputs[F.MOVIE_TITLE])
    outputs[F.TITLE_INDEX] = tft.compute_and_apply_vocabulary(titles, vocab_filename=F.TITLE_VOCAB, num_oov_buckets=1)
    tft.vocabulary(titles, vocab_filename=F.TITLE_FREQUENCY_VOCAB, store_frequency=True)
    outputs[F.TITLE_TOKENS] = tft.compute_and_apply_vocabulary(
        title_tokens(titles).to_sparse(),
        vocab_filename=F.TOKEN_VOCAB,
        top_k=config.max_title_tokens,
        num_oov_buckets=1,
    )

    boundaries = timestamp_boundaries(timestamps, config.timestamp_buckets, config.num_timestamp_buckets)
    outputs[F.TIMESTAMP_BUCKET] = tft.apply_buckets(tf.cast(timestamps, tf.float32), boundaries)
    outputs[F.TIMESTAMP_Z] = clipped_z_score(tf.cast(timestamps, tf.float32))
    return outputs


def clipped_z_score(x: tf.Tensor) -> tf.Tensor:
    """(x - train mean) / train stddev, with x clipped to the train range first.

    A timestamp years after training scores like the last train second, not
    ever larger. Every analyzer reads the raw x (one analysis phase: TFT 1.16's
    multi-phase analysis fails under Beam 2.74 in deep_copy).
    """
    mean, variance = tft.mean(x), tft.var(x)
    clipped = tf.clip_by_value(x, tft.min(x), tft.max(x))
    return tf.math.divide_no_nan(clipped - mean, tf.sqrt(variance))


def log2_bucket(seconds: tf.Tensor) -> tf.Tensor:
    """1 + floor(log2(max(seconds, 1))), capped at NUM_LOG_BUCKETS - 1: int64, bounded for any gap."""
    seconds = tf.maximum(tf.cast(seconds, tf.float64), 1.0)
    bucket = 1 + tf.cast(tf.floor(tf.math.log(seconds) / tf.math.log(tf.constant(2.0, tf.float64))), tf.int64)
    return tf.minimum(bucket, F.NUM_LOG_BUCKETS - 1)


def history_times(timestamps: tf.Tensor, history_timestamps: tf.SparseTensor) -> Dict[str, Any]:
    """history_age (sparse, aligned with the history) and since_previous ([batch]; 0: empty history)."""
    rows = history_timestamps.indices[:, 0]
    ages = tf.gather(timestamps, rows) - history_timestamps.values
    age = tf.SparseTensor(history_timestamps.indices, log2_bucket(ages), history_timestamps.dense_shape)
    # The most recent history movie is the first of each row.
    dense = tf.sparse.to_dense(history_timestamps, default_value=-1)
    latest = tf.pad(dense, [[0, 0], [0, 1]], constant_values=-1)[:, 0]  # -1: empty history
    since = tf.where(latest >= 0, log2_bucket(timestamps - latest), tf.zeros_like(timestamps))
    return {F.HISTORY_AGE: age, F.SINCE_PREVIOUS: since}
