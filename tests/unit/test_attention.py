"""single_query_attention: Keras' MultiHeadAttention for one shared query, computed without projecting the keys."""

import numpy as np
import tensorflow as tf

from trainer.model import single_query_attention


def test_single_query_attention_is_multi_head_attention_with_the_same_weights_and_gradients():
    rng = np.random.default_rng(3)
    batch, n, d, heads = 16, 9, 8, 2
    tf.keras.utils.set_random_seed(1)
    query = tf.Variable(rng.normal(size=(1, 1, d)).astype(np.float32))
    keys = tf.constant(rng.normal(size=(batch, n, d)).astype(np.float32))
    valid = (rng.random((batch, n)) < 0.5).astype(np.float32)
    valid[:, 0] = 1.0  # the query token itself: always a valid key
    valid[3, 1:] = 0.0  # a row with an empty history
    valid = tf.constant(valid)

    keras = tf.keras.layers.MultiHeadAttention(num_heads=heads, key_dim=d // heads, name="history_attention")
    folded = tf.keras.layers.MultiHeadAttention(num_heads=heads, key_dim=d // heads, name="history_attention")
    keras(tf.tile(query, [batch, 1, 1]), keys, attention_mask=valid[:, None, :] > 0)
    single_query_attention(folded, query, keys, valid)  # builds the same variables, in the same order...
    assert [v.name for v in folded.weights] == [v.name for v in keras.weights]
    for mine, theirs in zip(folded.weights, keras.weights, strict=True):
        mine.assign(theirs)  # ...then takes the other layer's values
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(keys)
        expected = keras(tf.tile(query, [batch, 1, 1]), keys, attention_mask=valid[:, None, :] > 0)[:, 0]
        got = single_query_attention(folded, query, keys, valid)
        loss_expected, loss_got = tf.reduce_sum(expected ** 2), tf.reduce_sum(got ** 2)
    assert got.shape == (batch, d)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(tape.gradient(loss_got, [keys, query, *folded.weights]),
                            tape.gradient(loss_expected, [keys, query, *keras.weights]), strict=True):
        # The key bias moves no output (softmax is shift-invariant): both gradients are ~0.
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-5)


def test_history_dropout_drops_whole_movies_while_training():
    from trainer.config import NAMED_CONFIGS
    from trainer.model import HistoryQueryTower, MovieCandidateTower

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
