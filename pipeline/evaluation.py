"""The Evaluator's TFMA config: top-k retrieval accuracy and the blessing gate.

The model's `evaluate_hits` signature (trainer.export) returns, per eval
example, `hit_at_{k}` in {0, 1}; TFMA's MeanPrediction averages each into
`top_{k}_accuracy`. MeanPrediction only counts examples that have a label,
so `label_key` names a numeric feature every rating has (`user_rating`); its
value is not used.

Gate on top-100 accuracy: a value floor (`config.value_floor`) and, against
the latest blessed model, an improvement of more than `config.min_improvement`
(HIGHER_IS_BETTER). With no blessed model yet, only the floor applies.
"""

from __future__ import annotations

import tensorflow_model_analysis as tfma

from pipeline.config import GATE_K, TOP_KS, PipelineConfig
from trainer.export import EVAL_SIGNATURE, hit_output

LABEL_KEY = "user_rating"
# Strictly better: an improvement of at least this much over min_improvement.
_EPSILON = 1e-9


def metric_name(k: int) -> str:
    return f"top_{k}_accuracy"


def _threshold(config: PipelineConfig) -> tfma.MetricThreshold:
    return tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": config.value_floor or 0.0}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": config.min_improvement + _EPSILON},
        ),
    )


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    metrics_specs = []
    for k in TOP_KS:
        metric = tfma.MetricConfig(class_name="MeanPrediction", config=f'"name": "{metric_name(k)}"')
        if k == GATE_K:
            metric.threshold.CopyFrom(_threshold(config))
        metrics_specs.append(tfma.MetricsSpec(output_names=[hit_output(k)], metrics=[metric]))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=EVAL_SIGNATURE, label_key=LABEL_KEY, model_type="tf_generic")],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=metrics_specs,
    )
