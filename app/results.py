"""What a pipeline run produced, read back from ML Metadata and the artifacts.

`variant_result(config)` returns, for the latest run of `config`'s pipeline:
the Trainer's FactorizedTopK accuracies (train and eval), the Evaluator's
TFMA accuracies, value floor and validation outcome, the blessing and where
the Pusher pushed the model. `data_result(config)` returns what ExampleGen
recorded about the data and the baselines' accuracies. Accuracies are keyed by k.
`pushing_run_config(config, model_dir)` returns the config the run that pushed a
served version ran with (pipeline.local_runner records it).
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Tuple, Union

import ml_metadata as mlmd
import tensorflow as tf
import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.compiler.constants import PIPELINE_RUN_CONTEXT_TYPE_NAME
from tfx.types import artifact_utils, standard_artifacts

from baselines.algorithms import accuracies_only
from components import baselines
from components.evaluator import CONFIDENCE_PROPERTY, FLOOR_BASELINE_PROPERTY, VALUE_FLOOR_PROPERTY
from core import comparison
from core.comparison import GATE_K
from movielens import files
from pipeline.config import PipelineConfig
from pipeline.local_runner import RUN_CONFIG_PROPERTY
from trainer import tfma_metric
from trainer.config import METRICS_FILE, TOP_KS, metrics_by_k
from trainer.tfma_metric import metric_name
from transform import features as F

_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def metadata_store(source: Union[str, PipelineConfig]) -> mlmd.MetadataStore:
    """The run's ML Metadata store: the pipeline's (SQLite opened read-only, or the
    shared MySQL / MariaDB store), or the SQLite file at a path."""
    if isinstance(source, PipelineConfig):
        return mlmd.MetadataStore(source.metadata_connection_config(read_only=True))
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = os.path.abspath(source)
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return mlmd.MetadataStore(connection)


def latest_outputs(config: PipelineConfig, node_id: str) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    """Output artifacts of the latest execution of `node_id`, by output key."""
    store = metadata_store(config)
    context = store.get_context_by_type_and_name("node", f"{config.pipeline_name}.{node_id}")
    if context is None:
        return {}
    executions = [
        e for e in store.get_executions_by_context(context.id)
        if e.last_known_state in (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
    ]
    if not executions:
        return {}
    latest = max(executions, key=lambda e: e.id)
    outputs: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    events = [e for e in store.get_events_by_execution_ids([latest.id]) if e.type in _OUTPUT_EVENTS]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    for event in events:
        outputs.setdefault(event.path.steps[0].key, []).append(artifacts[event.artifact_id])
    return outputs


def latest_inputs(config: PipelineConfig, node_id: str) -> Dict[str, List[metadata_store_pb2.Artifact]]:
    """Input artifacts of the latest execution of `node_id`, by input key."""
    store = metadata_store(config)
    context = store.get_context_by_type_and_name("node", f"{config.pipeline_name}.{node_id}")
    executions = [e for e in store.get_executions_by_context(context.id)
                  if e.last_known_state in (metadata_store_pb2.Execution.COMPLETE,
                                            metadata_store_pb2.Execution.CACHED)] if context else []
    if not executions:
        return {}
    latest = max(executions, key=lambda e: e.id)
    events = [e for e in store.get_events_by_execution_ids([latest.id]) if e.type == metadata_store_pb2.Event.INPUT]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    inputs: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for event in sorted(events, key=lambda e: e.artifact_id):
        inputs.setdefault(event.path.steps[0].key, []).append(artifacts[event.artifact_id])
    return inputs


def rating_splits(config: PipelineConfig) -> Dict[str, List[Tuple[metadata_store_pb2.Artifact, str]]]:
    """{"train": [(examples, split), ...], "eval": [...]}: where the latest run's ratings are. A local
    span run (span_window "resolver": its ExampleGen wrote no train split) trained on its window's
    spans (the Trainer's inputs, each span's eval split) and was evaluated on its own span's."""
    ratings = latest_outputs(config, "RatingsExampleGen")["examples"][0]
    if "train" in json.loads(ratings.properties["split_names"].string_value):
        return {"train": [(ratings, "train")], "eval": [(ratings, "eval")]}
    return {"train": [(a, "eval") for a in latest_inputs(config, "RetrievalTrainer").get("examples", [])],
            "eval": [(ratings, "eval")]}


def _custom(artifact: metadata_store_pb2.Artifact, name: str):
    value = artifact.custom_properties.get(name)
    if value is None:
        return None
    return getattr(value, value.WhichOneof("value"))


def accuracies(metrics: Dict[str, float]) -> Dict[int, float]:
    """{k: top-k accuracy} from one slice's TFMA metrics by name (slice_metrics)."""
    names = {metric_name(k): k for k in TOP_KS}
    return dict(sorted((names[name], value) for name, value in metrics.items() if name in names))


# The report's names of what PairedGain compares with.
COMPARED_WITH = {tfma_metric.AGAINST_BLESSED: "blessed_model", tfma_metric.AGAINST_BASELINE: "floor_baseline"}


def slice_metrics(evaluation_uri: str, confidence: float = comparison.DEFAULT_CONFIDENCE) -> List[Dict]:
    """The Evaluator's metrics for every slice it computed, whatever the slicing specs.

    One entry per slice ("Overall", "user_gender:F", ...): {"slice": name,
    "candidate": {metric: value}, "blessed_model": {...} (the latest blessed
    model, when there was one), "diff": {...} (candidate minus blessed model),
    "comparisons": {"blessed_model": ..., "floor_baseline": ...} (the gate's
    paired differences with their intervals, core.comparison.Comparison.to_json)}.
    """
    from tensorflow_model_analysis.slicer import slicer_lib

    gains = {tfma_metric.gain_name(GATE_K, against, part): (against, part)
             for against in COMPARED_WITH for part in tfma_metric.GAIN_PARTS}
    out = []
    for metrics in tfma.load_metrics(evaluation_uri):
        entry: Dict = {"slice": slicer_lib.stringify_slice_key(slicer_lib.deserialize_slice_key(metrics.slice_key)),
                       "candidate": {}, "blessed_model": {}, "diff": {}, "comparisons": {}}
        parts: Dict[str, Dict[str, float]] = {}
        for item in metrics.metric_keys_and_values:
            if item.value.WhichOneof("type") != "double_value":
                continue
            key = item.key
            if not key.is_diff and key.name in gains:
                against, part = gains[key.name]
                parts.setdefault(against, {})[part] = item.value.double_value.value
                continue
            group = "diff" if key.is_diff else "blessed_model" if key.model_name == "baseline" else "candidate"
            entry[group][key.name] = item.value.double_value.value
        count = entry["candidate"].get("example_count")
        for against, values in parts.items():
            entry["comparisons"][COMPARED_WITH[against]] = comparison.Comparison(
                diff=values[""], lower=values["lower"], upper=values["upper"], confidence=confidence,
                users=int(values["users"]), ratings=int(count) if count is not None else 0,
                training_noise=values.get("noise", 0.0)).to_json()
        out.append(entry)
    return sorted(out, key=lambda e: (e["slice"] != "Overall", e["slice"]))


def validation_failures(evaluation_uri: str) -> List[str]:
    """Human-readable reasons why the Evaluator did not bless the model."""
    result = tfma.load_validation_result(evaluation_uri)
    reasons = []
    lower_bounds = {tfma_metric.gain_name(GATE_K, tfma_metric.AGAINST_BLESSED): "the latest blessed model",
                    tfma_metric.gain_name(GATE_K, tfma_metric.AGAINST_BASELINE): "the floor baseline"}
    for slice_failure in result.metric_validations_per_slice:
        for failure in slice_failure.failures:
            if failure.metric_key.name in lower_bounds and not failure.message:
                bound = failure.metric_threshold.value_threshold.lower_bound.value
                reasons.append(f"the gain over {lower_bounds[failure.metric_key.name]} is not clearly above "
                               f"{bound:.4f}: its interval's lower bound is {failure.metric_value.double_value.value:+.4f}")
                continue
            what = "improvement over the blessed model" if failure.metric_key.is_diff else "value"
            reasons.append(
                f"{failure.metric_key.name} {what} {failure.metric_value.double_value.value:.4f} "
                f"fails threshold: {failure.message or _threshold_text(failure.metric_threshold)}"
            )
    if result.missing_thresholds:
        reasons.append("thresholds could not be checked (missing metrics)")
    return reasons


def _threshold_text(threshold) -> str:
    return " ".join(str(threshold).split())


def trainer_metrics(model_run_uri: str) -> Dict:
    """The Trainer's accuracies (train, trainer_eval; by k) and train_seconds, from its ModelRun artifact;
    with warm start configured, what it copied from the base model (`warm_start`: trainer.warm_start).

    tf.io.gfile: the artifact may be on gs://.
    """
    with tf.io.gfile.GFile(f"{model_run_uri.rstrip('/')}/{METRICS_FILE}") as f:
        trained = json.load(f)
    return {
        "train": metrics_by_k(trained["train"]),
        "trainer_eval": metrics_by_k(trained["eval"]),
        "train_seconds": round(trained["train_seconds"], 1),
        **({"warm_start": trained["warm_start"]} if "warm_start" in trained else {}),
    }


def variant_result(config: PipelineConfig) -> Dict:
    """Results of the latest run of the pipeline for `config` (see module docstring)."""
    result: Dict = {"use_timestamps": config.model.use_timestamps}
    trainer = latest_outputs(config, "RetrievalTrainer")
    if trainer:
        result["model_uri"] = trainer["model"][0].uri
        result["model_run_uri"] = trainer["model_run"][0].uri
        result.update(trainer_metrics(trainer["model_run"][0].uri))
    evaluator = latest_outputs(config, "Evaluator")
    if evaluator:
        evaluation_uri = evaluator["evaluation"][0].uri
        result["evaluation_uri"] = evaluation_uri
        confidence = _custom(evaluator["evaluation"][0], CONFIDENCE_PROPERTY) or comparison.DEFAULT_CONFIDENCE
        result["eval_slices"] = slice_metrics(evaluation_uri, confidence)
        result["eval"] = accuracies(result["eval_slices"][0]["candidate"])  # "Overall" comes first
        result["comparisons"] = result["eval_slices"][0]["comparisons"]
        result["value_floor"] = _custom(evaluator["evaluation"][0], VALUE_FLOOR_PROPERTY)
        result["floor_baseline"] = _custom(evaluator["evaluation"][0], FLOOR_BASELINE_PROPERTY)
        result["confidence"] = confidence
        blessing = evaluator["blessing"][0]
        result["blessed"] = bool(_custom(blessing, "blessed"))
        result["compared_with"] = _custom(blessing, "baseline_model") or None
        result["not_blessed_because"] = [] if result["blessed"] else validation_failures(evaluation_uri)
    pusher = latest_outputs(config, "Pusher")
    pushed: Optional[str] = None
    if pusher:
        pushed_model = pusher["pushed_model"][0]
        if _custom(pushed_model, "pushed"):
            pushed = _custom(pushed_model, "pushed_destination")
    result["pushed_to"] = pushed
    return result


def data_result(config: PipelineConfig) -> Dict:
    """The data as RatingsExampleGen recorded it, and the baselines' accuracies on its eval split."""
    ratings = latest_outputs(config, "RatingsExampleGen")["examples"][0]
    counts = {name: sum(_custom(artifact, f"num_examples_{split}") for artifact, split in parts)
              for name, parts in rating_splits(config).items()}
    summary = {
        "path": files.absolute(config.data_path),  # os.path.abspath would turn gs://b into <cwd>/gs:/b
        "layout": _custom(ratings, "movielens_layout"),
        "ratings": counts["train"] + counts["eval"],
        "movies": _custom(ratings, "num_movies"),
        "users": _custom(ratings, "num_users"),
        "train": counts["train"],
        "eval": counts["eval"],
        "quarantined_rows": _custom(ratings, "num_quarantined_rows"),
    }
    scored = baselines.read(latest_outputs(config, "Baselines")["baselines"][0].uri)
    return {"summary": summary, "baselines": accuracies_only(scored), "baseline_notes": scored.get("notes", {})}


def user_history(config: PipelineConfig, user_id: str, before: int) -> List[tuple]:
    """(movie_id, timestamp) of the user's ratings before `before` in the latest ingested data, most recent first,
    as many as the pipeline stored per rating (PipelineConfig.ingested_history_length: what the model reads)."""
    spec = {F.USER_ID: tf.io.FixedLenFeature([], tf.string), F.MOVIE_ID: tf.io.FixedLenFeature([], tf.string),
            F.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64)}
    found = []
    for artifact, split in [part for parts in rating_splits(config).values() for part in parts]:
        pattern = f"{artifact_utils.get_split_uri([as_tfx(artifact)], split).rstrip('/')}/*"
        dataset = tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type="GZIP").batch(50_000)
        for batch in dataset:
            parsed = tf.io.parse_example(batch, spec)
            mine = parsed[F.USER_ID].numpy() == user_id.encode()
            found += zip(parsed[F.MOVIE_ID].numpy()[mine].tolist(), parsed[F.TIMESTAMP].numpy()[mine].tolist(), strict=True)
    found = sorted(((m.decode(), int(t)) for m, t in found if t < before), key=lambda item: -item[1])
    return found[:config.ingested_history_length]


# The Pusher's custom property on its PushedModel: the serving version directory it wrote (TFX's Pusher).
_PUSHED_DESTINATION = "pushed_destination"


def pushing_run_config(config: PipelineConfig, model_dir: str) -> Optional[PipelineConfig]:
    """The config recorded by the run that pushed `model_dir`, a serving version directory (its PushedModel's
    pushed_destination: the same version, the same path preferred), or None when that run recorded none."""
    store = metadata_store(config)
    run_types = [t.id for t in store.get_context_types() if t.name == PIPELINE_RUN_CONTEXT_TYPE_NAME]
    version = model_dir.rstrip("/").rsplit("/", 1)[-1]
    pushed = [(destination.rstrip("/") == model_dir.rstrip("/"), a.id) for a in
              store.get_artifacts_by_type(standard_artifacts.PushedModel.TYPE_NAME)
              for destination in [_custom(a, _PUSHED_DESTINATION)]
              if destination and destination.rstrip("/").rsplit("/", 1)[-1] == version]
    if not pushed or not run_types:
        return None
    artifact_id = max(pushed)[1]
    for event in store.get_events_by_artifact_ids([artifact_id]):
        if event.type not in _OUTPUT_EVENTS:
            continue
        for context in store.get_contexts_by_execution(event.execution_id):
            recorded = context.custom_properties.get(RUN_CONFIG_PROPERTY)
            if context.type_id == run_types[0] and recorded is not None:
                return PipelineConfig.from_dict(json.loads(recorded.string_value))
    return None


def as_tfx(artifact: metadata_store_pb2.Artifact, artifact_class=standard_artifacts.Examples):
    """A TFX artifact of `artifact_class` around an ML Metadata artifact (for its split URIs and properties)."""
    out = artifact_class()
    out.set_mlmd_artifact(artifact)
    return out
