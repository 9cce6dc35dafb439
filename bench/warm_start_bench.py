"""How many epochs a warm-started model needs to match a cold one, on the future (temporal split).

  python bench/warm_start_bench.py [--data DIR] [--variant baseline|timestamp] [--epochs N] [--seeds 42,43]

The protocol, on one dataset (default ml-100k) and the `default` config:
  1. the pipeline's ExampleGens and Transform at train fraction 0.7 and 0.8
     (two output directories): histories, vocabularies, catalog exactly as
     the pipeline makes them;
  2. the base: trainer.task.run_fn, as the Trainer runs it, on the earliest
     70% of ratings (cold, `epochs` epochs); it exports the model and its
     warm-start sidecar;
  3. on the earliest 80%, two models trained `epochs` epochs: cold, and
     warm-started from the base (trainer.task.start_from_base, what run_fn
     does); after every epoch, eval top-k (the Trainer's metric, with the
     history excluded) on the latest 20% of ratings. The warm model is also
     measured before its first epoch (epoch 0: the base's weights, its rows
     moved to the new vocabulary, new movies at their fresh initialisation).
It prints the per-epoch top-100 table and the first epoch at which the warm
model reaches the cold model's final top-100. Each seed (--seeds) repeats
steps 2 and 3 with that model seed.
"""

import argparse
import os
import sys
import tempfile
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import core  # noqa: E402,F401  (Keras 2 before TensorFlow loads)

BASE_FRACTION, NEW_FRACTION = 0.7, 0.8


def prepare(data: str, output: str, fraction: float, variant: str):
    """Runs ExampleGens and Transform at `fraction`; returns (config, file patterns and transform graph URI)."""
    from app.results import latest_outputs
    from pipeline.config import VARIANTS, named_config
    from pipeline.local_runner import run_pipeline

    config = named_config("default", data_path=data, output_dir=os.path.join(output, f"split-{fraction}"),
                          train_fraction=fraction).with_model(use_timestamps=VARIANTS[variant])
    run_pipeline(config, to_nodes=["Transform", "CatalogExampleGen"])
    examples = latest_outputs(config, "RatingsExampleGen")["examples"][0].uri
    paths = {
        "train": f"{examples}/Split-train/*",
        "eval": f"{examples}/Split-eval/*",
        "catalog": latest_outputs(config, "CatalogExampleGen")["examples"][0].uri + "/Split-catalog/*",
        "transform": latest_outputs(config, "Transform")["transform_graph"][0].uri,
    }
    return config, paths


def train_base(config, paths, output: str) -> str:
    """The base model, trained and exported by run_fn as the Trainer does; returns its serving directory."""
    from trainer import task
    from trainer.config import CATALOG_PATTERN_KEY

    serving = os.path.join(output, "serving")
    task.run_fn(types.SimpleNamespace(
        custom_config={**config.trainer_custom_config(), CATALOG_PATTERN_KEY: paths["catalog"]},
        transform_output=paths["transform"], train_files=paths["train"], eval_files=paths["eval"],
        model_run_dir=os.path.join(output, "model_run"), serving_model_dir=serving, base_model=None,
    ))
    return serving


def per_epoch(config, paths, base_model, epochs: int):
    """Eval top-k after each epoch ({epoch: {k: accuracy}}; epoch 0 only when warm), the warm-start summary
    (None when cold) and the training seconds (without the measuring)."""
    import tensorflow as tf
    import tensorflow_transform as tft

    from trainer import data, metrics, task
    from trainer.config import TOP_KS
    from transform import features as F

    model_config = config.model
    tf.config.experimental.enable_op_determinism()
    tft_output = tft.TFTransformOutput(paths["transform"])
    layer = tft_output.transform_features_layer()
    model = task.build_model(tft_output, model_config)
    train = data.rating_batches(paths["train"], layer, model_config.batch_size, shuffle_seed=model_config.seed)
    catalog = data.read_catalog(paths["catalog"])
    eval_batches = data.rating_batches(paths["eval"], layer, 4096)

    measuring = []  # seconds spent measuring, left out of the training time

    def top_k():
        started = time.time()
        candidates = metrics.catalog_embeddings(model, layer, catalog)
        result = metrics.factorized_top_k(model, candidates, eval_batches, TOP_KS, catalog[F.MOVIE_ID])
        measuring.append(time.time() - started)
        return result

    scores, summary = {}, None
    if base_model is not None:
        summary = task.start_from_base(model, tft_output, base_model, train)
        scores[0] = top_k()

    class Measure(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            scores[epoch + 1] = top_k()

    started, before = time.time(), len(measuring)
    model.fit(train, epochs=epochs, verbose=0, callbacks=[Measure()])
    return scores, summary, time.time() - started - sum(measuring[before:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "ml-100k"))
    parser.add_argument("--output", default=None, help="default: a new temporary directory")
    parser.add_argument("--variant", default="baseline", choices=("baseline", "timestamp"))
    parser.add_argument("--epochs", type=int, default=None, help="default: the default config's")
    parser.add_argument("--seeds", default="42")
    args = parser.parse_args()
    from app.logs import quiet_logs

    output = args.output or tempfile.mkdtemp(prefix="bench-warm-start-")
    print(f"output: {output} (logs in run.log)", flush=True)
    with quiet_logs(os.path.join(output, "run.log")):
        base_config, base_paths = prepare(args.data, output, BASE_FRACTION, args.variant)
        new_config, new_paths = prepare(args.data, output, NEW_FRACTION, args.variant)
    for seed in (int(s) for s in args.seeds.split(",")):
        changes = {"seed": seed, **({"epochs": args.epochs} if args.epochs else {})}
        base_config, new_config = base_config.with_model(**changes), new_config.with_model(**changes)
        epochs = new_config.model.epochs
        with quiet_logs(os.path.join(output, "run.log")):
            base_model = train_base(base_config, base_paths, os.path.join(output, f"base-{seed}"))
            cold, _, cold_seconds = per_epoch(new_config, new_paths, None, epochs)
            warm, summary, warm_seconds = per_epoch(new_config, new_paths, base_model, epochs)
        print(f"\n== seed {seed}, {args.variant} variant: base on the earliest {BASE_FRACTION:.0%}, models on the "
              f"earliest {NEW_FRACTION:.0%}, eval top-100 on the latest {1 - NEW_FRACTION:.0%}")
        tables = summary["tables"]
        print(f"warm start: {summary['weights_copied']} weights copied, "
              + ", ".join(f"{t['vocabulary']}: {t['shared_ids']} ids copied, {t['new_ids']} new, "
                          f"{t['dropped_ids']} dropped" for t in tables.values())
              + f"; skipped {summary['skipped'] or 'none'}")
        print(f"{'epoch':>5} {'cold':>8} {'warm':>8}")
        for epoch in range(epochs + 1):
            cold_value = f"{cold[epoch][100]:.4f}" if epoch in cold else "-"
            print(f"{epoch:>5} {cold_value:>8} {warm[epoch][100]:>8.4f}")
        target = cold[epochs][100]
        reached = next((epoch for epoch in sorted(warm) if warm[epoch][100] >= target), None)
        print(f"cold after {epochs} epochs: {target:.4f} ({cold_seconds:.0f} s of training); warm reaches it at "
              f"epoch {reached if reached is not None else f'> {epochs}'} ({warm_seconds:.0f} s for {epochs} epochs)",
              flush=True)


if __name__ == "__main__":
    main()
