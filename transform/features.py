"""Names shared by preprocessing_fn and the Trainer: raw and transformed features, vocabularies."""

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
HOUR_OF_DAY = "hour_of_day"  # int64 [] in [0, 24), UTC
DAY_OF_WEEK = "day_of_week"  # int64 [] in [0, 7), 0 = Monday, UTC

QUERY_RAW_FEATURES = (USER_ID, TIMESTAMP)
CANDIDATE_RAW_FEATURES = (MOVIE_TITLE,)

# Vocabulary files written by Transform.
USER_VOCAB = "user_id"
TITLE_VOCAB = "movie_title"
TOKEN_VOCAB = "title_tokens"
# movie_title with train counts (lines "<count> <title>"), for logQ correction.
TITLE_FREQUENCY_VOCAB = "movie_title_frequency"
