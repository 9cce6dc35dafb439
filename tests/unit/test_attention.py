"""pooled_history: the history's mean and Keras' MultiHeadAttention for one shared query, computed from the
embedding tables without building the movies' key vectors; the tower's dropout drops whole movies."""

import numpy as np
import tensorflow as tf

from trainer.model import pooled_history


def test_pooled_history_is_the_mean_and_multi_head_attention_with_the_same_weights_and_gradients():
    rng = np.random.default_rng(3)
    batch, n, d, heads, num_movies, buckets = 16, 9, 8, 2, 30, 5
    tf.keras.utils.set_random_seed(1)
    query = tf.Variable(rng.normal(size=(1, 1, d)).astype(np.float32))
    movies = tf.Variable(rng.normal(size=(num_movies + 1, d)).astype(np.float32))
    positions = tf.Variable(rng.normal(size=(n, d)).astype(np.float32))
    age_table = tf.Variable(rng.normal(size=(buckets, d)).astype(np.float32))
    items = tf.constant(rng.integers(0, num_movies + 1, size=(batch, n)))
    ages = tf.constant(rng.integers(0, buckets, size=(batch, n)))
    valid = (rng.random((batch, n)) < 0.6).astype(np.float32)
    valid[3] = 0.0  # a row with an empty history
    valid = tf.constant(valid)
    keep = tf.constant(rng.choice([0.0, 1.0 / 0.7], size=(batch, n)).astype(np.float32))  # dropout factors

    keras = tf.keras.layers.MultiHeadAttention(num_heads=heads, key_dim=d // heads, name="history_attention")
    folded = tf.keras.layers.MultiHeadAttention(num_heads=heads, key_dim=d // heads, name="history_attention")

    def oracle():
        """The key vectors built explicitly: Keras' attention over [query; keys] and their plain mean."""
        keys = valid[:, :, None] * (keep[:, :, None] * tf.gather(movies, items) + positions[None]
                                    + tf.gather(age_table, ages))
        mean = tf.reduce_sum(keys, axis=1) / (tf.reduce_sum(valid, axis=1)[:, None] + 1e-6)
        tokens = tf.tile(query, [batch, 1, 1])
        mask = tf.concat([tf.ones([batch, 1]), valid], axis=1)[:, None, :] > 0
        return mean, keras(tokens, tf.concat([tokens, keys], axis=1), attention_mask=mask)[:, 0]

    def mine():
        return pooled_history(tf.gather(movies, items), movies, items, keep, valid, positions, ages, age_table,
                              folded, query)

    oracle()
    mine()  # builds the same variables, in the same order...
    assert [v.name for v in folded.weights] == [v.name for v in keras.weights]
    for ours, theirs in zip(folded.weights, keras.weights, strict=True):
        ours.assign(theirs)  # ...then takes the other layer's values
    inputs = [query, movies, positions, age_table]
    with tf.GradientTape(persistent=True) as tape:
        expected, got = oracle(), mine()
        loss_expected = sum(tf.reduce_sum(tf.sin(3 * t)) for t in expected)
        loss_got = sum(tf.reduce_sum(tf.sin(3 * t)) for t in got)
    for ours, theirs in zip(got, expected, strict=True):
        assert ours.shape == (batch, d)
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got[0].numpy()[3], 0.0)  # an empty history's mean
    for ours, theirs in zip(tape.gradient(loss_got, inputs + folded.weights),
                            tape.gradient(loss_expected, inputs + keras.weights), strict=True):
        # The key bias moves no output (softmax is shift-invariant): both gradients are ~0.
        np.testing.assert_allclose(tf.convert_to_tensor(ours).numpy(), tf.convert_to_tensor(theirs).numpy(),
                                   rtol=1e-4, atol=1e-4)

    mean_only = pooled_history(tf.gather(movies, items), movies, items, keep, valid, positions)
    without_ages = valid[:, :, None] * (keep[:, :, None] * tf.gather(movies, items) + positions[None])
    np.testing.assert_allclose(mean_only[0].numpy(), (tf.reduce_sum(without_ages, axis=1)
                                                      / (tf.reduce_sum(valid, axis=1)[:, None] + 1e-6)).numpy(),
                               rtol=1e-5, atol=1e-6)
    assert mean_only[1] is None


def test_history_dropout_drops_whole_movies_while_training():
    from trainer.config import NAMED_CONFIGS
    from trainer.families.history import HistoryQueryTower, MovieCandidateTower

    config = NAMED_CONFIGS["default"]
    tower = HistoryQueryTower(MovieCandidateTower(20, config), 20, config)
    tf.keras.utils.set_random_seed(2)
    embedded = tf.ones([64, config.history_length, config.embedding_dim])
    dropped = tower.dropout(embedded, training=True).numpy()
    kept = 1.0 / (1.0 - config.history_dropout)
    per_movie = dropped[:, :, 0]
    assert np.all(dropped == per_movie[:, :, None]), "a movie's embedding is dropped or kept whole"
    np.testing.assert_allclose(np.unique(per_movie), [0.0, kept], rtol=1e-6)
    assert abs((per_movie == 0).mean() - config.history_dropout) < 0.03
    np.testing.assert_array_equal(tower.dropout(embedded, training=False).numpy(), embedded.numpy())


def test_time_dropout_drops_each_rating_time_embedding_whole_and_only_while_training():
    from trainer.config import NAMED_CONFIGS
    from trainer.families.history import HistoryQueryTower, MovieCandidateTower

    config = NAMED_CONFIGS["default"].replace(use_timestamps=True, time_features=("history_age", "calendar"),
                                              time_dropout=0.4)
    tower = HistoryQueryTower(MovieCandidateTower(20, config), 20, config)
    tf.keras.utils.set_random_seed(3)
    embedded = tf.ones([2000, config.embedding_dim])
    dropped = tower.time_dropout(embedded, training=True).numpy()
    assert np.all(dropped == dropped[:, :1]), "an example's time embedding is dropped or kept whole"
    np.testing.assert_allclose(np.unique(dropped), [0.0, 1.0 / 0.6], rtol=1e-6)
    assert abs((dropped[:, 0] == 0).mean() - 0.4) < 0.03
    np.testing.assert_array_equal(tower.time_dropout(embedded, training=False).numpy(), embedded.numpy())
    plain = HistoryQueryTower(MovieCandidateTower(20, config), 20, config.replace(time_dropout=0.0))
    assert plain.time_dropout is None  # no layer (no random draws) when off: the same model as before
    ages_only = config.replace(time_features=("history_age",))
    assert HistoryQueryTower(MovieCandidateTower(20, ages_only), 20, ages_only).time_dropout is None
