"""Vertex AI Pipelines / Kubeflow Pipelines v2: compile offline, submit to Vertex.

`compile_pipeline(config, image, output)` writes the pipeline spec JSON with
TFX's KubeflowV2DagRunner: nothing is uploaded and no credentials are needed.
Model code is referenced by module name (transform.preprocessing, trainer.task)
and is installed in `image` (see Dockerfile). The Trainer's custom_config is
the RuntimeParameter `model_config`, so one spec serves both variants:
`job_arguments` sets `use_timestamps` in it for the variant being submitted
(and the variant's name, the Trainer's TensorBoard run).

A span-aware spec (split "span", continuous training) also has the
RuntimeParameter `range_config`: the span the run ingests (`job_arguments`
with span=N; by default the latest span present). Its window is built inside
ExampleGen (span_window "example_gen"), where a local run resolves it from ML
Metadata: TFX's KubeflowV2 compiler (1.16 and 1.21 alike) supports only the latest-artifact and
latest-blessed resolver strategies, not span ranges. Its Trainer warm-starts
from the latest blessed model.
"""

from __future__ import annotations

import json
from typing import Dict, Optional

from google.protobuf import json_format
from tfx import v1 as tfx

from movielens.spans import SPAN_SPLIT, WINDOW_IN_EXAMPLE_GEN
from pipeline.config import VARIANTS, PipelineConfig
from pipeline.pipeline import MODEL_CONFIG_PARAMETER, RANGE_CONFIG_PARAMETER, create_pipeline, span_range_config
from trainer.config import TENSORBOARD_RUN_KEY

# Pipeline spec schema 2.1.0, for both targets. With TFX's default (2.0.0) the
# container gets no `--json_serialized_inputs_spec_args` and reads only the
# legacy ExecutorInput `inputs.parameters`, which Vertex AI fills but the
# open-source KFP 2.x launcher does not (it fills `inputs.parameterValues`):
# on Kubeflow the ExampleGen driver then failed with KeyError: 'input_config'.
# With 2.1.0 the driver and executors read `parameterValues` (typed by the
# inputs spec), parameters are typed with `parameterType` and the run's values
# are in `runtimeConfig.parameterValues`; Vertex AI runs 2.1.0 specs (what KFP
# SDK 2.x compiles). tests/test_spec_runs.py plays the launcher on both.
USE_PIPELINE_SPEC_2_1 = True


def compile_pipeline(config: PipelineConfig, image: str, output: str) -> str:
    """Writes the KFP v2 pipeline job spec for `config` to `output`; returns its path."""
    config = config.replace(model_config_as_runtime_parameter=True,
                            span_as_runtime_parameter=config.split == SPAN_SPLIT,
                            span_window=WINDOW_IN_EXAMPLE_GEN)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=USE_PIPELINE_SPEC_2_1),
    )
    values = {MODEL_CONFIG_PARAMETER: json.dumps(config.trainer_custom_config(), sort_keys=True)}
    if config.span_as_runtime_parameter:
        values[RANGE_CONFIG_PARAMETER] = span_parameter(config.span)
    job = runner.run(create_pipeline(config), parameter_values=values, write_out=False)
    # The compiler puts the values in runtimeConfig only; as defaults, a run that sets none still works.
    for name, value in values.items():
        job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"][name]["defaultValue"] = value
    with open(output, "w") as f:
        json.dump(job, f, indent=2, sort_keys=True)
    return output


def default_model_config(spec_path: str) -> Dict:
    """The `model_config` RuntimeParameter's default, from a compiled spec."""
    with open(spec_path) as f:
        spec = json.load(f)
    parameter = spec["pipelineSpec"]["root"]["inputDefinitions"]["parameters"][MODEL_CONFIG_PARAMETER]
    return json.loads(parameter["defaultValue"])


def is_span_aware(spec_path: str) -> bool:
    with open(spec_path) as f:
        return RANGE_CONFIG_PARAMETER in json.load(f)["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]


def span_parameter(span: Optional[int]) -> str:
    """The `range_config` parameter value for `span` (None: the latest span present)."""
    config = span_range_config(span)
    return json_format.MessageToJson(config, indent=None) if config is not None else "{}"


def job_arguments(spec_path: str, variant: str, project: str, region: str, service_account: str = "",
                  span: Optional[int] = None) -> Dict:
    """Arguments of google.cloud.aiplatform.PipelineJob for one variant (and, for a span-aware spec, one span)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}: use {' or '.join(VARIANTS)}")
    if not project or not region:
        raise ValueError("--project and --region are required to submit to Vertex AI")
    model_config = {**default_model_config(spec_path), "use_timestamps": VARIANTS[variant], TENSORBOARD_RUN_KEY: variant}
    with open(spec_path) as f:
        root = json.load(f)["runtimeConfig"]["gcsOutputDirectory"]
    parameters = {MODEL_CONFIG_PARAMETER: json.dumps(model_config, sort_keys=True)}
    if is_span_aware(spec_path):
        parameters[RANGE_CONFIG_PARAMETER] = span_parameter(span)
    elif span is not None:
        raise ValueError(f"--span {span}: {spec_path} was not compiled for spans (compile --split span)")
    return {
        "init": {"project": project, "location": region},
        "job": {
            "display_name": f"movielens-tfx-{variant}" + (f"-span-{span}" if span is not None else ""),
            "template_path": spec_path,
            "pipeline_root": root,
            "parameter_values": parameters,
            "enable_caching": True,
        },
        "submit": {"service_account": service_account or None},
    }


def submit(arguments: Dict, wait: bool) -> str:  # pragma: no cover - needs Google Cloud credentials
    from google.cloud import aiplatform

    aiplatform.init(**arguments["init"])
    job = aiplatform.PipelineJob(**arguments["job"])
    job.submit(**arguments["submit"])
    if wait:
        job.wait()
    return job.resource_name
