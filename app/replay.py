"""`movielens-tfx replay`: continuous training, replayed span by span as a scheduler would run it.

The data is cut into spans (movielens.spans; a span layout is used
as it is). Then, for each span N from `from_span` on, in order, on one
pipeline root and one ML Metadata store, the pipeline runs with span N:
ExampleGen ingests span N, the window before it is resolved from the runs
that ingested those spans (pipeline.pipeline), drift is checked against span
N - 1; the Trainer warm-starts from the deployed
model; the Evaluator scores the candidate and the deployed model on span N,
the first data the candidate would serve, and blesses it only if it beats
both the deployed model and the baselines' floor; the Pusher pushes it, or
keeps the deployed version.

After each span one `timeline.SpanEntry` goes to timeline.json (and
timeline.md, timeline.png): a rerun resumes at the first span not recorded.
The model first deployed is kept as the "frozen" model and scored on every
later span: what not retraining would have cost.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Dict, List, Optional

import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from app import lock, timeline
from app.results import as_tfx, data_result, latest_outputs, variant_result
from components.atomic_pusher import existing_versions
from components.data_gate import drift_findings, drift_measurements
from components.evaluator import model_key
from core.comparison import GATE_K
from movielens import files, spans
from pipeline.config import PipelineConfig
from pipeline.local_runner import run_pipeline
from trainer.export import EVAL_SIGNATURE, hit_output
from trainer.tfma_metric import metric_name

SPANS_DIR = "spans"  # under the output directory, when replay cuts flat data into spans


def prepare_data(data_path: str, output_dir: str, span_days: int, max_bad_rows: int = 0) -> str:
    """The span layout to replay: `data_path` itself if it is one, else flat data cut into <output>/spans.

    Cutting is deterministic (spans.write), so a resumed replay finds the
    same spans; it is redone only when the source or span_days changed.
    """
    if spans.is_span_layout(data_path):
        return data_path
    root = os.path.join(output_dir, SPANS_DIR)
    manifest = spans.Manifest.read(root) if os.path.isdir(root) else None
    if manifest is None or manifest.source != files.absolute(data_path) or manifest.span_days != span_days:
        spans.write(data_path, root, span_days=span_days, max_bad_rows=max_bad_rows)
    return root


# The last model model_accuracy loaded, by the Evaluator's model_key (its directory and the names, times
# and sizes of its files): the frozen model is the same pushed version on every span of a replay, and loading it again
# was 0.6 s of each span. A directory whose files changed is loaded again.
_loaded: Dict[tuple, object] = {}


def _load(model_dir: str):
    key = model_key(model_dir, ())
    if key not in _loaded:
        _loaded.clear()
        _loaded[key] = tf.saved_model.load(model_dir)
    return _loaded[key]


def model_accuracy(model_dir: str, examples_pattern: str, k: int = GATE_K) -> float:
    """Top-k accuracy of an exported model on serialized rating examples, through its evaluate_hits
    signature: the same computation (and exclusion of rated movies) as the Evaluator's."""
    evaluate = _load(model_dir).signatures[EVAL_SIGNATURE]
    hits, total = 0.0, 0
    dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(examples_pattern), compression_type="GZIP").batch(1024)
    for batch in dataset:
        hit = evaluate(examples=batch)[hit_output(k)]
        hits += float(tf.reduce_sum(tf.cast(hit, tf.float64)))
        total += int(tf.size(hit))
    return hits / total if total else float("nan")


def _eval_pattern(config: PipelineConfig) -> str:
    ratings = as_tfx(latest_outputs(config, "RatingsExampleGen")["examples"][0], standard_artifacts.Examples)
    return f"{artifact_utils.get_split_uri([ratings], 'eval').rstrip('/')}/*"


def span_entry(config: PipelineConfig, span: int, first_span: int, timings: List[Dict], wall_seconds: float,
               frozen_model: Optional[str]) -> timeline.SpanEntry:
    """What the run for `span` (just finished) recorded, read back from ML Metadata."""
    model = variant_result(config)
    data = data_result(config)
    overall = model["eval_slices"][0]
    deployed = overall["blessed_model"].get(metric_name(GATE_K))
    anomalies = latest_outputs(config, "DistributionValidator").get("anomalies")
    drift_artifact = as_tfx(anomalies[0], standard_artifacts.ExampleAnomalies) if anomalies else None
    versions = existing_versions(config.model_serving_dir)
    return timeline.SpanEntry(
        span=span,
        train_spans=(spans.first_train_span([first_span], span, config.window_spans), span - 1),
        eval_ratings=data["summary"]["eval"],
        candidate_top_100=model["eval"][GATE_K],
        deployed_top_100=deployed,
        frozen_top_100=model_accuracy(frozen_model, _eval_pattern(config)) if frozen_model else None,
        baselines_top_100={name: accuracies[GATE_K] for name, accuracies in data["baselines"].items()},
        blessed=model["blessed"],
        pushed_version=os.path.basename(model["pushed_to"].rstrip("/")) if model["pushed_to"] else None,
        serving_version=str(max(versions)) if versions else None,
        drift=drift_findings(drift_artifact) if drift_artifact else [],
        drift_measured=drift_measurements(drift_artifact) if drift_artifact else {},
        warm_start=model.get("warm_start"),
        wall_seconds=round(wall_seconds, 1),
        component_seconds={t["component"]: t["seconds"] for t in timings},
        comparisons=model.get("comparisons") or {},
    )


def frozen_model_dir(config: PipelineConfig, entries: List[timeline.SpanEntry], span: int) -> Optional[str]:
    """The serving directory of the replay's first pushed model, if it was pushed before `span`."""
    pushed = [e for e in entries if e.pushed_version and e.span < span]
    if not pushed:
        return None
    return files.join(config.model_serving_dir, pushed[0].pushed_version)


def replay(config: PipelineConfig, from_span: Optional[int] = None, to_span: Optional[int] = None,
           progress: Optional[Callable[[str], None]] = None) -> List[timeline.SpanEntry]:
    """Runs the pipeline for each span from `from_span` (default: the first with a span before it) to
    `to_span` (default: the last), skipping spans timeline.json already records; returns every entry.

    config: split "span", data_path a span layout (prepare_data).
    """
    say = progress or (lambda line: None)
    present, start, end = spans.replay_range(config.data_path, from_span, to_span, config.max_bad_rows)
    first = present[0]
    with lock.exclusive(config.output_dir):
        entries = timeline.read(config.output_dir)
        done = timeline.done_spans(entries)
        for span in range(start, end + 1):
            if span in done:
                continue
            say(f"--- span {span} (train on {spans.first_train_span(present, span, config.window_spans)}..{span - 1}, "
                f"gate on {span})")
            started = time.time()
            timings = run_pipeline(config.replace(span=span), progress=say)
            entry = span_entry(config, span, first, timings, time.time() - started,
                               frozen_model_dir(config, entries, span))
            entries = timeline.record(config.output_dir, entry)
            say(f"span {span}: candidate {entry.candidate_top_100:.4f}, deployed "
                f"{'-' if entry.deployed_top_100 is None else f'{entry.deployed_top_100:.4f}'}, popularity "
                f"{entry.baselines_top_100.get(timeline.POPULARITY, float('nan')):.4f}; "
                f"{'blessed, pushed ' + str(entry.pushed_version) if entry.pushed_version else 'not blessed'}"
                f"{'; drift: ' + '; '.join(entry.drift) if entry.drift else ''} ({entry.wall_seconds:.0f} s)")
    return entries
