"""The main job: train and gate the baseline, then the timestamp model.

Both variants run the same pipeline on one pipeline root and one metadata
store, so the second run takes ExampleGen ... Transform from the cache and its
Evaluator compares against the latest blessed model (normally the baseline
just blessed). The report (report.json, report.md, top_k.png) puts the
popularity floor, the baseline and the timestamp model side by side.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, Optional, Sequence

from components.movielens import reader
from pipeline import lock, report
from pipeline.config import TOP_KS, VARIANTS, PipelineConfig
from pipeline.local_runner import run_pipeline
from pipeline.results import variant_result
from trainer.popularity import popularity_top_k



def dataset_summary(config: PipelineConfig) -> Dict:
    """Reads and validates the data (fails fast, before any component runs)."""
    data = reader.load_cached(config.data_path, max_bad_rows=config.max_bad_rows)
    train, evaluation = reader.split_indices(data.ratings.timestamps, config.split, config.train_fraction, config.split_seed)
    return {
        "summary": {
            "path": os.path.abspath(config.data_path),
            "layout": data.layout,
            "ratings": len(data.ratings),
            "movies": len(data.movies),
            "users": len(set(data.ratings.user_ids)),
            "train": int(len(train)),
            "eval": int(len(evaluation)),
            "quarantined_rows": len(data.bad_rows),
        },
        "popularity": {"eval": popularity_top_k(data, train, evaluation, TOP_KS)},
    }


def run_job(
    config: PipelineConfig,
    variants: Sequence[str] = tuple(VARIANTS),
    progress: Optional[Callable[[str], None]] = None,
) -> Dict:
    """Runs each variant through the pipeline; writes and returns the report.

    Holds the output directory's lock for the whole job (see pipeline.lock).
    """
    with lock.exclusive(config.output_dir):
        return _run_job(config, variants, progress)


def _run_job(config: PipelineConfig, variants: Sequence[str], progress) -> Dict:
    say = progress or (lambda line: None)
    started = time.time()
    data = dataset_summary(config)
    popularity = data["popularity"]["eval"]
    if config.value_floor is None:
        config = config.replace(value_floor=popularity["top_100"])
    say(f"data: {data['summary']['ratings']} ratings ({data['summary']['layout']}), "
        f"train {data['summary']['train']} / eval {data['summary']['eval']} ({config.split} split); "
        f"popularity top-100 {popularity['top_100']:.4f}")

    models: Dict[str, Dict] = {"popularity": data["popularity"]}
    timings: Dict[str, list] = {}
    for name in variants:
        variant = config.with_model(use_timestamps=VARIANTS[name])
        say(f"--- {name} model (use_timestamps={VARIANTS[name]})")
        timings[name] = run_pipeline(variant, progress=say)
        models[name] = variant_result(variant)

    result = {
        "dataset": data["summary"],
        "split": config.split,
        "config": config.config_name,
        "model_config": config.model.to_custom_config(),
        "gate": {
            "metric": "top_100_accuracy",
            "value_floor": config.value_floor,
            "min_improvement": config.min_improvement,
        },
        "models": models,
        "timings": timings,
        "wall_seconds": round(time.time() - started, 1),
    }
    report.write(result, config.output_dir)
    return result
