"""DistributionValidator: TFX's component, with an executor that also runs in a compiled Vertex / Kubeflow spec.

In TFX 1.16 and 1.21 the KubeflowV2 container entrypoint hands a proto execution
property to the executor as its JSON text, and DistributionValidator's
executor uses `config.default_slice_config` directly: the compiled spec's
DistributionValidator task fails with AttributeError: 'str' object has no
attribute 'default_slice_config' (the local runner passes the proto; found by
tests/test_spec_runs.py). This executor parses the JSON first; nothing else
changes.
"""

from __future__ import annotations

from tfx.components.distribution_validator import executor as dv_executor
from tfx.components.distribution_validator.component import DistributionValidator as TfxDistributionValidator
from tfx.dsl.components.base import executor_spec
from tfx.proto import distribution_validator_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

_CONFIG_KEY = standard_component_specs.DISTRIBUTION_VALIDATOR_CONFIG_KEY


class Executor(dv_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties):
        config = exec_properties.get(_CONFIG_KEY)
        if isinstance(config, str):
            parsed = distribution_validator_pb2.DistributionValidatorConfig()
            proto_utils.json_to_proto(config, parsed)
            exec_properties = {**exec_properties, _CONFIG_KEY: parsed}
        return super().Do(input_dict, output_dict, exec_properties)


class DistributionValidator(TfxDistributionValidator):
    """TFX's DistributionValidator (same spec, inputs and outputs) with `Executor`."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
