"""preprocessing_fn: vocabularies and timestamp features, analysed on the train split.

Outputs (see transform.features for names and shapes):
  user_index, title_index, title_tokens   vocabulary lookups (one OOV bucket each)
  timestamp_bucket                         bucket of the timestamp (tutorial: 1000
                                           boundaries evenly between train min and max)
  timestamp_z                              timestamp standardised by train mean/variance
  hour_of_day, day_of_week                 calendar features of the timestamp (UTC)
Every output depends on a single raw feature, so the query side (user_id,
timestamp) and the candidate side (movie_title) can each be transformed alone.
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

    timestamps = _dense(inputs[F.TIMESTAMP])
    boundaries = timestamp_boundaries(timestamps, config.timestamp_buckets, config.num_timestamp_buckets)
    outputs[F.TIMESTAMP_BUCKET] = tft.apply_buckets(tf.cast(timestamps, tf.float32), boundaries)
    outputs[F.TIMESTAMP_Z] = tft.scale_to_z_score(tf.cast(timestamps, tf.float32))
    seconds = tf.math.floormod(timestamps, _SECONDS_PER_DAY)
    outputs[F.HOUR_OF_DAY] = tf.cast(seconds // (_SECONDS_PER_DAY // F.HOURS_PER_DAY), tf.int64)
    # 1970-01-01 was a Thursday (3 when Monday is 0).
    outputs[F.DAY_OF_WEEK] = tf.cast(tf.math.floormod(timestamps // _SECONDS_PER_DAY + 3, F.DAYS_PER_WEEK), tf.int64)
    return outputs
