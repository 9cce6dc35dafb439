"""Names shared by preprocessing_fn, the Trainer and the exported model: features, vocabularies, sizes."""

import tensorflow as tf

# Raw features the model reads (tf.Example names, as in tensorflow-datasets).
USER_ID = "user_id"
MOVIE_ID = "movie_id"
MOVIE_TITLE = "movie_title"
TIMESTAMP = "timestamp"

# Transformed features.
USER_INDEX = "user_index"  # int64 []: user_id vocabulary index (OOV: vocab size)
TITLE_INDEX = "title_index"  # int64 []: movie_title vocabulary index
TITLE_TOKENS = "title_tokens"  # int64 sparse [None]: title token vocabulary indices
TIMESTAMP_BUCKET = "timestamp_bucket"  # int64 []: in [0, num_timestamp_buckets]
TIMESTAMP_Z = "timestamp_z"  # float32 []: (timestamp - mean) / stddev over train
HOUR_OF_DAY = "hour_of_day"  # int64 [] in [0, HOURS_PER_DAY), UTC
DAY_OF_WEEK = "day_of_week"  # int64 [] in [0, DAYS_PER_WEEK), 0 = Monday, UTC

# Value ranges of the calendar features (the model's embedding table sizes).
HOURS_PER_DAY = 24
DAYS_PER_WEEK = 7

# Vocabulary files written by Transform.
USER_VOCAB = "user_id"
TITLE_VOCAB = "movie_title"
TOKEN_VOCAB = "title_tokens"
# movie_title with train counts (lines "<count> <title>"), for logQ correction.
TITLE_FREQUENCY_VOCAB = "movie_title_frequency"

# The raw rating features the model reads, with their types. (The catalog's
# examples carry MOVIE_ID and MOVIE_TITLE.)
_RAW_RATING_TYPES = {USER_ID: tf.string, MOVIE_TITLE: tf.string, TIMESTAMP: tf.int64}
_CATALOG_TYPES = {MOVIE_ID: tf.string, MOVIE_TITLE: tf.string}


def raw_rating_spec(shape=()) -> dict:
    """tf.io parsing spec of the raw rating features the model reads.

    shape (): one value per example, as the Trainer and `evaluate_hits` parse
    them; (1,): the shape SchemaGen infers, as Transform's graph takes them.
    """
    return {name: tf.io.FixedLenFeature(list(shape), dtype) for name, dtype in _RAW_RATING_TYPES.items()}


def catalog_spec() -> dict:
    """tf.io parsing spec of the catalog examples: movie_id and movie_title."""
    return {name: tf.io.FixedLenFeature([], dtype) for name, dtype in _CATALOG_TYPES.items()}
