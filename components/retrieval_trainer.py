"""RetrievalTrainer: the TFX Trainer plus the movie catalog as an input.

A retrieval model scores every catalog movie, so its `run_fn` needs the catalog
(one example per movie, from the catalog ExampleGen) next to the raw training
examples. This is the standard Trainer (same spec, same GenericExecutor and
`run_fn` contract) with one more input channel, `catalog`; the executor hands
its file pattern to `run_fn` as `fn_args.custom_config[CATALOG_PATTERN_KEY]`.
`VertexRetrievalTrainer` runs that same executor as a Vertex AI Training custom
job (TFX's google_cloud_ai_platform extension). The optional `base_model`
channel is TrainerSpec's own: TFX hands the base model's serving directory to
`run_fn` as `fn_args.base_model`, which warm starts from it (trainer.warm_start).
The optional `eval_examples` channel replaces `examples` as what `eval_args`
reads: a local span run trains on its window's spans (`examples`, several
artifacts) and measures on its own span, another artifact.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Union

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.extensions.google_cloud_ai_platform.trainer import executor as ai_platform_trainer_executor
from tfx.orchestration import data_types
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, channel, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import io_utils, json_utils, proto_utils

from trainer.config import CATALOG_PATTERN_KEY

CATALOG_KEY = "catalog"
EVAL_EXAMPLES_KEY = "eval_examples"


class RetrievalTrainerSpec(standard_component_specs.TrainerSpec):
    INPUTS = {
        **standard_component_specs.TrainerSpec.INPUTS,
        CATALOG_KEY: ChannelParameter(type=standard_artifacts.Examples),
        EVAL_EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }


def add_catalog_to_fn_args(fn_args, input_dict: Dict[str, List[types.Artifact]], exec_properties):
    """fn_args with the catalog's file pattern in custom_config, and eval_files from eval_examples if given."""
    catalog = artifact_utils.get_single_instance(input_dict[CATALOG_KEY])
    pattern = artifact_utils.get_split_uri([catalog], "catalog").rstrip("/") + "/*"
    fn_args.custom_config = dict(fn_args.custom_config or {}, **{CATALOG_PATTERN_KEY: pattern})
    if input_dict.get(EVAL_EXAMPLES_KEY):
        eval_args = trainer_pb2.EvalArgs()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.EVAL_ARGS_KEY], eval_args)
        fn_args.eval_files = [io_utils.all_files_pattern(uri) for split in eval_args.splits
                              for uri in artifact_utils.get_split_uris(input_dict[EVAL_EXAMPLES_KEY], split)]
    return fn_args


class Executor(trainer_executor.GenericExecutor):
    def _GetFnArgs(self, input_dict, output_dict, exec_properties):
        return add_catalog_to_fn_args(super()._GetFnArgs(input_dict, output_dict, exec_properties), input_dict,
                                      exec_properties)


class VertexTrainingExecutor(ai_platform_trainer_executor.GenericExecutor):
    """Runs the same Executor (with the catalog) as a Vertex AI Training custom job."""

    def _GetExecutorClass(self):
        return Executor


class RetrievalTrainer(base_component.BaseComponent):
    """Trainer whose `run_fn` also receives the movie catalog."""

    SPEC_CLASS = RetrievalTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        examples: types.BaseChannel,
        catalog: types.BaseChannel,
        transform_graph: types.BaseChannel,
        run_fn: str,
        train_args: Optional[trainer_pb2.TrainArgs] = None,
        eval_args: Optional[trainer_pb2.EvalArgs] = None,
        custom_config: Union[Dict[str, Any], data_types.RuntimeParameter, None] = None,
        schema: Optional[types.BaseChannel] = None,
        base_model: Optional[types.BaseChannel] = None,
        eval_examples: Optional[types.BaseChannel] = None,
    ):
        super().__init__(spec=RetrievalTrainerSpec(
            examples=examples,
            eval_examples=eval_examples,
            catalog=catalog,
            transform_graph=transform_graph,
            schema=schema,
            base_model=base_model,
            train_args=train_args or trainer_pb2.TrainArgs(),
            eval_args=eval_args or trainer_pb2.EvalArgs(),
            run_fn=run_fn,
            custom_config=custom_config
            if isinstance(custom_config, data_types.RuntimeParameter)
            else json_utils.dumps(custom_config or {}),
            model=channel.Channel(type=standard_artifacts.Model),
            model_run=channel.Channel(type=standard_artifacts.ModelRun),
        ))


class VertexRetrievalTrainer(RetrievalTrainer):
    """RetrievalTrainer whose step launches the training as a Vertex AI Training custom job."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(VertexTrainingExecutor)
