"""Serving cost of exact (brute-force) top-K retrieval, by catalog size.

  python bench/serving_bench.py [--model DIR] [--sizes 1682,37037,1000000]

The exported model scores a query against every catalog embedding (one
matmul and a top-k), the same scores as tfrs.metrics.FactorizedTopK. This
prints, for catalogs of each size (random 32-d embeddings), the latency of
one query (p50, p99) and the throughput at 256 queries per call; with --model
(a pushed SavedModel version directory) it also times that model's
serving_default signature end to end (Transform layer, query tower, top-100).
An approximate index (ScaNN) pays only where the exact search misses the
latency budget; see docs/performance.md.
"""

import core  # noqa: F401  (first: Keras 2 before TensorFlow loads)

# isort: split
import argparse
import os
import time

import numpy as np
import tensorflow as tf

K = 100
DIM = 32


def _timings(call, repeats: int) -> np.ndarray:
    call()  # trace and warm up
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return np.array(out) * 1000.0


def brute_force(size: int, repeats: int) -> str:
    rng = np.random.default_rng(0)
    candidates = tf.constant(rng.standard_normal((size, DIM), dtype=np.float32))

    @tf.function
    def top_k(queries):
        return tf.math.top_k(tf.matmul(queries, candidates, transpose_b=True), k=min(K, size))

    one = tf.constant(rng.standard_normal((1, DIM), dtype=np.float32))
    many = tf.constant(rng.standard_normal((256, DIM), dtype=np.float32))
    single = _timings(lambda: top_k(one), repeats)
    batch = _timings(lambda: top_k(many), max(5, repeats // 10))
    return (f"{size:>10,} movies  one query p50 {np.percentile(single, 50):7.2f} ms  p99 {np.percentile(single, 99):7.2f} ms"
            f"  |  256 queries {np.median(batch):8.1f} ms ({256 / np.median(batch) * 1000:,.0f} queries/s)")


def saved_model(path: str, repeats: int) -> str:
    serve = tf.saved_model.load(path).signatures["serving_default"]
    one = dict(user_id=tf.constant(["1"]), timestamp=tf.constant([880_000_000], tf.int64))
    many = dict(user_id=tf.constant([str(i) for i in range(256)]), timestamp=tf.fill([256], tf.constant(880_000_000, tf.int64)))
    single = _timings(lambda: serve(**one), repeats)
    batch = _timings(lambda: serve(**many), max(5, repeats // 10))
    return (f"{path}: serving_default, one request p50 {np.percentile(single, 50):.2f} ms  p99 {np.percentile(single, 99):.2f} ms"
            f"  |  256 users per request {np.median(batch):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="a pushed SavedModel (serving/<model>/<version>)")
    parser.add_argument("--sizes", default="1682,37037,1000000", help="catalog sizes to time")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    print(f"exact top-{K} over {DIM}-d embeddings, CPU, {os.cpu_count()} cores")
    for size in (int(s) for s in args.sizes.split(",")):
        print(brute_force(size, args.repeats))
    if args.model:
        print(saved_model(args.model, args.repeats))


if __name__ == "__main__":
    main()
