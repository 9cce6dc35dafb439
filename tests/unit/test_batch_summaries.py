"""trainer.metrics.BatchSummaries: the step logs Keras' TensorBoard callback wrote, every N steps, nothing between."""

import numpy as np
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from trainer.metrics import BatchSummaries


class _Seen(tf.keras.callbacks.Callback):
    """The loss Keras hands the callbacks after every step."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float(logs["loss"]))


def test_batch_summaries_write_the_step_logs_every_n_steps_across_epochs(tmp_path):
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([tf.keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(52, 3)).astype(np.float32)
    seen = _Seen()
    # 2 epochs of 13 steps: the steps count on across epochs, as Keras' train counter does.
    model.fit(x, x[:, :1], batch_size=4, epochs=2, verbose=0, callbacks=[seen, BatchSummaries(str(tmp_path), 5)])

    events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    scalars = {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
               for tag in events.Tags()["tensors"]}
    assert set(scalars) == {"batch_loss", "batch_steps_per_second"}
    steps = [5, 10, 15, 20, 25]
    assert [step for step, _ in scalars["batch_loss"]] == steps
    np.testing.assert_allclose([value for _, value in scalars["batch_loss"]], [seen.losses[s - 1] for s in steps],
                               rtol=1e-6)
    assert [step for step, _ in scalars["batch_steps_per_second"]] == steps
    assert all(value > 0 for _, value in scalars["batch_steps_per_second"])
