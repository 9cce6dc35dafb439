"""The hour / weekday affinity time features (trainer.families.history): the score gains the dot product of
the rating's time embeddings with the movie's affinity vector, the history query is left as it is, and
warm start moves the affinity rows by movie id like the movie table's."""

import numpy as np
import pytest
import tensorflow as tf

from core.errors import ConfigError
from trainer.config import NAMED_CONFIGS
from trainer.families.history import HistoryQueryTower, MovieCandidateTower, uses_affinity
from trainer.warm_start import vocabulary_tables
from transform import features as F

NUM_MOVIES, BATCH = 20, 6


def _features(rng):
    history = tf.sparse.from_dense(tf.constant(rng.integers(0, NUM_MOVIES, size=(BATCH, 4)), tf.int64))
    return {
        F.HISTORY_INDEX: history,
        F.HISTORY_AGE: tf.sparse.from_dense(tf.constant(rng.integers(0, F.NUM_LOG_BUCKETS, size=(BATCH, 4)),
                                                        tf.int64)),
        F.HOUR_OF_DAY: tf.constant(rng.integers(0, 24, size=BATCH), tf.int64),
        F.DAY_OF_WEEK: tf.constant(rng.integers(0, 7, size=BATCH), tf.int64),
        F.MOVIE_INDEX: tf.constant(rng.integers(0, NUM_MOVIES + 1, size=BATCH), tf.int64),
    }


def _towers(**changes):
    changes = {"use_timestamps": True, **changes}
    config = NAMED_CONFIGS["default"].replace(history_length=4, embedding_dim=8, **changes)
    tf.keras.utils.set_random_seed(0)
    candidates = MovieCandidateTower(NUM_MOVIES, config)
    return config, HistoryQueryTower(candidates, NUM_MOVIES, config), candidates


@pytest.mark.parametrize("names", [("hour_affinity",), ("hour_affinity", "weekday_affinity"), ("weekday_affinity",)])
def test_the_score_is_the_history_score_plus_the_time_embeddings_dot_the_movies_affinity(names):
    rng = np.random.default_rng(5)
    features = _features(rng)
    config, query_tower, candidate_tower = _towers(time_features=("history_age",) + names, affinity_dim=3)
    query, candidate = query_tower(features, training=False), candidate_tower(features)
    d, k = config.embedding_dim, config.affinity_dim
    assert query.shape == (BATCH, d + k) and candidate.shape == (BATCH, d + k)
    # Oracle: the two parts computed from the weights.
    movie = candidate_tower.affinity_embedding.embeddings.numpy()[features[F.MOVIE_INDEX].numpy()]
    time = np.zeros((BATCH, k), np.float32)
    if "hour_affinity" in names:
        time += query_tower.hour_affinity.embeddings.numpy()[features[F.HOUR_OF_DAY].numpy()]
    if "weekday_affinity" in names:
        time += query_tower.weekday_affinity.embeddings.numpy()[features[F.DAY_OF_WEEK].numpy()]
    np.testing.assert_allclose(query[:, d:].numpy(), time, rtol=1e-6)
    np.testing.assert_allclose(candidate[:, d:].numpy(), movie, rtol=1e-6)
    # The history part is the model without the affinity (same weights): normalised, unchanged.
    np.testing.assert_allclose(np.linalg.norm(query[:, :d].numpy(), axis=1), 1.0, rtol=1e-5)
    scores = tf.matmul(query, candidate, transpose_b=True).numpy()
    expected = query[:, :d].numpy() @ candidate[:, :d].numpy().T + time @ movie.T
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


def test_time_dropout_drops_the_time_embeddings_whole_while_training_only():
    features = _features(np.random.default_rng(2))
    config, query_tower, _ = _towers(time_features=("hour_affinity",), affinity_dim=3, time_dropout=0.5)
    tf.keras.utils.set_random_seed(1)
    trained = query_tower(features, training=True)[:, config.embedding_dim:].numpy()
    kept = np.all(trained != 0, axis=1)
    dropped = np.all(trained == 0, axis=1)
    assert np.all(kept | dropped) and kept.any() and dropped.any()  # whole rows, some of each
    served = query_tower(features, training=False)[:, config.embedding_dim:].numpy()
    np.testing.assert_allclose(trained[kept], served[kept] * 2.0, rtol=1e-6)  # 1 / (1 - rate)


def test_without_an_affinity_feature_the_towers_have_no_affinity_table_and_warm_start_skips_it():
    features = _features(np.random.default_rng(1))
    # The baseline variant of the default config (affinity listed, timestamps off), and timestamps without it.
    for use_timestamps, time_features in ((False, ("history_age", "hour_affinity")), (True, ("history_age",))):
        config, query_tower, candidate_tower = _towers(time_features=time_features, use_timestamps=use_timestamps)
        assert not uses_affinity(config)
        assert query_tower(features).shape == (BATCH, config.embedding_dim)
        assert candidate_tower(features).shape == (BATCH, config.embedding_dim)
        assert not hasattr(candidate_tower, "affinity_embedding")
        assert sorted(vocabulary_tables(candidate_tower).values()) == [F.MOVIE_VOCAB]


def test_with_an_affinity_feature_warm_start_moves_its_rows_by_movie_id():
    features = _features(np.random.default_rng(1))
    _, query_tower, candidate_tower = _towers(time_features=("hour_affinity",))
    candidate_tower(features)
    assert sorted(vocabulary_tables(candidate_tower).values()) == [F.MOVIE_VOCAB, F.MOVIE_VOCAB]


def test_affinity_dim_is_a_positive_integer():
    with pytest.raises(ConfigError, match=r"^affinity_dim: 0 is not a positive integer$"):
        NAMED_CONFIGS["default"].replace(affinity_dim=0)
    with pytest.raises(ConfigError, match="time_features"):
        NAMED_CONFIGS["default"].replace(time_features=("minute_affinity",))
