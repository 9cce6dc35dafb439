"""What one optimizer step on the movie embedding table costs, by catalog size.

  python bench/optimizer_step_bench.py [--movies 3704,37038] [--config default] [--steps 200] [--jit-compile]

The default model's movies share one embedding table (candidates and the
history's movies). A training step gathers batch_size x (history_length + 1)
rows of it, and the optimizer applies their gradient (tf.IndexedSlices). This
times that step alone, gather and apply, under tf.function, for each table
size: the config's optimizer, learning rate, embedding size, batch and
history length. Keras 2's Adam decays both moments of EVERY row at every step
(tf_keras/src/optimizers/adam.py, update_step's sparse branch) and then moves
every row, so the step grows with the catalog even though the batch touches
the same number of rows. Run it alone on the machine.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import core  # noqa: E402,F401  (Keras 2 before TensorFlow loads)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--movies", default="3704,37038", help="table sizes (the 1M and 10M synthetic catalogs + 1)")
    parser.add_argument("--config", default="default")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--jit-compile", action="store_true", help="the step compiled by XLA (tf.function(jit_compile))")
    args = parser.parse_args()
    import numpy as np
    import tensorflow as tf

    from trainer.config import NAMED_CONFIGS
    from trainer.task import OPTIMIZER_CLASSES

    config = NAMED_CONFIGS[args.config]
    lookups = config.batch_size * ((config.history_length or 0) + 1)
    print(f"config {args.config}: {config.optimizer} {config.learning_rate}, {config.embedding_dim}-d, "
          f"{lookups:,} rows gathered a step{', XLA' if args.jit_compile else ''}")
    for movies in (int(n) for n in args.movies.split(",")):
        ids = [tf.constant(np.random.default_rng(i).integers(0, movies, lookups), tf.int32) for i in range(10)]
        seconds = _step_seconds(tf, OPTIMIZER_CLASSES[config.optimizer](learning_rate=config.learning_rate),
                                tf.Variable(tf.random.stateless_normal([movies, config.embedding_dim], seed=(1, 2))),
                                ids, args.steps, args.jit_compile)
        print(f"  {movies:>9,} movies: {seconds * 1000:6.1f} ms a step")


def _step_seconds(tf, optimizer, table, ids, steps: int, jit_compile: bool) -> float:
    """Seconds of one step (gather `ids`' rows of `table`, apply their gradient), after a first traced one."""
    @tf.function(jit_compile=jit_compile)
    def step(rows):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.gather(table, rows)))
        optimizer.apply_gradients([(tape.gradient(loss, table), table)])

    step(ids[0])
    started = time.perf_counter()
    for i in range(steps):
        step(ids[i % len(ids)])
    return (time.perf_counter() - started) / steps

if __name__ == "__main__":
    main()
