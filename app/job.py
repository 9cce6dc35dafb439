"""The main job: train and gate the baseline, then the timestamp model.

Both variants run the same pipeline on one pipeline root and one metadata
store, so the second run takes ExampleGen ... Transform and the Baselines from
the cache, and its Evaluator compares against the latest blessed model
(normally the baseline just blessed). Everything the report shows is read
back from what the pipeline recorded (app.results): the data is read once, by
ExampleGen. The report (report.json, report.md, top_k.png, and the browsable
report.html) puts the baselines, the baseline model and the timestamp model
side by side; report.json also records the job's effective config
(`pipeline_config`, PipelineConfig.to_dict).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, Optional, Sequence

from app import lock, report, report_html
from app.results import data_result, variant_result
from core import comparison
from core.comparison import GATE_K
from pipeline.config import VARIANTS, PipelineConfig
from pipeline.local_runner import run_pipeline


def tensorboard_logdir(models: Dict[str, Dict]) -> Optional[str]:
    """The directory whose TensorBoard shows every variant's training run side by side.

    The Trainers' model_run artifacts are <root>/RetrievalTrainer/model_run/<execution>;
    each holds its logs under <variant>/ (trainer.task): their common parent
    shows the runs as <execution>/<variant>/train and .../eval.
    """
    uris = [m["model_run_uri"] for m in models.values() if m.get("model_run_uri")]
    if not uris:
        return None
    return os.path.commonpath([os.path.dirname(uri.rstrip("/")) for uri in uris])


def run_job(
    config: PipelineConfig,
    variants: Sequence[str] = tuple(VARIANTS),
    progress: Optional[Callable[[str], None]] = None,
) -> Dict:
    """Runs each variant through the pipeline; writes and returns the report.

    Holds the output directory's lock for the whole job (see app.lock).
    """
    with lock.exclusive(config.output_dir):
        return _run_job(config, variants, progress)


def _run_job(config: PipelineConfig, variants: Sequence[str], progress) -> Dict:
    say = progress or (lambda line: None)
    started = time.time()
    models: Dict[str, Dict] = {}
    timings: Dict[str, list] = {}
    data = None
    for name in variants:
        variant = config.with_model(use_timestamps=VARIANTS[name])
        say(f"--- {name} model (use_timestamps={VARIANTS[name]})")
        timings[name] = run_pipeline(variant, progress=say)
        if data is None:
            data = data_result(variant)
            summary = data["summary"]
            say(f"data: {summary['ratings']} ratings ({summary['layout']}), train {summary['train']} / "
                f"eval {summary['eval']} ({config.split} split); "
                + ", ".join(f"{b} top-{GATE_K} {acc[GATE_K]:.4f}" for b, acc in data["baselines"].items()))
        models[name] = variant_result(variant)

    floors = [m["value_floor"] for m in models.values() if m.get("value_floor") is not None]
    result = {
        "dataset": data["summary"],
        "split": config.split,
        "config": config.config_name,
        "metadata": config.metadata_location,
        "model_config": config.model.to_custom_config(),
        # The job's effective config (PipelineConfig.to_dict; each variant's run records its own in ML
        # Metadata, pipeline.local_runner): what `recommend` reads back.
        report.CONFIG_KEY: config.to_dict(),
        "gate": {
            "k": GATE_K,
            "value_floor": floors[-1] if floors else config.value_floor,
            "value_floor_from": "--value-floor" if config.value_floor is not None else "best baseline",
            "min_improvement": config.min_improvement,
            "confidence": config.confidence,
            "training_noise": config.training_noise,
            "comparison": comparison.METHOD,
        },
        "baselines": data["baselines"],
        "baseline_notes": data["baseline_notes"],
        "exclude_history": config.model.exclude_history,
        "models": models,
        "tensorboard_logdir": tensorboard_logdir(models),
        "timings": timings,
        "wall_seconds": round(time.time() - started, 1),
    }
    report.write(result, config.output_dir)
    report_html.write(result, config)
    return result
