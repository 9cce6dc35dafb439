"""The Evaluator's TFMA config: top-k retrieval accuracy (trainer.tfma_metric) and the blessing gate.

The gate, on top-GATE_K accuracy over the whole eval split, blesses a model when

* against the latest blessed model: the lower bound of the interval of the
  paired difference (trainer.tfma_metric.PairedGain: the same eval ratings,
  users resampled, `config.confidence`, widened by `config.training_noise`:
  core.comparison) is above `config.min_improvement`;
  with no blessed model yet, this comparison is not made;
* against the floor: with `config.value_floor` unset (the default), the floor
  is the best baseline of the Baselines component, and the lower bound of the
  paired difference with it is above 0 (and its point value is above the
  baseline's); with --value-floor X, the point value is at least X and the
  comparison with the best baseline is reported, not gated on.

The baselines are known only once the Baselines component has run: the eval
config carries the comparisons' shapes and the BaselineGatedEvaluator fills in
the best baseline and its per-rating hits at run time (components.evaluator),
so a compiled Vertex / Kubeflow spec gates the same way as a local run.
Every comparison is computed for every slice and reported; only the overall
slice is gated.
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma
from tensorflow_metadata.proto.v0 import path_pb2, schema_pb2
from tfx.proto import distribution_validator_pb2

from core.comparison import GATE_K
from pipeline.config import PipelineConfig
from trainer import tfma_metric
from trainer.config import TOP_KS
from trainer.export import EVAL_SIGNATURE

SLICE_FEATURES = ("user_in_train", "history_bucket")
# Strictly above a bound: at least this much more.
_EPSILON = 1e-9


def _lower_bound(value: float) -> tfma.MetricThreshold:
    return tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(lower_bound={"value": value}))


def _gate_overall(metric: tfma.MetricConfig, value: float) -> tfma.MetricConfig:
    """`metric` gated on the whole eval split only (not each slice): its value at least `value`."""
    metric.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()]).threshold.CopyFrom(_lower_bound(value))
    return metric


def paired_gain_config(against: str, config: PipelineConfig) -> tfma.MetricConfig:
    metric = tfma.MetricConfig(class_name=tfma_metric.PairedGain.__name__, module=tfma_metric.__name__)
    tfma_metric.set_params(metric, k=GATE_K, against=against, confidence=config.confidence,
                           training_noise=config.training_noise)
    return metric


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    metrics = []
    for k in TOP_KS:
        metric = tfma.MetricConfig(
            class_name=tfma_metric.TopKAccuracy.__name__, module=tfma_metric.__name__, config=f'"k": {k}'
        )
        if k == GATE_K:  # the point floor; raised to the best baseline's at run time unless --value-floor
            _gate_overall(metric, config.value_floor or 0.0)
        metrics.append(metric)
    # Strictly above: the lower bound must exceed min_improvement (against the blessed model) and 0
    # (against the floor baseline), not equal it.
    metrics.append(_gate_overall(paired_gain_config(tfma_metric.AGAINST_BLESSED, config),
                                 config.min_improvement + _EPSILON))
    against_baseline = paired_gain_config(tfma_metric.AGAINST_BASELINE, config)
    metrics.append(_gate_overall(against_baseline, _EPSILON) if config.value_floor is None else against_baseline)
    metrics.append(tfma.MetricConfig(class_name="ExampleCount"))  # each slice's size, for the report
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EVAL_SIGNATURE, model_type="tf_generic")],
        # Overall, then by whether the user has train ratings and by history
        # length (features ExampleGen writes; movielens.examples).
        slicing_specs=[tfma.SlicingSpec(), *(tfma.SlicingSpec(feature_keys=[key]) for key in SLICE_FEATURES)],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )


def drift_config(config: PipelineConfig) -> distribution_validator_pb2.DistributionValidatorConfig:
    """Jensen-Shannon divergence between span N and N - 1 beyond config.drift_thresholds is a finding."""
    out = distribution_validator_pb2.DistributionValidatorConfig()
    for name, threshold in config.drift_thresholds:
        feature = out.default_slice_config.feature.add()
        feature.path.CopyFrom(path_pb2.Path(step=[name]))
        feature.distribution_comparator.CopyFrom(schema_pb2.FeatureComparator(
            jensen_shannon_divergence=schema_pb2.JensenShannonDivergence(threshold=threshold)))
    return out
