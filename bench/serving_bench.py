"""Serving cost: exact (brute-force) top-K by catalog size, and the approximate index against it.

  python bench/serving_bench.py [--model DIR] [--sizes 1682,37037,1000000]
  python bench/serving_bench.py --model DIR --data ../shared/data/ml-100k --index-sizes 100000,1000000,10000000

The exported model scores a query against every catalog embedding (one
matmul and a top-k), the same scores as tfrs.metrics.FactorizedTopK. Without
--index-sizes this prints, for catalogs of each size (random 32-d
embeddings), the latency of one query (p50, p99) and the throughput at 256
queries per call; with --model (a pushed SavedModel version directory) it
also times that model's serving_default signature end to end (Transform
layer, query tower, top-100).

With --index-sizes (and --model, --data: ml-100k's directory) it measures the
approximate index (retrieval.index: faiss IVF, inner product) against the
exact top-100 at each catalog size:

* movies: synthetic, derived from the model's own candidate embeddings
  (its embeddings/candidates.json): each synthetic movie is a trained movie's
  embedding plus Gaussian noise (per dimension, --noise times the catalog's
  standard deviation of that dimension), rescaled to the trained movie's
  norm; so the catalog is clustered around the trained movies, as a trained
  catalog is, not iid;
* queries: the model's query_embedding of real requests, ratings of
  ml-100k with the user's earlier movies as history; the index's nprobe is
  chosen on requests of odd user ids (the smallest with recall@100 >=
  --target-recall + 0.01 there), recall and latency are measured on requests of
  even user ids (disjoint users);
* exact: the SavedModel's arithmetic, tf.matmul + tf.math.top_k(k=100) over
  the whole catalog in a tf.function; index: CandidateIndex.search, k=100;
  both one query per call, p50 / p99 over --latency-queries queries;
* build: the index's train + add wall time, its size (vectors, ids,
  centroids) and the process's peak RSS after it (the catalog, its exact
  TensorFlow copy and the index are all held).

Also the real catalog itself (the model's movies) with the default index
parameters: recall@10 and @100 against the exact top-k (what `recommend
--index` serves). Figures: docs/performance.md.
"""

import core  # noqa: F401  (first: Keras 2 before TensorFlow loads)

# isort: split
import argparse
import os
import time

import numpy as np
import tensorflow as tf

from retrieval import embeddings, index

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


def _request(users, timestamps, histories):
    """serving_default / query_embedding inputs: histories [(movie ids, times)], most recent first."""
    width = max(1, max(len(ids) for ids, _ in histories))
    return dict(
        user_id=tf.constant([str(u) for u in users]), timestamp=tf.constant(timestamps, tf.int64),
        history=tf.constant([list(ids) + [""] * (width - len(ids)) for ids, _ in histories], tf.string),
        history_timestamps=tf.constant([list(t) + [0] * (width - len(t)) for _, t in histories], tf.int64))


def saved_model(path: str, repeats: int) -> str:
    serve = tf.saved_model.load(path).signatures["serving_default"]
    one = _request(["1"], [880_000_000], [((), ())])
    many = _request([str(i) for i in range(256)], [880_000_000] * 256, [((), ())] * 256)
    single = _timings(lambda: serve(**one), repeats)
    batch = _timings(lambda: serve(**many), max(5, repeats // 10))
    return (f"{path}: serving_default, one request p50 {np.percentile(single, 50):.2f} ms  p99 {np.percentile(single, 99):.2f} ms"
            f"  |  256 users per request {np.median(batch):.1f} ms")


# ---------------------------------------------------------------------------
# The approximate index against the exact top-K.


def _status(field: str) -> int:
    """A /proc/self/status memory figure (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def real_queries(model, data_dir: str, count: int, odd_users: bool, seed: int) -> np.ndarray:
    """query_embedding of `count` ml-100k ratings (users of odd or even id), each with the user's earlier movies."""
    ratings = np.loadtxt(os.path.join(data_dir, "u.data"), dtype=np.int64)
    users, movies, times = ratings[:, 0], ratings[:, 1], ratings[:, 3]
    rng = np.random.default_rng(seed)
    rows = rng.choice(np.flatnonzero(users % 2 == (1 if odd_users else 0)), size=count, replace=False)
    query = model.signatures[embeddings.QUERY_SIGNATURE]
    out = []
    for start in range(0, count, 256):
        batch = rows[start:start + 256]
        histories = []
        for row in batch:
            earlier = np.flatnonzero((users == users[row]) & (times < times[row]))
            earlier = earlier[np.argsort(-times[earlier], kind="stable")]
            histories.append(([str(m) for m in movies[earlier]], times[earlier].tolist()))
        request = _request(users[batch].tolist(), times[batch].tolist(), histories)
        out.append(query(**request)[embeddings.QUERY_OUTPUT].numpy())
    return np.concatenate(out)


def synthetic_catalog(real: np.ndarray, size: int, noise: float, seed: int) -> np.ndarray:
    """[size, d] float32: trained movies' embeddings plus noise, each rescaled to its trained movie's norm."""
    rng = np.random.default_rng(seed)
    scale = (noise * real.std(axis=0)).astype(np.float32)
    norms = np.linalg.norm(real, axis=1)
    out = np.empty((size, real.shape[1]), np.float32)
    for start in range(0, size, 1_000_000):
        n = min(1_000_000, size - start)
        source = rng.integers(0, len(real), n)
        x = real[source] + rng.standard_normal((n, real.shape[1]), dtype=np.float32) * scale
        x *= (norms[source] / np.linalg.norm(x, axis=1))[:, None]
        out[start:start + n] = x
    return out


def exact_searcher(catalog: np.ndarray):
    """The SavedModel's arithmetic: one matmul with the whole catalog and top_k (k=100), in a tf.function."""
    candidates = tf.constant(catalog)

    @tf.function(input_signature=[tf.TensorSpec([None, catalog.shape[1]], tf.float32)])
    def top_k(queries):
        return tf.math.top_k(tf.matmul(queries, candidates, transpose_b=True), k=min(K, catalog.shape[0])).indices

    return top_k


def recall(found, truth) -> float:
    """Mean |found ∩ truth| / |truth| over queries."""
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth, strict=True)]))


def index_positions(ann, queries, k=K):
    return [positions for _, positions in ann.search(queries, k)]


def measure_index(size, real, tune, measured, args) -> dict:
    started = time.perf_counter()
    catalog = real if size is None else synthetic_catalog(real, size, args.noise, seed=size)
    made = time.perf_counter() - started
    exact = exact_searcher(catalog)
    # 20 queries a call: the scores of a call are [20, movies] float32 (0.8 GB at 10M movies).
    truth_tune = np.concatenate([exact(tune[i:i + 20]).numpy() for i in range(0, len(tune), 20)])
    truth = np.concatenate([exact(measured[i:i + 20]).numpy() for i in range(0, len(measured), 20)])
    rss_before = _status("VmRSS")
    started = time.perf_counter()
    ann = index.CandidateIndex(catalog)
    build = time.perf_counter() - started
    rss_after = _status("VmRSS")
    sweep = []
    if size is not None:  # choose nprobe on the tuning queries
        nprobe = 1
        while True:
            ann.set_nprobe(nprobe)
            got = recall(index_positions(ann, tune), truth_tune)
            sweep.append((nprobe, got))
            if got >= args.target_recall + 0.01 or nprobe >= ann.nlist:
                break
            nprobe = min(ann.nlist, nprobe * 2)
    at_k = {k: recall(index_positions(ann, measured, k), truth[:, :k]) for k in (10, K)}
    lat = measured[:args.latency_queries]
    exact_ms = _timings_each(lambda q: exact(q).numpy(), lat)
    index_ms = _timings_each(lambda q: ann.search(q, K), lat)
    return {"size": catalog.shape[0], "dim": catalog.shape[1], "made": made, "index": ann.description,
            "recall10": at_k[10], "recall100": at_k[K], "exact_p50": np.percentile(exact_ms, 50),
            "exact_p99": np.percentile(exact_ms, 99), "index_p50": np.percentile(index_ms, 50),
            "index_p99": np.percentile(index_ms, 99), "build": build, "index_bytes": ann.nbytes,
            "rss_delta": rss_after - rss_before, "peak_rss": _status("VmHWM"), "sweep": sweep}


def _timings_each(call, queries: np.ndarray) -> np.ndarray:
    call(queries[:1])  # trace and warm up
    out = []
    for i in range(len(queries)):
        started = time.perf_counter()
        call(queries[i:i + 1])
        out.append(time.perf_counter() - started)
    return np.array(out) * 1000.0


def index_table(args) -> None:
    model = tf.saved_model.load(args.model)
    real = embeddings.read(args.model).embeddings
    tune = real_queries(model, args.data, args.tune_queries, odd_users=True, seed=1)
    measured = real_queries(model, args.data, args.measure_queries, odd_users=False, seed=2)
    print(f"approximate index (retrieval.index) against the exact top-{K}: {args.model}, {real.shape[0]:,} trained "
          f"movies, d={real.shape[1]}; queries: query_embedding of ml-100k requests, nprobe chosen on "
          f"{len(tune)} (odd user ids), measured on {len(measured)} (even user ids); synthetic movies: trained "
          f"embedding + noise {args.noise} x per-dimension std, rescaled; CPU, {os.cpu_count()} cores")
    header = (f"{'movies':>11} {'index':<30} {'recall@10':>9} {'recall@100':>10} {'exact p50/p99 ms':>17} "
              f"{'index p50/p99 ms':>17} {'p50 ratio':>9} {'build s':>8} {'index MB':>9} {'peak RSS GB':>11}")
    print(header)
    print("-" * len(header))
    sizes = [None] + [int(s) for s in args.index_sizes.split(",") if s]
    for size in sizes:
        r = measure_index(size, real, tune, measured, args)
        name = f"{r['size']:,}" + ("*" if size is None else "")
        print(f"{name:>11} {r['index']:<30} {r['recall10']:>9.4f} {r['recall100']:>10.4f} "
              f"{r['exact_p50']:>8.2f}/{r['exact_p99']:<8.2f} {r['index_p50']:>8.3f}/{r['index_p99']:<8.3f} "
              f"{r['exact_p50'] / r['index_p50']:>8.1f}x {r['build']:>8.1f} {r['index_bytes'] / 2**20:>9.0f} "
              f"{r['peak_rss'] / 2**30:>11.1f}", flush=True)
        if r["sweep"]:
            print(f"{'':>11} nprobe sweep on the tuning queries (nprobe: recall@100): "
                  + ", ".join(f"{n}: {v:.3f}" for n, v in r["sweep"]), flush=True)
    print(f"* the model's own catalog, the default nprobe ({index.DEFAULT_NPROBE}): what `movielens-tfx recommend "
          "--index` serves; peak RSS: the process's so far")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", help="a pushed SavedModel (serving/<model>/<version>)")
    parser.add_argument("--sizes", default="1682,37037,1000000", help="catalog sizes to time exact top-K on")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--index-sizes", default=None,
                        help="synthetic catalog sizes to measure the index at (needs --model and --data)")
    parser.add_argument("--data", help="ml-100k's directory (u.data): the requests the queries are made of")
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--target-recall", type=float, default=0.95)
    parser.add_argument("--tune-queries", type=int, default=300)
    parser.add_argument("--measure-queries", type=int, default=1000)
    parser.add_argument("--latency-queries", type=int, default=200)
    args = parser.parse_args()
    if args.index_sizes is not None:
        if not (args.model and args.data):
            parser.error("--index-sizes needs --model and --data")
        index_table(args)
        return
    print(f"exact top-{K} over {DIM}-d embeddings, CPU, {os.cpu_count()} cores")
    for size in (int(s) for s in args.sizes.split(",")):
        print(brute_force(size, args.repeats))
    if args.model:
        print(saved_model(args.model, args.repeats))


if __name__ == "__main__":
    main()
