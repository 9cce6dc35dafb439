"""The Evaluator's TFMA config: top-k retrieval accuracy and the blessing gate.

The model's `evaluate_hits` signature (trainer.export) returns, per eval
example, `hit_at_{k}` in {0, 1}. `TopKAccuracy` (registered with TFMA, found
by the Evaluator through this module's name) averages one of them into
`top_{k}_accuracy`. It reads only the prediction: no label, no per-example
calibration bookkeeping, which made TFMA's MeanPrediction the larger part of
the Evaluator's time.

Gate on top-100 accuracy: a value floor (`config.value_floor`) and, against
the latest blessed model, an improvement of more than `config.min_improvement`
(HIGHER_IS_BETTER). With no blessed model yet, only the floor applies.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types

from pipeline.config import GATE_K, TOP_KS, PipelineConfig
from trainer.export import EVAL_SIGNATURE, hit_output

# Strictly better: an improvement of at least this much over min_improvement.
_EPSILON = 1e-9


def metric_name(k: int) -> str:
    return f"top_{k}_accuracy"


class TopKAccuracy(metric_types.Metric):
    """Share of eval ratings whose movie the model ranks in its top k of the catalog."""

    def __init__(self, k: int = GATE_K, name: Optional[str] = None):
        super().__init__(_top_k_accuracy, k=k, name=name or metric_name(k))


metric_types.register_metric(TopKAccuracy)


def _top_k_accuracy(
    k: int, name: str, model_names: Optional[List[str]] = None, example_weighted: bool = False
) -> metric_types.MetricComputations:
    computations = []
    for model_name in model_names or [""]:
        key = metric_types.MetricKey(name=name, model_name=model_name, example_weighted=example_weighted)
        computations.append(metric_types.MetricComputation(
            keys=[key], preprocessors=None, combiner=_MeanHit(key, model_name, hit_output(k))
        ))
    return computations


class _MeanHit(beam.CombineFn):
    """Mean of one {0, 1} model output; accumulator: [sum of hits, examples]."""

    def __init__(self, key: metric_types.MetricKey, model_name: str, output_name: str):
        self._key = key
        self._model_name = model_name
        self._output_name = output_name

    def create_accumulator(self) -> np.ndarray:
        return np.zeros(2)

    def add_input(self, accumulator: np.ndarray, element: metric_types.StandardMetricInputs) -> np.ndarray:
        predictions = element.prediction
        if self._model_name in predictions:  # several models (candidate, baseline)
            predictions = predictions[self._model_name]
        hits = np.asarray(predictions[self._output_name])
        accumulator[0] += hits.sum()
        accumulator[1] += hits.size
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[np.ndarray]) -> np.ndarray:
        return np.sum(list(accumulators), axis=0)

    def extract_output(self, accumulator: np.ndarray) -> Dict[metric_types.MetricKey, float]:
        hits, examples = accumulator
        return {self._key: float(hits / examples) if examples else float("nan")}


def _threshold(config: PipelineConfig) -> tfma.MetricThreshold:
    return tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.value_floor or 0.0}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": config.min_improvement + _EPSILON},
        ),
    )


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    metrics = []
    for k in TOP_KS:
        metric = tfma.MetricConfig(class_name=TopKAccuracy.__name__, module=__name__, config=f'"k": {k}')
        if k == GATE_K:
            metric.threshold.CopyFrom(_threshold(config))
        metrics.append(metric)
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EVAL_SIGNATURE, model_type="tf_generic")],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )
