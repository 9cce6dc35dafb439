"""The Trainer's in-memory train split: its time and memory, on a pipeline's own artifacts.

  python bench/pipeline_bench.py --synthetic 1000000 --configs default --to Transform,Baselines --output DIR
  python bench/trainer_input_bench.py DIR

The Trainer holds the train split transformed, in canonical order, in memory
(trainer.data.transformed_ratings_and_order: each epoch is a seeded shuffle of
its rows). This runs that function alone on the latest RatingsExampleGen train
split and Transform graph under DIR (a pipeline_bench.py --output directory, or
any pipeline root) and prints its wall time, the process's RSS before and after
and its peak (VmHWM; the process starts at about 0.5 GB with TensorFlow loaded),
and what the columns hold. Run it alone on the machine; one process per figure.
"""

import argparse
import glob
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import core  # noqa: E402,F401  (Keras 2 before TensorFlow loads)


def _memory_mb() -> dict:
    """The process's resident set now and at its peak, MB (Linux: /proc/self/status)."""
    fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return {name: int(fields[key].split()[0]) // 1024 for name, key in (("rss", "VmRSS"), ("peak", "VmHWM"))}


def _latest(root: str, pattern: str) -> str:
    """The latest (highest execution id) artifact directory under `root` matching `pattern`."""
    found = glob.glob(os.path.join(root, "**", pattern), recursive=True)
    if not found:
        sys.exit(f"{root}: no {pattern} (run the pipeline up to Transform there first)")
    return max(found, key=lambda path: int(path.rstrip("/").split("/")[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output", help="a pipeline_bench.py --output directory (or a pipeline root)")
    args = parser.parse_args()
    import tensorflow as tf
    import tensorflow_transform as tft

    from trainer import data

    graph = _latest(args.output, "Transform/transform_graph/*")
    train = os.path.join(_latest(args.output, "RatingsExampleGen/examples/*"), "Split-train", "*")
    layer = tft.TFTransformOutput(graph).transform_features_layer()
    before = _memory_mb()
    started = time.time()
    columns, order = data.transformed_ratings_and_order(train, layer)
    seconds = time.time() - started
    after = _memory_mb()
    print(f"train split: {train} ({len(tf.io.gfile.glob(train))} files), {len(order):,} ratings")
    print(f"transformed_ratings_and_order: {seconds:.1f} s; RSS {before['rss']} MB before, {after['rss']} MB after, "
          f"peak {after['peak']} MB ({after['peak'] - before['rss']} MB over the start)")
    for name, column in sorted(columns.items()):
        values = column.flat_values if isinstance(column, tf.RaggedTensor) else column
        print(f"  {name:<16} {values.dtype.name:<6} {int(values.shape[0]):>13,} values "
              f"({values.dtype.size * int(values.shape[0]) / 2**20:,.0f} MB)")


if __name__ == "__main__":
    main()
