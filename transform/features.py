"""Names shared by preprocessing_fn, the Trainer and the exported model: features, vocabularies, sizes."""

import tensorflow as tf

# Raw features the model reads (tf.Example names, as in tensorflow-datasets).
USER_ID = "user_id"
MOVIE_ID = "movie_id"
MOVIE_TITLE = "movie_title"
TIMESTAMP = "timestamp"
# The user's most recent movies rated strictly before the rating (most recent
# first; movielens.history) and their timestamps: string / int64 lists.
HISTORY = "history"
HISTORY_TIMESTAMPS = "history_timestamps"
# Eval examples only: every movie the user rated strictly before the rating
# (all of them, as a live system knew them; capped at MAX_RATED_BEFORE): the
# movies never recommended back. The history is its most recent part.
RATED_BEFORE = "rated_before"
MAX_RATED_BEFORE = 1000

# Transformed features.
USER_INDEX = "user_index"  # int64 []: user_id vocabulary index (OOV: vocab size)
TITLE_INDEX = "title_index"  # int64 []: movie_title vocabulary index
TITLE_TOKENS = "title_tokens"  # int64 sparse [None]: title token vocabulary indices
TIMESTAMP_BUCKET = "timestamp_bucket"  # int64 []: in [0, num_timestamp_buckets]
TIMESTAMP_Z = "timestamp_z"  # float32 []: (timestamp - mean) / stddev over train
HOUR_OF_DAY = "hour_of_day"  # int64 [] in [0, HOURS_PER_DAY), UTC
DAY_OF_WEEK = "day_of_week"  # int64 [] in [0, DAYS_PER_WEEK), 0 = Monday, UTC
MOVIE_INDEX = "movie_index"  # int64 []: movie_id vocabulary index (OOV: vocab size)
HISTORY_INDEX = "history_index"  # int64 sparse [None]: movie_id vocabulary index of each history movie
HISTORY_AGE = "history_age"  # int64 sparse [None]: log2 bucket of each history movie's age at the rating
SINCE_PREVIOUS = "since_previous"  # int64 []: log2 bucket of the time since the previous rating (0: none)

# Value ranges of the calendar features (the model's embedding table sizes).
HOURS_PER_DAY = 24
DAYS_PER_WEEK = 7
# Log2 time buckets: 0 = no value, 1 + floor(log2(seconds)) capped at this:
# bounded for any gap, however far in the future.
NUM_LOG_BUCKETS = 33

# Vocabulary files written by Transform.
USER_VOCAB = "user_id"
TITLE_VOCAB = "movie_title"
TOKEN_VOCAB = "title_tokens"
MOVIE_VOCAB = "movie_id"
# movie_id with train counts (lines "<count> <movie_id>"), for logQ correction.
MOVIE_FREQUENCY_VOCAB = "movie_id_frequency"
# movie_title with train counts (lines "<count> <title>"), for logQ correction.
TITLE_FREQUENCY_VOCAB = "movie_title_frequency"

# The raw rating features the model reads, with their types. (The catalog's
# examples carry MOVIE_ID and MOVIE_TITLE.)
_RAW_RATING_TYPES = {USER_ID: tf.string, MOVIE_ID: tf.string, MOVIE_TITLE: tf.string, TIMESTAMP: tf.int64}
_RAW_LIST_TYPES = {HISTORY: tf.string, HISTORY_TIMESTAMPS: tf.int64, RATED_BEFORE: tf.string}
# The variable-length list features: any length, empty included, whatever one batch of data shows.
RAW_LIST_FEATURES = tuple(_RAW_LIST_TYPES)
_CATALOG_TYPES = {MOVIE_ID: tf.string, MOVIE_TITLE: tf.string}


def raw_rating_spec(shape=()) -> dict:
    """tf.io parsing spec of the raw rating features the model reads.

    shape (): one value per example, as the Trainer and `evaluate_hits` parse
    them; (1,): the shape SchemaGen infers, as Transform's graph takes them.
    The history lists are VarLenFeatures (SparseTensors) either way.
    """
    spec = {name: tf.io.FixedLenFeature(list(shape), dtype) for name, dtype in _RAW_RATING_TYPES.items()}
    spec.update({name: tf.io.VarLenFeature(dtype) for name, dtype in _RAW_LIST_TYPES.items()})
    return spec


def catalog_spec() -> dict:
    """tf.io parsing spec of the catalog examples: movie_id and movie_title."""
    return {name: tf.io.FixedLenFeature([], dtype) for name, dtype in _CATALOG_TYPES.items()}
