"""The Evaluator's TFMA extractors: TFMA's defaults, with only the columns the evaluation reads carried.

TFMA's default extractors turn every column of each batch of eval examples
into per-example features and split all of them into one extract per example
before slicing, though the eval config reads only the slicing features (the
model's `evaluate_hits` signature takes the serialized examples). Splitting the
list features (the rating history) per example was the largest part of the
Evaluator's time at 1M ratings. These extractors are TFMA's default ones plus
three steps that change none of the values the metrics see:

* before the features are extracted, the Arrow batch keeps only the raw
  records and the features the eval config names (slicing, labels, weights);
* the serialized examples are also given to the predictions extractor under
  the signature's input name, so TFMA calls the signature by keyword: called
  positionally, TensorFlow first fails to bind the call and formats the batch
  into its error message before falling back (as much time as the model);
* after the predictions, the serialized examples are dropped, before the
  per-example split.

The BaselineGatedEvaluator points TFX's Evaluator here (its `custom_extractors`
hook, module_path).
"""

from __future__ import annotations

import copy
from typing import List, Optional, Set

import apache_beam as beam
import pyarrow as pa
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.extractors import extractor, predictions_extractor, unbatch_extractor

from trainer import tfma_metric
from trainer.export import EVAL_INPUT, EVAL_SIGNATURE

_FEATURES_STAGE = "ExtractFeatures"


def read_features(eval_config: tfma.EvalConfig) -> Optional[Set[str]]:
    """The features the evaluation reads, or None when it may read any (SQL slices, feature-based metrics)."""
    names = set()
    for spec in eval_config.slicing_specs:
        if spec.slice_keys_sql:
            return None
        names.update(spec.feature_keys)
        names.update(spec.feature_values)
    for spec in eval_config.model_specs:
        if spec.signature_name != EVAL_SIGNATURE or spec.preprocessing_function_names:
            return None
        names.update(key for key in (spec.label_key, spec.example_weight_key, spec.prediction_key) if key)
        names.update(spec.label_keys.values())
        names.update(spec.example_weight_keys.values())
        names.update(spec.prediction_keys.values())
    for metrics_spec in eval_config.metrics_specs:
        if any(metric.module != tfma_metric.__name__ and metric.class_name != tfma.metrics.ExampleCount.__name__
               for metric in metrics_spec.metrics):
            return None
        if any(tfma_metric.is_paired_gain(metric) for metric in metrics_spec.metrics):
            names.update(tfma_metric.PAIRED_FEATURES)  # the user (resampled) and the rating's key
    return names


def _keep_columns(names: Set[str]):
    keep = names | {constants.ARROW_INPUT_COLUMN}

    def keep_columns(extracts):
        batch = extracts[constants.ARROW_RECORD_BATCH_KEY]
        columns = [i for i, name in enumerate(batch.schema.names) if name in keep]
        result = copy.copy(extracts)
        result[constants.ARROW_RECORD_BATCH_KEY] = pa.RecordBatch.from_arrays(
            [batch.column(i) for i in columns], [batch.schema.names[i] for i in columns])
        return result
    return keep_columns


def _add_signature_input(extracts):
    result = copy.copy(extracts)
    result[constants.FEATURES_KEY] = {**extracts[constants.FEATURES_KEY], EVAL_INPUT: extracts[constants.INPUT_KEY]}
    return result


def _drop_inputs(extracts):
    result = copy.copy(extracts)
    result[constants.FEATURES_KEY] = {
        name: value for name, value in extracts[constants.FEATURES_KEY].items() if name != EVAL_INPUT}
    del result[constants.INPUT_KEY]
    return result


def _step(name: str, fn) -> extractor.Extractor:
    return extractor.Extractor(stage_name=name, ptransform=beam.Map(fn))


def custom_extractors(eval_shared_model, eval_config: tfma.EvalConfig, tensor_adapter_config=None
                      ) -> List[extractor.Extractor]:
    """TFX Evaluator's hook: TFMA's default extractors with the steps of the module docstring."""
    extractors = tfma.default_extractors(
        eval_shared_model=eval_shared_model, eval_config=eval_config, tensor_adapter_config=tensor_adapter_config)
    return with_steps(extractors, read_features(eval_config))


def with_steps(extractors: List[extractor.Extractor], names: Optional[Set[str]]) -> List[extractor.Extractor]:
    """`extractors` with the three steps added; unchanged when the evaluation may read any feature."""
    stages = [e.stage_name for e in extractors]
    if names is None or EVAL_INPUT in names or not {
            _FEATURES_STAGE, predictions_extractor.PREDICTIONS_EXTRACTOR_STAGE_NAME,
            unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME} <= set(stages):
        return extractors
    out = []
    for e in extractors:
        if e.stage_name == _FEATURES_STAGE:
            out.append(_step("KeepReadColumns", _keep_columns(names)))
            out.append(e)
            out.append(_step("AddSignatureInput", _add_signature_input))
        elif e.stage_name == unbatch_extractor.UNBATCH_EXTRACTOR_STAGE_NAME:
            out.append(_step("DropInputs", _drop_inputs))
            out.append(e)
        else:
            out.append(e)
    return out
