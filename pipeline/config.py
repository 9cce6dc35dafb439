"""Every knob of the pipeline, in one place.

`PipelineConfig` is what `create_pipeline` takes; `ModelConfig` is what the
Trainer's `run_fn` receives (as `custom_config`); `TransformConfig` is what
`preprocessing_fn` receives. The named model configs are `tutorial` (the TFRS
context-features tutorial, exactly) and `default` (improved).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

from components.movielens import files

TOP_KS: Tuple[int, ...] = (1, 5, 10, 50, 100)
# The two models the job trains, in order: name -> use_timestamps.
VARIANTS: Dict[str, bool] = {"baseline": False, "timestamp": True}
GATE_K = 100  # the Evaluator blesses on top-100 accuracy


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of the two-tower retrieval model (the Trainer's custom_config)."""

    use_timestamps: bool = False
    # Hour-of-day and day-of-week embeddings in the query tower (only with
    # use_timestamps; not in the tutorial).
    time_of_day: bool = False
    epochs: int = 3
    batch_size: int = 2048
    learning_rate: float = 0.1
    optimizer: str = "adagrad"  # adagrad | adam
    embedding_dim: int = 32
    # Hidden layer sizes before each tower's final projection to embedding_dim.
    tower_layers: Tuple[int, ...] = ()
    # logQ correction of in-batch negatives by the movie's train frequency.
    sampling_bias_correction: bool = False
    # Temperature dividing the logits (1.0: none).
    temperature: float = 1.0
    # L2 penalty on the query and candidate embeddings (tower outputs), summed
    # over the batch like the retrieval loss.
    embedding_l2: float = 0.0
    seed: int = 42
    export_top_k: int = 100

    def to_custom_config(self) -> Dict:
        d = dataclasses.asdict(self)
        d["tower_layers"] = list(self.tower_layers)
        return d

    @classmethod
    def from_custom_config(cls, d: Dict) -> "ModelConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in fields}
        if "tower_layers" in d:
            d["tower_layers"] = tuple(d["tower_layers"])
        return cls(**d)


NAMED_CONFIGS: Dict[str, ModelConfig] = {
    # The tutorial: 3 epochs, Adagrad 0.1, batch 2048, 32-d, in-batch softmax.
    "tutorial": ModelConfig(),
    # Improved: logQ-corrected in-batch softmax with temperature, L2 on the
    # embeddings (without it Adam overfits after 2-4 epochs), 12 epochs;
    # hour/weekday embeddings in the timestamp model.
    "default": ModelConfig(
        time_of_day=True,
        epochs=12,
        batch_size=1024,
        learning_rate=0.003,
        optimizer="adam",
        embedding_dim=32,
        sampling_bias_correction=True,
        temperature=0.2,
        embedding_l2=0.3,
    ),
}


@dataclasses.dataclass(frozen=True)
class TransformConfig:
    """What preprocessing_fn receives as custom_config."""

    timestamp_buckets: str = "uniform"  # uniform (tutorial: linspace min..max) | quantiles
    num_timestamp_buckets: int = 1000
    max_title_tokens: int = 10_000

    def to_custom_config(self) -> Dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CloudConfig:
    """Google Cloud settings: Dataflow for the Beam stages, optional Vertex AI Training."""

    project: str
    region: str = "us-central1"
    # The pipeline image (Dockerfile); Vertex AI Training runs the Trainer in it too.
    image: str = ""
    # Dataflow.
    temp_location: str = ""  # default: <pipeline_root>/tmp
    dataflow_machine_type: str = "n1-standard-4"
    dataflow_max_workers: int = 8
    # Run the Trainer as a Vertex AI custom job instead of inside the pipeline step.
    vertex_training: bool = False
    training_machine_type: str = "n1-standard-8"

    def beam_pipeline_args(self, pipeline_root: str) -> Tuple[str, ...]:
        return (
            "--runner=DataflowRunner",
            f"--project={self.project}",
            f"--region={self.region}",
            f"--temp_location={self.temp_location or pipeline_root.rstrip('/') + '/tmp'}",
            f"--machine_type={self.dataflow_machine_type}",
            f"--max_num_workers={self.dataflow_max_workers}",
            f"--sdk_container_image={self.image}",
            "--experiments=use_runner_v2",
        )

    def training_custom_config(self) -> Dict:
        """The Trainer custom_config keys of TFX's Vertex AI Training extension."""
        if not self.vertex_training:
            return {}
        return {
            "ai_platform_enable_vertex": True,
            "ai_platform_vertex_region": self.region,
            "ai_platform_training_args": {
                "project": self.project,
                "worker_pool_specs": [{
                    "machine_spec": {"machine_type": self.training_machine_type},
                    "replica_count": 1,
                    "container_spec": {"image_uri": self.image},
                }],
            },
        }


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    data_path: str
    output_dir: str = "output"
    pipeline_name: str = "movielens-tfx"
    model_name: str = "movielens_retrieval"
    # Ingestion.
    split: str = "random"  # random | temporal
    train_fraction: float = 0.8
    split_seed: int = 42
    max_bad_rows: int = 0
    # Transform and Trainer.
    transform: TransformConfig = TransformConfig()
    model: ModelConfig = NAMED_CONFIGS["tutorial"]
    config_name: str = "tutorial"
    # Evaluator gate on top-100 accuracy: value floor (None: not set) and the
    # minimum improvement over the latest blessed model.
    value_floor: Optional[float] = None
    min_improvement: float = 0.0
    # Beam: the in-process FnApiRunner (what DirectRunner picks for batch
    # pipelines, named so that Beam does not first try to fetch Prism).
    # Without a dependency flag, each TFX Beam executor copies the TFX install
    # and builds an sdist of it for remote workers (about 2 s per component,
    # and a temp directory left behind); in-process workers already have it,
    # and the local runner ignores the image it names.
    # beam_workers > 1 runs that many worker processes (multi_processing mode).
    beam_workers: int = 1
    # Set to run on Google Cloud (Dataflow, Vertex AI); None runs locally.
    cloud: Optional[CloudConfig] = None
    # Compile the model config (the Trainer's custom_config) as the pipeline
    # RuntimeParameter `model_config`, so one compiled spec serves both variants.
    model_config_as_runtime_parameter: bool = False

    @property
    def beam_pipeline_args(self) -> Tuple[str, ...]:
        if self.cloud is not None:
            return self.cloud.beam_pipeline_args(self.pipeline_root)
        mode = "in_memory" if self.beam_workers <= 1 else "multi_processing"
        return (
            "--runner=apache_beam.runners.portability.fn_api_runner.FnApiRunner",
            f"--direct_running_mode={mode}",
            f"--direct_num_workers={max(1, self.beam_workers)}",
            "--sdk_container_image=in-process",
        )

    def trainer_custom_config(self) -> Dict:
        """The Trainer's custom_config: the model config plus cloud training keys."""
        return {**self.model.to_custom_config(), **(self.cloud.training_custom_config() if self.cloud else {})}

    @property
    def pipeline_root(self) -> str:
        return files.join(self.output_dir, "pipeline")

    @property
    def metadata_path(self) -> str:
        return files.join(self.output_dir, "metadata.sqlite")

    @property
    def serving_dir(self) -> str:
        return files.join(self.output_dir, "serving")

    @property
    def model_serving_dir(self) -> str:
        return files.join(self.serving_dir, self.model_name)

    def replace(self, **changes) -> "PipelineConfig":
        return dataclasses.replace(self, **changes)

    def with_model(self, **changes) -> "PipelineConfig":
        return dataclasses.replace(self, model=dataclasses.replace(self.model, **changes))


def named_config(name: str, **changes) -> PipelineConfig:
    if name not in NAMED_CONFIGS:
        raise ValueError(f"unknown config {name!r}: choose one of {', '.join(NAMED_CONFIGS)}")
    return PipelineConfig(model=NAMED_CONFIGS[name], config_name=name, **changes)
