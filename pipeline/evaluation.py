"""The Evaluator's TFMA config: top-k retrieval accuracy (trainer.tfma_metric) and the blessing gate.

Gate on top-GATE_K accuracy: a value floor and, against the latest blessed
model, an improvement of more than `config.min_improvement`
(HIGHER_IS_BETTER). With no blessed model yet, only the floor applies.

The floor: `config.value_floor` when set (--value-floor); otherwise the best
baseline's top-GATE_K accuracy on the same eval split, which is known only
once the Baselines component has run. The eval config then carries a floor of
0 and the BaselineGatedEvaluator raises it to the baselines' value at run time
(components.evaluator), so a compiled Vertex / Kubeflow spec gates the same
way as a local run.
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma
from tensorflow_metadata.proto.v0 import path_pb2, schema_pb2
from tfx.proto import distribution_validator_pb2

from pipeline.config import PipelineConfig
from trainer import tfma_metric
from trainer.config import GATE_K, TOP_KS
from trainer.export import EVAL_SIGNATURE

SLICE_FEATURES = ("user_in_train", "history_bucket")
# Strictly better: an improvement of at least this much over min_improvement.
_EPSILON = 1e-9


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
        metric = tfma.MetricConfig(
            class_name=tfma_metric.TopKAccuracy.__name__, module=tfma_metric.__name__, config=f'"k": {k}'
        )
        if k == GATE_K:  # the gate judges the whole eval split, not each slice
            metric.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()]).threshold.CopyFrom(_threshold(config))
        metrics.append(metric)
    metrics.append(tfma.MetricConfig(class_name="ExampleCount"))  # each slice's size, for the report
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EVAL_SIGNATURE, model_type="tf_generic")],
        # Overall, then by whether the user has train ratings and by history
        # length (features ExampleGen writes; components.movielens.examples).
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
