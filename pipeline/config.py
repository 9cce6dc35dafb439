"""Every knob of the pipeline, in one place: `PipelineConfig`, what `create_pipeline` takes.

It holds the model's config (`trainer.config.ModelConfig`, the Trainer's
`custom_config`; named configs `tutorial` and `default`) and Transform's
(`transform.config.TransformConfig`, `preprocessing_fn`'s custom_config):
those live beside the code that reads them, which never imports this package.
Every config validates itself on construction. `to_dict` / `from_dict` are its
JSON form: what a run records (report.json, ML Metadata) and `recommend` reads.
The job's variants (VARIANTS) are here too: the pipeline names the Trainer's
TensorBoard run after them and `submit` sets them (pipeline.kubeflow_runner).
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from typing import Any, Dict, List, Mapping, Optional, Tuple

from core import comparison
from core.errors import ConfigError, check_choice
from movielens import files, spans
from trainer import families
from trainer.config import NAMED_CONFIGS, TENSORBOARD_RUN_KEY, ModelConfig
from transform.config import TransformConfig

# The two models the job trains (app.job), in order: name -> the model's use_timestamps. Also the name of
# each one's TensorBoard run (trainer_custom_config) and the variants `submit` knows (pipeline.kubeflow_runner).
VARIANTS: Dict[str, bool] = {"baseline": False, "timestamp": True}
# The history ExampleGen stores for a model that reads none: the baselines' (item-kNN, EASE) history.
BASELINE_HISTORY = 50
# The password of a MySQL / MariaDB metadata store, when the URI has none.
METADATA_PASSWORD_ENV = "MOVIELENS_TFX_METADATA_PASSWORD"
_MYSQL_URI = "mysql://user[:password]@host[:port]/database"


def variant_name(use_timestamps: bool) -> str:
    """The variant a model with this use_timestamps is: "baseline" or "timestamp"."""
    return next(name for name, flag in VARIANTS.items() if flag == bool(use_timestamps))


def redact_uri(uri: str) -> str:
    """`uri` as a message may show it: whatever could be a password replaced by ***, on any URI shape.

    With an @, everything between the user name's ':' and the last @ (`mysql://user:***@host/db`,
    also with one slash, no scheme or a password holding ':' '/' or '@'); without one, a non-numeric
    "port" (`mysql://user:***/db`: a password whose @host was forgotten). Text after '?' or '#'
    (which could carry a password=) is replaced too.
    """
    if "@" in uri:
        head, tail = uri.rsplit("@", 1)
        colons = [i for i, c in enumerate(head) if c == ":"]
        if colons:
            # The first ':' ends a scheme when a '/' follows it or it follows "mysql"; else it is the
            # user name's (no scheme): when in doubt, more is hidden, never less.
            scheme = head[colons[0] + 1:colons[0] + 2] == "/" or head[:colons[0]].lower() == "mysql"
            cut = colons[1] if scheme and len(colons) > 1 else (None if scheme else colons[0])
            if cut is not None:
                head = head[:cut + 1] + "***"
        shown = f"{head}@{_redact_query(tail)}"
    else:
        match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*:/*)?([^/?#]*)(.*)$", uri, re.DOTALL)
        scheme, authority, rest = match.group(1) or "", match.group(2), match.group(3)
        host, sep, port = authority.partition(":")
        if sep and not port.isdigit():
            authority = f"{host}:***"
        shown = scheme + authority + _redact_query(rest)
    return shown


def _redact_query(text: str) -> str:
    cut = min((i for i in (text.find("?"), text.find("#")) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut + 1] + "***"


@dataclasses.dataclass(frozen=True)
class MySQLMetadata:
    """A shared ML Metadata store on MySQL / MariaDB, parsed from its URI."""

    host: str
    port: int
    database: str
    user: str
    # From the URI, else from $METADATA_PASSWORD_ENV when connecting; never printed.
    uri_password: Optional[str] = dataclasses.field(default=None, repr=False)

    @classmethod
    def parse(cls, uri: str) -> "MySQLMetadata":
        """The store a URI names; ConfigError (its text redacted: `redact_uri`) for anything but
        mysql://user[:password]@host[:port]/database."""
        def refuse(reason: str) -> ConfigError:
            return ConfigError(f"--metadata-uri: {redact_uri(uri)!r} is not {_MYSQL_URI} ({reason})")

        try:
            parts = urllib.parse.urlsplit(uri)
        except ValueError:  # urlsplit's message may quote the URI: never shown
            raise refuse("it cannot be parsed as a URL") from None
        if not uri.startswith("mysql://"):
            raise refuse("it must start with mysql://")
        if "@" not in parts.netloc or not parts.username:
            raise refuse("no user@ before the host")
        if not parts.hostname:
            raise refuse("no host after the @")
        try:
            port = parts.port
        except ValueError:
            raise refuse("the port is not a number from 1 to 65535") from None
        if port == 0:
            raise refuse("the port is not a number from 1 to 65535")
        database = parts.path[1:]
        if not database:
            raise refuse("no /database after the host")
        if "/" in database or parts.query or parts.fragment or "?" in uri or "#" in uri or \
                any(c.isspace() or not c.isprintable() for c in database):
            raise refuse("unexpected text after the database name")
        return cls(
            host=parts.hostname, port=port or 3306, database=database, user=urllib.parse.unquote(parts.username),
            uri_password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
        )

    @property
    def password(self) -> str:
        if self.uri_password is not None:
            return self.uri_password
        return os.environ.get(METADATA_PASSWORD_ENV, "")

    @property
    def location(self) -> str:
        """The store's URI without the password: what messages and reports show."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def uri_without_password(self) -> str:
        """A URI that parses back to this store, without the password (taken from the environment then)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mysql://{urllib.parse.quote(self.user, safe='')}@{host}:{self.port}/{self.database}"


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
    # Replicas of that job (compile --replicas): 1 trains on one machine; N > 1 is a chief pool of 1 and a
    # worker pool of N - 1, the same image and machine type, and the Trainer trains with
    # MultiWorkerMirroredStrategy over them (trainer.distribute; docs/vertex-kubeflow.md).
    training_replicas: int = 1

    def __post_init__(self):
        replicas = self.training_replicas
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise ConfigError(f"training_replicas (--replicas): {replicas!r} is not a positive integer")
        if replicas > 1 and not self.vertex_training:
            raise ConfigError(f"training_replicas (--replicas): {replicas} replicas need vertex_training "
                              "(--vertex-training): only a Vertex AI Training job runs the Trainer on several machines")

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
            "ai_platform_training_args": {"project": self.project, "worker_pool_specs": self.worker_pool_specs()},
        }

    def worker_pool_specs(self) -> List[Dict]:
        """The Vertex AI custom job's worker pools: the first (the chief) of 1 replica and, with
        training_replicas N > 1, a second of N - 1 replicas, the same machine and image. Vertex names them
        "chief" and "worker" in each replica's TF_CONFIG (trainer.cluster); TFX runs the Trainer's
        executor in every replica."""
        def pool(replicas: int) -> Dict:
            return {"machine_spec": {"machine_type": self.training_machine_type}, "replica_count": replicas,
                    "container_spec": {"image_uri": self.image}}
        return [pool(1)] + ([pool(self.training_replicas - 1)] if self.training_replicas > 1 else [])


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    data_path: str
    output_dir: str = "output"
    pipeline_name: str = "movielens-tfx"
    model_name: str = "movielens_retrieval"
    # Ingestion.
    split: str = "random"  # one of spans.SPLIT_METHODS
    train_fraction: float = 0.8
    split_seed: int = 42
    max_bad_rows: int = 0
    # Each rating example carries the user's most recent movies rated strictly
    # before it, up to `ingested_history_length` (movielens.history):
    # what the model reads (ModelConfig.history_length), or BASELINE_HISTORY for
    # a model without history (the baselines' item-kNN and EASE read it). Set,
    # it caps the ingestion, and must be at least what the model reads.
    history_length: Optional[int] = None
    # Continuous training, split "span": data_path is a span layout
    # (movielens.spans). The run for span N trains on the
    # window_spans spans before N and is evaluated and gated on span N, the
    # first data its model would serve. span None: the latest span present
    # (TFX's FileBasedDriver picks it); a compiled spec takes it at submission.
    window_spans: int = 4
    span: Optional[int] = None
    # Where the window comes from (components.example_gen): "resolver" (local
    # runs) ingests each span once and resolves the window's spans from ML
    # Metadata with TFX's span-range resolver; "example_gen" rebuilds the
    # window inside ExampleGen, what a compiled spec does (its span is a
    # runtime parameter, and KubeflowV2 compiles no span-range resolver).
    span_window: str = spans.WINDOW_BY_RESOLVER
    # Drift: DistributionValidator compares span N with span N - 1: the
    # Jensen-Shannon divergence of each feature named here, beyond its
    # threshold, is a finding (docs/continuous-training.md: how they were set).
    # stop_on_drift fails the run before Transform on a finding; otherwise
    # findings are reported (timeline) and the run goes on.
    drift_thresholds: Tuple[Tuple[str, float], ...] = (("movie_id", 0.25), ("user_rating", 0.05))
    stop_on_drift: bool = False
    # Transform and Trainer.
    transform: TransformConfig = TransformConfig()
    model: ModelConfig = NAMED_CONFIGS["tutorial"]
    config_name: str = "tutorial"
    # Evaluator gate on top-GATE_K accuracy (pipeline.evaluation): value floor
    # (None: the best baseline's, and the interval of the difference with it
    # above 0; see components.evaluator), the minimum improvement over the
    # latest blessed model (the interval's lower bound above it), and the
    # intervals' confidence level (users resampled: core.comparison).
    value_floor: Optional[float] = None
    min_improvement: float = 0.0
    confidence: float = comparison.DEFAULT_CONFIDENCE
    # The standard deviation of the top-GATE_K difference between two trainings
    # of one config with different seeds (core.comparison): every interval is
    # widened by it. Measured by A/A runs (bench/gate_bench.py aa, docs/evaluation.md).
    training_noise: float = comparison.DEFAULT_TRAINING_NOISE
    # Beam: the in-process FnApiRunner (what DirectRunner picks for batch
    # pipelines, named so that Beam does not first try to fetch Prism).
    # Without a dependency flag, each TFX Beam executor copies the TFX install
    # and builds an sdist of it for remote workers (seconds per component,
    # and a temp directory left behind); in-process workers already have it,
    # and the local runner ignores the image it names.
    # beam_workers > 1 runs that many worker processes (multi_processing mode).
    beam_workers: int = 1
    # Set to run on Google Cloud (Dataflow, Vertex AI); None runs locally.
    cloud: Optional[CloudConfig] = None
    # Compile the model config (the Trainer's custom_config) as the pipeline
    # RuntimeParameter `model_config`, so one compiled spec serves both variants.
    model_config_as_runtime_parameter: bool = False
    # Compile the span (split "span") as the RuntimeParameter `range_config`,
    # so one compiled spec runs any span (submit --span N).
    span_as_runtime_parameter: bool = False
    # ML Metadata of local runs: None, SQLite at metadata_path (embedded); or a
    # shared MySQL / MariaDB store, mysql://user[:password]@host[:port]/database
    # (the password better in $MOVIELENS_TFX_METADATA_PASSWORD). Not in the
    # repr: it may hold a password.
    metadata_uri: Optional[str] = dataclasses.field(default=None, repr=False)

    def __post_init__(self):
        spans.check_split(self.split, self.train_fraction, self.window_spans)
        check_choice("span_window", self.span_window, spans.SPAN_WINDOWS)
        if self.span_as_runtime_parameter and self.span_window != spans.WINDOW_IN_EXAMPLE_GEN:
            raise ConfigError("span_as_runtime_parameter needs span_window 'example_gen' (a compiled spec "
                              "cannot resolve a window around a span it learns only when it runs)")
        if self.span is not None and (self.split != spans.SPAN_SPLIT or self.span < 0):
            raise ConfigError(f"span: {self.span} needs split 'span' and a span number >= 0")
        for feature, threshold in self.drift_thresholds:
            if not 0.0 < threshold <= 1.0:
                raise ConfigError(f"drift threshold of {feature}: {threshold} is not in (0, 1] "
                                  "(a Jensen-Shannon divergence)")
        problem = comparison.check_confidence(self.confidence)
        if problem:
            raise ConfigError(f"confidence: {problem}")
        problem = comparison.check_training_noise(self.training_noise)
        if problem:
            raise ConfigError(f"training_noise: {problem}")
        if self.history_length is not None:
            if isinstance(self.history_length, bool) or not isinstance(self.history_length, int) \
                    or self.history_length < 0:
                raise ConfigError(f"history_length: {self.history_length!r} is not an integer >= 0")
            if self.history_length < self.model.history_length:
                raise ConfigError(
                    f"history_length: ExampleGen would store {self.history_length} movies per rating, but the model "
                    f"reads {self.model.history_length} (the model's history_length): leave the ingestion cap unset "
                    f"or set it to at least {self.model.history_length}")
        if self.max_bad_rows < 0:
            raise ConfigError(f"max_bad_rows: {self.max_bad_rows} is negative")
        if self.beam_workers < 1:
            raise ConfigError(f"beam_workers: {self.beam_workers} is less than 1")
        if self.metadata_uri is not None:
            MySQLMetadata.parse(self.metadata_uri)

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

    @property
    def window_by_resolver(self) -> bool:
        """True when a span run's training window is resolved from ML Metadata (span_window)."""
        return self.split == spans.SPAN_SPLIT and self.span_window == spans.WINDOW_BY_RESOLVER

    @property
    def ingested_history_length(self) -> int:
        """How many earlier movies ExampleGen stores per rating (see history_length)."""
        if self.history_length is not None:
            return self.history_length
        return self.model.history_length or BASELINE_HISTORY

    @property
    def transform_config(self) -> TransformConfig:
        """Transform's config as the pipeline runs it: the tutorial towers' features only for a model family
        that reads them (TransformConfig.tutorial_features; the family's TUTORIAL_FEATURES). Loads the
        family's module, and so TensorFlow."""
        return self.transform.replace(tutorial_features=families.get(self.model.family).TUTORIAL_FEATURES)

    def trainer_custom_config(self) -> Dict:
        """The Trainer's custom_config: the model config, the TensorBoard run's name (the variant the model
        is: trainer.config.TENSORBOARD_RUN_KEY) plus cloud training keys."""
        return {**self.model.to_custom_config(), TENSORBOARD_RUN_KEY: variant_name(self.model.use_timestamps),
                **(self.cloud.training_custom_config() if self.cloud else {})}

    @property
    def pipeline_root(self) -> str:
        return files.join(self.output_dir, "pipeline")

    @property
    def metadata_path(self) -> str:
        return files.join(self.output_dir, "metadata.sqlite")

    @property
    def metadata_mysql(self) -> Optional[MySQLMetadata]:
        """The shared MySQL / MariaDB store, or None (SQLite at metadata_path)."""
        return MySQLMetadata.parse(self.metadata_uri) if self.metadata_uri is not None else None

    @property
    def metadata_location(self) -> str:
        """Where ML Metadata is, without any password: sqlite:<path> or mysql://user@host:port/db."""
        mysql = self.metadata_mysql
        return mysql.location if mysql else f"sqlite:{files.absolute(self.metadata_path)}"

    def metadata_connection_config(self, read_only: bool = False, with_password: bool = True):
        """The ML Metadata ConnectionConfig of local runs and of app.results.

        read_only: SQLite opened read-only. with_password=False leaves a MySQL
        password out: what the pipeline (its compiled spec) carries; the local
        runner adds it when it connects (pipeline.local_runner).
        """
        from ml_metadata.proto import metadata_store_pb2

        mysql = self.metadata_mysql
        connection = metadata_store_pb2.ConnectionConfig()
        if mysql is None:
            connection.sqlite.filename_uri = files.absolute(self.metadata_path)
            connection.sqlite.connection_mode = (
                metadata_store_pb2.SqliteMetadataSourceConfig.READONLY if read_only
                else metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
            )
            return connection
        # What tfx.orchestration.metadata.mysql_metadata_connection_config builds.
        connection.mysql.host = mysql.host
        connection.mysql.port = mysql.port
        connection.mysql.database = mysql.database
        connection.mysql.user = mysql.user
        if with_password:
            connection.mysql.password = mysql.password
        return connection

    @property
    def serving_dir(self) -> str:
        return files.join(self.output_dir, "serving")

    @property
    def model_serving_dir(self) -> str:
        return files.join(self.serving_dir, self.model_name)

    def replace(self, **changes) -> "PipelineConfig":
        return dataclasses.replace(self, **changes)

    def with_model(self, **changes) -> "PipelineConfig":
        """A copy whose model config has `changes` (validated: see ModelConfig.replace)."""
        return dataclasses.replace(self, model=self.model.replace(**changes))

    def to_dict(self) -> Dict[str, Any]:
        """This config as JSON values: what a run records (report.json; ML Metadata, pipeline.local_runner).

        from_dict(to_dict()) is this config, but for a password in metadata_uri: never recorded (the URI
        is kept without it; the store's password is then taken from $MOVIELENS_TFX_METADATA_PASSWORD).
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(
            drift_thresholds=[[feature, threshold] for feature, threshold in self.drift_thresholds],
            transform=self.transform.to_custom_config(),
            model=self.model.to_custom_config(),
            cloud=dataclasses.asdict(self.cloud) if self.cloud is not None else None,
            metadata_uri=self.metadata_mysql.uri_without_password if self.metadata_uri is not None else None,
        )
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "PipelineConfig":
        """The config `to_dict` returned (validated; a key this version does not know is ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        out = {k: v for k, v in values.items() if k in fields}
        if "drift_thresholds" in out:
            out["drift_thresholds"] = tuple((feature, threshold) for feature, threshold in out["drift_thresholds"])
        if "transform" in out:
            out["transform"] = TransformConfig.from_custom_config(out["transform"])
        if "model" in out:
            out["model"] = ModelConfig.from_custom_config(out["model"])
        if out.get("cloud") is not None:
            out["cloud"] = CloudConfig(**out["cloud"])
        return cls(**out)


# The split each named config is judged on by default: the tutorial's own
# random split; the future (train on the earliest 80%, evaluate on the rest)
# for everything meant to be deployed.
NAMED_SPLITS: Dict[str, str] = {"tutorial": "random", "default": "temporal"}


def named_config(name: str, **changes) -> PipelineConfig:
    """A PipelineConfig with named model config `name` and its split (unless `changes` sets one)."""
    check_choice("config", name, NAMED_CONFIGS)
    changes = {k: v for k, v in changes.items() if not (k == "split" and v is None)}
    return PipelineConfig(model=NAMED_CONFIGS[name], config_name=name, **{"split": NAMED_SPLITS[name], **changes})
