"""BaselineGatedEvaluator: TFX's Evaluator whose value floor can come from the Baselines component.

The gate's value floor must be in the eval config, which is fixed when the
pipeline is built, but the baselines are scored only once ExampleGen has run.
With `floor_from_baselines`, this executor reads the Baselines artifact and
raises the lower bound of every value threshold in the eval config to the best
baseline's top-GATE_K accuracy before TFX's Evaluator runs. The floor it
applied is recorded on the evaluation artifact (custom property `value_floor`). TFMA's extractors
come from components.evaluator_extractors (TFX's `custom_extractors` hook:
TFMA's defaults, carrying only the columns the eval config reads; the same
metrics). Everything else is TFX's Evaluator, unchanged.
"""

from __future__ import annotations

from typing import Optional

import tensorflow_model_analysis as tfma
from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import artifact_utils, channel, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import json_utils, proto_utils

from components import baselines as baselines_component
from components import evaluator_extractors
from trainer.config import GATE_K

FLOOR_FROM_BASELINES_KEY = "floor_from_baselines"
VALUE_FLOOR_PROPERTY = "value_floor"


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
    """Sets every value threshold's lower bound to at least `floor`; returns the gate's floor."""
    applied = None
    for metrics_spec in eval_config.metrics_specs:
        for metric in metrics_spec.metrics:
            thresholds = [metric.threshold] + [per_slice.threshold for per_slice in metric.per_slice_thresholds]
            for threshold in thresholds:
                if threshold.HasField("value_threshold"):
                    bound = threshold.value_threshold.lower_bound
                    bound.value = max(bound.value, floor)
                    applied = bound.value
    return floor if applied is None else applied


class Executor(evaluator_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        eval_config = tfma.EvalConfig()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.EVAL_CONFIG_KEY], eval_config)
        if exec_properties.get(FLOOR_FROM_BASELINES_KEY):
            baselines_uri = artifact_utils.get_single_uri(input_dict[baselines_component.BASELINES_KEY])
            floor = baselines_component.best_at(baselines_component.read(baselines_uri), GATE_K)
            floor = raise_value_floor(eval_config, floor)
            exec_properties = {
                **exec_properties, standard_component_specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(eval_config)
            }
        else:
            floor = raise_value_floor(eval_config, 0.0)
        evaluation = artifact_utils.get_single_instance(output_dict[standard_component_specs.EVALUATION_KEY])
        evaluation.set_float_custom_property(VALUE_FLOOR_PROPERTY, floor)
        module_keys = (standard_component_specs.MODULE_PATH_KEY, standard_component_specs.MODULE_FILE_KEY)
        if not any(exec_properties.get(key) for key in module_keys):
            # TFX's Evaluator takes its extractors from this module's custom_extractors.
            exec_properties = {**exec_properties, standard_component_specs.MODULE_PATH_KEY: evaluator_extractors.__name__}
        super().Do(input_dict, output_dict, exec_properties)


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
