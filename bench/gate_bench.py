"""The gate on cases whose answer is known, and the cost of its intervals.

  python bench/gate_bench.py aa [--data DIR] [--pairs 5] [--training-noise X]
  python bench/gate_bench.py planted [--effect 0.5]
  python bench/gate_bench.py cost [--ratings 1000000]

aa: A/A pairs. The same config (the default one, the baseline variant) trained
twice with two seeds on one output directory and metadata store: the second
model is gated against the first, which is blessed. Neither is better by
construction; the gate must not bless the second. Prints, per pair, the gain's
interval and the decision, then how many second models were blessed; with
--training-noise 0 (the users' intervals alone) also the training noise the
pairs measure (core.comparison.noise_of): how the gate's default was set.

planted: the session generator with and without planted context
(synthetic.generate(context_effect=...): movies tied to the time of day). On
each, the main job (the baseline variant, then the default timestamp variant,
the one `make run` trains, whose hour affinity can read the planted context):
prints the timestamp model's comparison with the baseline model and whether it
was blessed. With context it must be blessed with an interval clear of zero;
without, it must not be (tests/test_gate_uncertainty.py checks both).

cost: core.comparison's bootstrap on per-rating hits of the size of a 1M-rating
run's eval split (its users: synthetic.at_scale's N/160), timed.
"""

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import core  # noqa: E402,F401  (Keras 2 before TensorFlow loads)

# The planted and A/A synthetic data: ml-100k's size in users and movies, fewer ratings (a run takes ~1 min).
SYNTHETIC = dict(layout="ml-100k", num_users=943, num_movies=1682, num_ratings=60_000, seed=3, num_tastes=12,
                 days=200, sessions=True)


def _job(data: str, output: str, variants, training_noise=None, **model):
    from app.job import run_job
    from app.logs import quiet_logs
    from pipeline.config import named_config

    config = named_config("default", data_path=data, output_dir=output)
    if training_noise is not None:
        config = config.replace(training_noise=training_noise)
    if model:
        config = config.with_model(**model)
    with quiet_logs(os.path.join(output, "run.log")):
        return run_job(config, variants=variants)


def _line(name: str, model: dict) -> str:
    compared = model.get("comparisons", {}).get("blessed_model")
    words = compared["words"] if compared else "no blessed model to compare with"
    return (f"{name}: top-100 {model['eval'][100]:.4f}; vs the latest blessed model: {words}; "
            f"{'blessed' if model['blessed'] else 'not blessed'}")


def synthetic_data(context_effect: float = 0.0) -> str:
    from movielens import synthetic

    return synthetic.generate(tempfile.mkdtemp(prefix="gate-data-"), context_effect=context_effect, **SYNTHETIC)


def aa(args) -> None:
    from core import comparison

    data = args.data or synthetic_data()
    blessed, measured = 0, []
    for pair in range(args.pairs):
        first, second = 42 + 2 * pair, 43 + 2 * pair
        output = tempfile.mkdtemp(prefix=f"gate-aa-{pair}-")
        started = time.time()
        a = _job(data, output, ["baseline"], args.training_noise, seed=first)["models"]["baseline"]
        b = _job(data, output, ["baseline"], args.training_noise, seed=second)["models"]["baseline"]
        blessed += bool(b["blessed"])
        measured.append(comparison.Comparison.from_json(b["comparisons"]["blessed_model"]))
        print(f"pair {pair + 1} ({time.time() - started:.0f} s): seed {first}: top-100 {a['eval'][100]:.4f}, "
              f"{'blessed' if a['blessed'] else 'not blessed'}; then " + _line(f"seed {second}", b), flush=True)
    print(f"A/A: {blessed} of {args.pairs} second models blessed over the first (data: {data})")
    if args.training_noise == 0:
        print(f"the training noise these pairs measure (core.comparison.noise_of): {comparison.noise_of(measured):.4f}")


def planted(args) -> None:
    for effect in (args.effect, 0.0):
        data = synthetic_data(effect)
        result = _job(data, tempfile.mkdtemp(prefix=f"gate-planted-{effect}-"), ["baseline", "timestamp"])
        models = result["models"]
        print(f"context_effect {effect}: baseline {models['baseline']['eval'][100]:.4f}; "
              + _line("timestamp", models["timestamp"]), flush=True)


def cost(args) -> None:
    import numpy as np

    from core import comparison

    rng = np.random.default_rng(0)
    ratings = args.ratings // 5  # the eval split: the latest 20%
    users = rng.integers(0, max(50, args.ratings // 160), ratings)
    a, b = rng.random(ratings) < 0.56, rng.random(ratings) < 0.55
    for _ in range(2):  # the second is the figure (the first warms NumPy)
        started = time.process_time()
        result = comparison.from_hits(users, a, b)
        seconds = time.process_time() - started
    print(f"bootstrap of {ratings:,} eval ratings, {result.users:,} users, {comparison.BOOTSTRAP_DRAWS} draws: "
          f"{seconds:.2f} s CPU; {result.words()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("aa")
    p.add_argument("--data", help="MovieLens data (default: synthetic sessions of ml-100k's size)")
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--training-noise", type=float, default=None,
                   help="the gate's training noise (default: the config's); 0 also prints the noise the pairs measure")
    p.set_defaults(func=aa)
    p = sub.add_parser("planted")
    p.add_argument("--effect", type=float, default=0.5)
    p.set_defaults(func=planted)
    p = sub.add_parser("cost")
    p.add_argument("--ratings", type=int, default=1_000_000)
    p.set_defaults(func=cost)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
