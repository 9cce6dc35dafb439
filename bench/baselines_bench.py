"""The Baselines component's work, piece by piece, on a pipeline's own artifacts.

  python bench/pipeline_bench.py --synthetic 10000000 --configs default --to Transform,Baselines --output DIR
  python bench/baselines_bench.py DIR [--threads N]

Runs what the Baselines component runs (components.baselines reading the
latest RatingsExampleGen and CatalogExampleGen artifacts under DIR, then
baselines.algorithms.compute, as the component calls it) and prints each step's wall time, the
process's peak RSS (VmHWM) after it, and each baseline's top-100. `--threads`
sets algorithms.THREADS (the threads ranking a score matrix's batches). Run it
alone on the machine.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from trainer_input_bench import _latest, _memory_mb  # noqa: E402

import core  # noqa: E402,F401  (Keras 2 before TensorFlow loads)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output", help="a pipeline_bench.py --output directory (or a pipeline root)")
    parser.add_argument("--threads", type=int, help="algorithms.THREADS (default: its own)")
    args = parser.parse_args()
    from tfx.types import standard_artifacts

    from baselines import algorithms
    from components import baselines as component

    if args.threads:
        algorithms.THREADS = args.threads

    def artifact(pattern: str):
        found = standard_artifacts.Examples()
        found.uri = _latest(args.output, pattern)
        found.split_names = '["train", "eval", "catalog"]'
        return found

    timings = []

    def timed(name, fn, *fn_args, **fn_kwargs):
        started = time.time()
        result = fn(*fn_args, **fn_kwargs)
        timings.append((name, time.time() - started, _memory_mb()["peak"]))
        print(f"  {name:<28} {timings[-1][1]:8.1f} s   peak RSS {timings[-1][2]:,} MB", flush=True)
        return result

    examples, catalog = artifact("RatingsExampleGen/examples/*"), artifact("CatalogExampleGen/examples/*")
    index = timed("read the catalog", component._catalog_index, catalog)
    train = timed("read train", component._read_split, [examples], "train", index, False)
    evaluation = timed("read eval", component._read_split, [examples], "eval", index)
    print(f"{len(train.items):,} train and {len(evaluation.items):,} eval ratings, {len(index):,} movies, "
          f"THREADS {algorithms.THREADS}")
    # compute() itself, each step timed where it is called: the scoring of each baseline (_scored, in the order
    # of compute's result), the co-occurrence, EASE's inverse and the cosine.
    scored = []
    for name in ("_co_occurrence", "_ease", "_cosine_in_place", "_scored"):
        step = getattr(algorithms, name)

        def wrapped(*call_args, _step=step, _name=name, **call_kwargs):
            label = f"scoring #{len(scored) + 1}" if _name == "_scored" else _name.strip("_")
            result = timed(label, _step, *call_args, **call_kwargs)
            if _name == "_scored":
                scored.append(label)
            return result

        setattr(algorithms, name, wrapped)
    result = algorithms.accuracies_only(algorithms.compute(train, evaluation, len(index), exclude_history=True,
                                                           per_rating={}))
    print(f"total {sum(seconds for _, seconds, _ in timings):.1f} s, peak RSS {timings[-1][2]:,} MB")
    for label, (name, accuracy) in zip(scored, result.items(), strict=True):
        print(f"  {label}: {name:<18} top-100 {accuracy[100]:.4f}")


if __name__ == "__main__":
    main()
