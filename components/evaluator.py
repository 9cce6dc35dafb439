"""BaselineGatedEvaluator: TFX's Evaluator whose floor can come from the Baselines component.

The gate's floor must be in the eval config, which is fixed when the
pipeline is built, but the baselines are scored only once ExampleGen has run.
This executor reads the Baselines artifact before TFX's Evaluator runs and
completes the eval config (pipeline.evaluation):

* the comparison with the floor baseline (trainer.tfma_metric.PairedGain,
  against "baseline") is pointed at the best baseline's per-rating hits;
* with `floor_from_baselines`, the lower bound of every value threshold of the
  accuracy is raised to the best baseline's top-GATE_K accuracy;
* with no blessed model to compare with (the first run), the comparison with
  it is dropped (TFMA fails a threshold whose metric it did not compute).

What it applied is recorded on the evaluation artifact (custom properties
`value_floor`, `floor_baseline`, `confidence`; and `models_reused`, below). TFMA's extractors
come from components.evaluator_extractors (TFX's `custom_extractors` hook:
TFMA's defaults, carrying only the columns the eval config reads; the same
metrics). Everything else is TFX's Evaluator, unchanged.

One cost is cut when several runs share a process (a local replay: one
pipeline run per span): the SavedModels a run loaded are kept for the next
run, which loads only the models it has not seen (`kept_models`). The model a
span's Evaluator compares with, the latest blessed one, is the previous
span's candidate or the previous span's deployed model: both were loaded by
the previous span's Evaluator (0.7 s a model on ml-100k). A model is the same
when its directory and the names, times and sizes of its files are; the
models the last run did not use are let go.
"""

from __future__ import annotations

import contextlib
from typing import Dict, Iterator, List, Optional, Set, Tuple

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.utils import model_util
from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import artifact_utils, channel, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import json_utils, proto_utils

from baselines.algorithms import best_at, best_name_at
from components import baselines as baselines_component
from components import evaluator_extractors
from core.comparison import GATE_K
from movielens import files
from trainer import tfma_metric

FLOOR_FROM_BASELINES_KEY = "floor_from_baselines"
VALUE_FLOOR_PROPERTY = "value_floor"
FLOOR_BASELINE_PROPERTY = "floor_baseline"
CONFIDENCE_PROPERTY = "confidence"
MODELS_REUSED_PROPERTY = "models_reused"


class BaselineGatedEvaluatorSpec(standard_component_specs.EvaluatorSpec):
    PARAMETERS = {
        **standard_component_specs.EvaluatorSpec.PARAMETERS,
        FLOOR_FROM_BASELINES_KEY: ExecutionParameter(type=int),
    }
    INPUTS = {
        **standard_component_specs.EvaluatorSpec.INPUTS,
        baselines_component.BASELINES_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
    }


def raise_value_floor(eval_config: tfma.EvalConfig, floor: float) -> float:
    """Sets every value threshold's lower bound of the accuracy to at least `floor`; returns the gate's floor.
    (The comparisons' thresholds, on differences, are not floors.)"""
    applied = None
    for metrics_spec in eval_config.metrics_specs:
        for metric in metrics_spec.metrics:
            if tfma_metric.is_paired_gain(metric):
                continue
            thresholds = [metric.threshold] + [per_slice.threshold for per_slice in metric.per_slice_thresholds]
            for threshold in thresholds:
                if threshold.HasField("value_threshold"):
                    bound = threshold.value_threshold.lower_bound
                    bound.value = max(bound.value, floor)
                    applied = bound.value
    return floor if applied is None else applied


def set_comparisons(eval_config: tfma.EvalConfig, has_blessed_model: bool, floor_baseline: str,
                    hits_path: str) -> float:
    """Completes the PairedGain metrics of `eval_config` (module docstring); returns their confidence level."""
    confidence = None
    for metrics_spec in eval_config.metrics_specs:
        kept = [metric for metric in metrics_spec.metrics
                if has_blessed_model or not tfma_metric.is_paired_gain(metric, tfma_metric.AGAINST_BLESSED)]
        del metrics_spec.metrics[:]
        metrics_spec.metrics.extend(kept)
        for metric in metrics_spec.metrics:
            if tfma_metric.is_paired_gain(metric, tfma_metric.AGAINST_BASELINE):
                tfma_metric.set_params(metric, baseline=floor_baseline, hits_path=hits_path)
            if tfma_metric.is_paired_gain(metric):
                confidence = tfma_metric.params(metric).get("confidence", confidence)
    return confidence


# The models the last Evaluator run of this process loaded (or reused), by model_key; and the keys the
# running one asked for. Module-level: the construct functions below are pickled into the Beam pipeline
# and find the models here, in the process that runs them.
_KEPT: Dict[Tuple, object] = {}
_USED: Set[Tuple] = set()
_REUSED: List[str] = []  # the running one's models that an earlier run had loaded (their directories)
# TFMA model types whose construct function is tf.compat.v1.saved_model.load_v2 (its others: Keras,
# TFLite, TFJS, which are not kept).
_UNKEPT_TYPES = ("tf_keras", "tf_lite", "tf_js")


def model_key(path: str, tags) -> Tuple:
    """What identifies a loaded SavedModel: its directory, tags, and its files' and variables' names, times
    and sizes."""
    return (path, tuple(tags or ()), files.identity(path), files.identity(files.join(path, "variables")))


class _KeptModel:
    """TFMA's construct function for one model, through _KEPT (picklable: only the path, the tags and
    TFMA's own function travel)."""

    def __init__(self, path: str, tags, construct):
        self._path, self._tags, self._construct = path, list(tags or ()), construct

    def __call__(self):
        key = model_key(self._path, self._tags)
        if key not in _KEPT:
            _KEPT[key] = self._construct()
        elif key not in _USED:
            _REUSED.append(self._path)
        _USED.add(key)
        return _KEPT[key]


@contextlib.contextmanager
def kept_models() -> Iterator[List[str]]:
    """While active, TFMA's SavedModel loads go through _KEPT; at the end, the models this run did not use
    are dropped (module docstring). Yields the directories of the models an earlier run had loaded, as
    they are reused."""
    original = model_util.model_construct_fn

    def construct_fn(*args, **kwargs):
        construct = original(*args, **kwargs)
        path = kwargs.get("eval_saved_model_path")
        if args or not path or kwargs.get("model_type") in _UNKEPT_TYPES:
            return construct
        return _KeptModel(path, kwargs.get("tags"), construct)

    _USED.clear()
    _REUSED.clear()
    model_util.model_construct_fn = construct_fn
    try:
        yield _REUSED
    finally:
        model_util.model_construct_fn = original
        for key in [key for key in _KEPT if key not in _USED]:
            del _KEPT[key]


class Executor(evaluator_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        eval_config = tfma.EvalConfig()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.EVAL_CONFIG_KEY], eval_config)
        baselines_uri = artifact_utils.get_single_uri(input_dict[baselines_component.BASELINES_KEY])
        scored = baselines_component.read(baselines_uri)
        floor_baseline = best_name_at(scored, GATE_K)
        if exec_properties.get(FLOOR_FROM_BASELINES_KEY):
            floor = raise_value_floor(eval_config, best_at(scored, GATE_K))
        else:
            floor = raise_value_floor(eval_config, 0.0)
        confidence = set_comparisons(
            eval_config, bool(input_dict.get(standard_component_specs.BASELINE_MODEL_KEY)), floor_baseline,
            baselines_component.per_rating_hits_path(baselines_uri))
        exec_properties = {
            **exec_properties, standard_component_specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(eval_config)
        }
        evaluation = artifact_utils.get_single_instance(output_dict[standard_component_specs.EVALUATION_KEY])
        evaluation.set_float_custom_property(VALUE_FLOOR_PROPERTY, floor)
        evaluation.set_string_custom_property(FLOOR_BASELINE_PROPERTY, floor_baseline)
        if confidence is not None:
            evaluation.set_float_custom_property(CONFIDENCE_PROPERTY, confidence)
        module_keys = (standard_component_specs.MODULE_PATH_KEY, standard_component_specs.MODULE_FILE_KEY)
        if not any(exec_properties.get(key) for key in module_keys):
            # TFX's Evaluator takes its extractors from this module's custom_extractors.
            exec_properties = {**exec_properties, standard_component_specs.MODULE_PATH_KEY: evaluator_extractors.__name__}
        with kept_models() as reused:
            super().Do(input_dict, output_dict, exec_properties)
            # How many of the models it scored were loaded by an earlier run (kept_models), on the artifact.
            evaluation.set_int_custom_property(MODELS_REUSED_PROPERTY, len(reused))


class BaselineGatedEvaluator(base_beam_component.BaseBeamComponent):
    """TFX's Evaluator plus the Baselines input (see module docstring)."""

    SPEC_CLASS = BaselineGatedEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        model: types.BaseChannel,
        baselines: types.BaseChannel,
        eval_config: tfma.EvalConfig,
        floor_from_baselines: bool,
        baseline_model: Optional[types.BaseChannel] = None,
        example_splits=None,
    ):
        super().__init__(spec=BaselineGatedEvaluatorSpec(
            examples=examples,
            model=model,
            baseline_model=baseline_model,
            baselines=baselines,
            eval_config=eval_config,
            example_splits=json_utils.dumps(example_splits),
            floor_from_baselines=int(floor_from_baselines),
            evaluation=channel.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=channel.Channel(type=standard_artifacts.ModelBlessing),
        ))
