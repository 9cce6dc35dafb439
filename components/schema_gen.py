"""SchemaGen: TFX's component, whose inferred schema keeps the history lists variable-length.

With infer_feature_shape, TFDV gives a list feature a fixed shape when every
example it saw had the same number of values. For the history lists
(transform.features.RAW_LIST_FEATURES) that happens whenever every rating of
the data had a full history: a local span run infers its schema from one span
(span 3 of the tests' synthetic data, history length 10, was such a span), and
Transform then traced `history` as a dense [batch, 10] tensor and failed on
the model's variable-length lists. Their length is part of the feature
contract, not something to learn from one batch of data: this executor drops
the inferred shape and value counts of those features (any length, empty
included), after TFX's inference; nothing else changes.
"""

from __future__ import annotations

from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.components.schema_gen import executor as schema_gen_executor
from tfx.components.schema_gen.component import SchemaGen as TfxSchemaGen
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from movielens import files
from transform import features as F


def variable_length_lists(schema: schema_pb2.Schema) -> schema_pb2.Schema:
    """`schema` with RAW_LIST_FEATURES of any length (no shape, no value count)."""
    for feature in schema.feature:
        if feature.name in F.RAW_LIST_FEATURES:
            feature.ClearField("shape")
            feature.ClearField("value_count")
    return schema


class Executor(schema_gen_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        super().Do(input_dict, output_dict, exec_properties)
        path = files.join(artifact_utils.get_single_uri(output_dict[standard_component_specs.SCHEMA_KEY]),
                          schema_gen_executor.DEFAULT_FILE_NAME)
        schema = io_utils.parse_pbtxt_file(path, schema_pb2.Schema())
        io_utils.write_pbtxt_file(path, variable_length_lists(schema))


class SchemaGen(TfxSchemaGen):
    """TFX's SchemaGen (same spec, inputs and outputs) with `Executor`."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
