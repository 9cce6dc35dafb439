"""How many epochs: validation top-100 after each epoch, on a validation slice carved from train.

  python bench/epoch_validation.py [--data DIR | --synthetic N] [--config default] [--split temporal]
      [--epochs 12] [--validation-fraction 0.1] [--seeds 42,43,44] [--set KEY=VALUE ...]
  python bench/epoch_validation.py --epochs 8 --seeds 42,43 \
      --compare 'age:time_features=["history_age"]' --compare 'calendar:time_features=["history_age","calendar"]'

The eval split is never read. The job's own split (`--split`, train fraction
0.8) gives the train ratings; the script writes them alone as a dataset (same
layout) and runs the pipeline's ExampleGen and Transform on it with the same
split method, holding out the last `--validation-fraction` of ALL ratings
(temporal: the most recent train ratings; random: a seeded sample of them) as
the validation split. Those validation examples are made exactly as eval
examples are (history and rated_before from every earlier rating), and
Transform's vocabularies and frequencies see only the carved train.

Then, for each variant (baseline, timestamp) and model seed, it trains with
the Trainer's own functions (trainer.task and trainer.data: the same model, input
pipeline and seeded shuffle) one epoch at a time and measures top-k on the validation
split after each epoch with the Trainer's metric (trainer.metrics, exclusion included). Training
`e` epochs of a longer run gives the same model as a run of `e` epochs (no
schedule depends on the epoch count), so one run measures every epoch count.

With --compare, it trains the baseline variant and each named timestamp-variant
candidate for --epochs and prints each candidate's paired difference with the
baseline variant on the validation ratings, with its interval over users
(core.comparison, as the gate), per seed and with each rating's hits averaged
over the seeds: how the time features were chosen without reading the eval split.

Otherwise it prints the validation top-100 per epoch and the choice by the one-standard-
error rule: the fewest epochs whose top-100 (averaged over variants and seeds)
is within one binomial standard error (over the validation ratings) of the
best epoch's.
"""

import argparse
import glob
import json
import math
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import core  # noqa: E402,F401  (Keras 2 before TensorFlow loads)
from core.comparison import GATE_K  # noqa: E402


def carve_train(data: str, split: str, out_dir: str) -> int:
    """Writes the job's train ratings (train fraction 0.8 of `split`) as a dataset in `out_dir`; returns their count."""
    from movielens import reader
    from pipeline.config import PipelineConfig

    loaded = reader.load(data)
    if loaded.bad_rows or not os.path.isdir(data):
        sys.exit("epoch_validation needs an unzipped dataset without bad rows")
    defaults = PipelineConfig(data_path=data)
    train, _ = reader.split_indices(loaded.ratings.timestamps, split, defaults.train_fraction, defaults.split_seed)
    ratings_name = reader.LAYOUT_FILES[loaded.layout]["ratings"]
    if reader._PARSERS[loaded.layout]["ratings"][2]:
        sys.exit(f"epoch_validation reads headerless ratings files, not {ratings_name}")
    shutil.copytree(data, out_dir, dirs_exist_ok=True)
    with open(os.path.join(data, ratings_name), "rb") as f:
        lines = [line for line in f.read().split(b"\n") if line.strip()]
    if len(lines) != len(loaded.ratings.timestamps):
        sys.exit("ratings file lines and ratings differ")
    with open(os.path.join(out_dir, ratings_name), "wb") as f:
        f.write(b"".join(lines[i] + b"\n" for i in train))
    return len(train)


def prepare(data: str, config_name: str, split: str, validation_fraction: float, work: str) -> dict:
    """ExampleGen (carved train -> train / validation) and Transform; returns the artifacts' file patterns."""
    from app.job import run_job
    from app.logs import quiet_logs
    from pipeline.config import named_config

    carved = os.path.join(work, "carved")
    n_train = carve_train(data, split, carved)
    total = n_train / 0.8
    train_fraction = (n_train - validation_fraction * total) / n_train
    output = os.path.join(work, "pipeline")
    config = named_config(config_name, data_path=carved, output_dir=output, split=split, train_fraction=train_fraction)
    config = config.with_model(epochs=1)  # the job only materializes ExampleGen and Transform here
    with quiet_logs(os.path.join(work, "run.log")):
        run_job(config, variants=["baseline"])
    root = os.path.join(output, "pipeline")

    def one(pattern):
        found = sorted(glob.glob(os.path.join(root, pattern)))
        if len(found) != 1:
            sys.exit(f"expected one {pattern} in {root}, found {found}")
        return found[0]

    return {
        "train": one("RatingsExampleGen/examples/*/Split-train") + "/*",
        "validation": one("RatingsExampleGen/examples/*/Split-eval") + "/*",
        "catalog": one("CatalogExampleGen/examples/*/Split-catalog") + "/*",
        "transform": one("Transform/transform_graph/*"),
        "train_fraction": train_fraction,
    }


def curve(paths: dict, config, epochs: int, per_rating: dict = None) -> list:
    """Validation top-k after each of `epochs` epochs, with the Trainer's functions: [{k: accuracy}]. With
    `per_rating`, it gets the last epoch's hit of each validation rating at GATE_K ("hits") and its user."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from trainer import data, families, metrics, task
    from trainer.config import TOP_KS
    from transform import features as F

    tf.config.experimental.enable_op_determinism()
    tf_transform_output = tft.TFTransformOutput(paths["transform"])
    layer = tf_transform_output.transform_features_layer()
    model = task.build_model(tf_transform_output, config)
    train = data.shuffled_batches(data.transformed_ratings(paths["train"], layer), config.batch_size, config.seed)
    raw_validation = data.raw_ratings(paths["validation"])
    validation = data.metric_batches(raw_validation, layer)
    catalog = data.read_catalog(paths["catalog"])
    names = families.get(config.family).CANDIDATE_FEATURES
    exclusions = catalog[F.MOVIE_ID] if config.exclude_history else None
    out = []
    for epoch in range(epochs):
        model.fit(train, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
        if per_rating is not None and epoch + 1 < epochs:
            continue  # only the last epoch is measured
        candidates = metrics.catalog_embeddings(model, layer, {name: catalog[name] for name in names})
        hits = {} if per_rating is not None else None
        out.append(metrics.factorized_top_k(model, candidates, validation, TOP_KS, exclusions, hits))
    if per_rating is not None:
        per_rating["hits"] = hits[GATE_K].astype(int).tolist()
        per_rating["users"] = [u.decode() for u in raw_validation[F.USER_ID].numpy().tolist()]
    return out


def run_child(args, job: str) -> dict:
    """One variant and seed (`job`, JSON) trained in a fresh process (`--one`); its printed result."""
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--config", args.config, "--epochs", str(args.epochs), "--one",
                          job, *[f"--set={pair}" for pair in args.set]], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"child failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_candidate(text: str):
    """--compare NAME:KEY=VALUE;KEY=VALUE -> (name, {key: value}) (values as for --set)."""
    from app.cli import model_overrides

    name, _, settings = text.partition(":")
    return name, model_overrides([pair for pair in settings.split(";") if pair])


def compare(args, paths: dict, n_validation: int) -> None:
    """Each --compare candidate (a timestamp variant) against the baseline variant, per seed and over the seeds
    (each rating's hits averaged over them), on the validation slice: the gate's paired comparison."""
    import numpy as np

    from core import comparison

    candidates = [("baseline", {"use_timestamps": False})] + [
        (name, {"use_timestamps": True, **settings}) for name, settings in map(parse_candidate, args.compare)]
    hits, users = {}, None
    for name, settings in candidates:
        for seed in (int(s) for s in args.seeds.split(",")):
            job = json.dumps({"settings": settings, "seed": seed, "paths": paths, "per_rating": True})
            result = run_child(args, job)
            hits[(name, seed)] = np.array(result["per_rating"]["hits"], float)
            users = result["per_rating"]["users"]
            print(f"{name:14s} seed {seed}: validation top-{GATE_K} {hits[(name, seed)].mean():.4f}   "
                  f"({result['seconds']:.0f} s)", flush=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    users = np.array(users)
    print(f"against the baseline variant on {n_validation} validation ratings, {len(set(users.tolist()))} users "
          f"({comparison.METHOD}, {comparison.DEFAULT_CONFIDENCE:.0%}):")
    for name, _ in candidates[1:]:
        per_seed = [comparison.from_hits(users, hits[(name, s)], hits[("baseline", s)]).words() for s in seeds]
        pooled = comparison.from_hits(users, np.mean([hits[(name, s)] for s in seeds], axis=0),
                                      np.mean([hits[("baseline", s)] for s in seeds], axis=0))
        print(f"  {name:14s} over {len(seeds)} seeds: {pooled.words()}; per seed: " + "; ".join(per_seed))


def one_standard_error_choice(mean_by_epoch: list, n_validation: int) -> int:
    """The fewest epochs (1-based) within one binomial standard error of the best mean top-100."""
    best = max(mean_by_epoch)
    se = math.sqrt(best * (1 - best) / n_validation)
    return next(e + 1 for e, value in enumerate(mean_by_epoch) if value >= best - se)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "ml-100k"))
    parser.add_argument("--synthetic", type=int, default=0, help="generate about this many ratings (as pipeline_bench)")
    parser.add_argument("--config", default="default")
    parser.add_argument("--split", default=None)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--validation-fraction", type=float, default=0.1, help="of all ratings, carved from train")
    parser.add_argument("--seeds", default="42")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME:KEY=VALUE;...",
                        help="a timestamp-variant candidate, compared with the baseline variant after --epochs "
                             "(paired, users resampled); repeat per candidate")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child: one variant and seed on prepared artifacts
        from app.cli import model_overrides
        from pipeline.config import VARIANTS
        from trainer.config import NAMED_CONFIGS

        job = json.loads(args.one)
        config = NAMED_CONFIGS[args.config].replace(**model_overrides(args.set))
        settings = job.get("settings") or {"use_timestamps": VARIANTS[job["variant"]]}
        config = config.replace(**settings, seed=job["seed"], epochs=args.epochs)
        started = time.time()
        per_rating = {} if job.get("per_rating") else None
        values = curve(job["paths"], config, args.epochs, per_rating)
        print(json.dumps({"curve": values, "seconds": time.time() - started, "per_rating": per_rating}))
        return

    from pipeline.config import NAMED_SPLITS, VARIANTS

    split = args.split or NAMED_SPLITS[args.config]
    work = tempfile.mkdtemp(prefix="epoch-validation-")
    data = os.path.abspath(args.data)
    if args.synthetic:
        from movielens import synthetic

        data = synthetic.at_scale(os.path.join(work, "synthetic"), args.synthetic)
    paths = prepare(data, args.config, split, args.validation_fraction, work)
    import tensorflow as tf

    n_validation = sum(1 for _ in tf.data.TFRecordDataset(glob.glob(paths["validation"]), compression_type="GZIP"))
    print(f"{args.config}, {split} split: validation = the last {args.validation_fraction:.0%} of all ratings "
          f"({n_validation} ratings) carved from train (train fraction {paths['train_fraction']:.4f} of it); "
          f"work dir {work}")
    if args.compare:
        compare(args, paths, n_validation)
        return
    curves = {}
    for variant in VARIANTS:
        for seed in (int(s) for s in args.seeds.split(",")):
            job = json.dumps({"variant": variant, "seed": seed, "paths": paths})
            result = run_child(args, job)
            curves[(variant, seed)] = [float(point[str(GATE_K)] if str(GATE_K) in point else point[GATE_K])
                                       for point in result["curve"]]
            print(f"{variant:9s} seed {seed}: " + " ".join(f"{v:.4f}" for v in curves[(variant, seed)])
                  + f"   ({result['seconds']:.0f} s)", flush=True)
    mean = [sum(c[e] for c in curves.values()) / len(curves) for e in range(args.epochs)]
    print("mean              : " + " ".join(f"{v:.4f}" for v in mean))
    for variant in VARIANTS:
        rows = [c for (v, _), c in curves.items() if v == variant]
        print(f"mean {variant:9s}    : " + " ".join(f"{sum(r[e] for r in rows) / len(rows):.4f}" for e in range(args.epochs)))
    best = max(range(args.epochs), key=lambda e: mean[e]) + 1
    chosen = one_standard_error_choice(mean, n_validation)
    print(f"best epoch {best} (top-{GATE_K} {mean[best - 1]:.4f}); one-standard-error choice: {chosen} epochs "
          f"(top-{GATE_K} {mean[chosen - 1]:.4f}, SE {math.sqrt(max(mean) * (1 - max(mean)) / n_validation):.4f})")


if __name__ == "__main__":
    main()
