"""The model's contract: ModelConfig (the Trainer's custom_config), the named configs, the k's measured.

Dependency-free (no TensorFlow), so the command line validates a config before
any component starts. Metrics are keyed by the integer k everywhere; they are
formatted ("top_100") only when printed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

from core.errors import ConfigError, check_choice

# Top-k accuracies measured by the Trainer, the Evaluator and the baselines (the gate's k,
# core.comparison.GATE_K, is one of them).
TOP_KS: Tuple[int, ...] = (1, 5, 10, 50, 100)
OPTIMIZERS = ("adagrad", "adam")
HISTORY_ENCODERS = ("mean", "attention")
# The model families (ModelConfig.family), one module each in trainer.families: "tutorial", the TFRS
# tutorial's towers (user id and time against the title); "history", the rating's recent movies against
# the movie. Only "history" reads the history (history_length >= 1 movies).
FAMILIES = ("tutorial", "history")
TIME_FEATURES = ("history_age", "since_previous", "calendar", "hour_affinity", "weekday_affinity")
# The time features that score each movie through its own affinity vector (trainer.families.history).
AFFINITY_FEATURES = ("hour_affinity", "weekday_affinity")


def top_k_label(k: int) -> str:
    """How top-k accuracy is printed: "top_100"."""
    return f"top_{k}"


def metrics_by_k(metrics: Mapping[Any, float]) -> Dict[int, float]:
    """{k: value} from a mapping keyed by k or by its JSON form ("100"), sorted by k."""
    return {int(k): float(v) for k, v in sorted(metrics.items(), key=lambda item: int(item[0]))}


# Epochs of a warm-started continuous-training run: see warm_start_epochs.
CONTINUOUS_WARM_START_EPOCHS = 3


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of the two-tower retrieval model (the Trainer's custom_config).

    Validated on construction: a bad value fails before any component runs.
    """

    use_timestamps: bool = False
    # Hour-of-day and day-of-week embeddings in the query tower (only with
    # use_timestamps; not in the tutorial).
    time_of_day: bool = False
    epochs: int = 3
    batch_size: int = 2048
    learning_rate: float = 0.1
    optimizer: str = "adagrad"  # one of OPTIMIZERS
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
    # Movies already in the rating's history are never recommended: excluded
    # from the top-K in the Trainer's metric, in TFMA and in serving (and by
    # the baselines). Off in the tutorial.
    exclude_history: bool = False
    # The towers and what they read: one of FAMILIES (trainer.families).
    family: str = "tutorial"
    # The history family's query reads the rating's N most recent earlier
    # movies (N >= 1); 0 with the tutorial family, which reads none.
    history_length: int = 0
    history_encoder: str = "attention"  # one of HISTORY_ENCODERS: mean, or mean + attention
    attention_heads: int = 2
    # Dropout on the history's movies while training: each history movie's
    # embedding is dropped whole (noise shape [batch, N, 1]), not coordinate by
    # coordinate: 1/64 of the random numbers, which were a step's largest op;
    # validation top-100 the same (docs/performance.md).
    history_dropout: float = 0.0
    # L2-normalise both towers' outputs (cosine scores; with temperature).
    normalize: bool = False
    # The time features of the history-aware query tower with use_timestamps,
    # a subset of TIME_FEATURES: each history movie's age at the rating
    # ("history_age"), the gap since the previous rating ("since_previous"),
    # hour and weekday ("calendar", mixed into the query); "hour_affinity" and
    # "weekday_affinity" add their own term to the score instead: the rating's
    # hour (weekday) embedding dotted with the movie's affinity vector
    # (affinity_dim each), so the time moves movies up or down whatever the
    # history says, and the history query is left as it is.
    time_features: Tuple[str, ...] = ("history_age",)
    # Dropout of each rating-time embedding (calendar, since_previous, the
    # affinities) of the history-aware query tower, whole per example, while
    # training: the model cannot lean on the time alone.
    time_dropout: float = 0.0
    # Width of the hour / weekday affinity vectors (with an *_affinity time feature).
    affinity_dim: int = 4
    # Start from the latest blessed model's weights (trainer.warm_start): the
    # pipeline then feeds it to the Trainer as its base model. Off by default:
    # the main job trains two variants in one pipeline, and the second must not
    # start from the first.
    warm_start: bool = False
    # Epochs of a warm-started run (None: `epochs`); a run with no usable base
    # model (the first, or a base without the warm-start sidecar) trains `epochs`.
    # How many a warm model needs: docs/model.md (Warm start).
    warm_start_epochs: Optional[int] = None

    def continuous(self) -> "ModelConfig":
        """This config as continuous training runs it (replay, a span-aware compiled spec): warm-started
        from the deployed model, CONTINUOUS_WARM_START_EPOCHS epochs unless warm_start_epochs is set."""
        return self.replace(warm_start=True, warm_start_epochs=self.warm_start_epochs or CONTINUOUS_WARM_START_EPOCHS)

    def __post_init__(self):
        object.__setattr__(self, "tower_layers", tuple(self.tower_layers))
        object.__setattr__(self, "time_features", tuple(self.time_features))
        for feature in self.time_features:
            check_choice("time_features", feature, TIME_FEATURES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        optional = ("warm_start_epochs",) if self.warm_start_epochs is not None else ()
        for name in ("epochs", "batch_size", "embedding_dim", "export_top_k", "affinity_dim") + optional:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}: {value!r} is not a positive integer")
        if any(not isinstance(units, int) or units < 1 for units in self.tower_layers):
            raise ConfigError(f"tower_layers: {list(self.tower_layers)!r} must be positive integers")
        for name, low in (("learning_rate", 0.0), ("embedding_l2", 0.0)):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) < low:
                raise ConfigError(f"{name}: {getattr(self, name)!r} is not a number >= {low}")
        if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            raise ConfigError(f"temperature: {self.temperature!r} is not a number > 0")
        check_choice("history_encoder", self.history_encoder, HISTORY_ENCODERS)
        check_choice("family", self.family, FAMILIES)
        if not isinstance(self.history_length, int) or self.history_length < 0:
            raise ConfigError(f"history_length: {self.history_length!r} is not an integer >= 0")
        if self.family == "history" and self.history_length == 0:
            raise ConfigError("family: 'history' reads the rating's history_length most recent movies, but "
                              "history_length is 0: set history_length >= 1 (or family=tutorial)")
        if self.family != "history" and self.history_length >= 1:
            raise ConfigError(f"family: {self.family!r} reads no history, but history_length is "
                              f"{self.history_length}: set family=history (or history_length=0)")
        for name in ("history_dropout", "time_dropout"):
            if not isinstance(getattr(self, name), (int, float)) or not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name}: {getattr(self, name)!r} is not in [0, 1)")
        if not isinstance(self.warm_start, bool):
            raise ConfigError(f"warm_start: {self.warm_start!r} is not true or false")
        if self.warm_start_epochs is not None and not self.warm_start:
            raise ConfigError("warm_start_epochs is set but warm_start is off: set warm_start=true")
        if self.family == "history" and self.embedding_dim % self.attention_heads:
            raise ConfigError(f"attention_heads: {self.attention_heads} does not divide embedding_dim {self.embedding_dim}")

    def epochs_to_train(self, warm_started: bool) -> int:
        """Epochs of a run: warm_start_epochs (or epochs) when it started from a base model, else epochs."""
        return (self.warm_start_epochs or self.epochs) if warm_started else self.epochs

    def replace(self, **changes) -> "ModelConfig":
        """A copy with `changes`; an unknown name is a ConfigError listing the valid ones."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise ConfigError(f"unknown model setting {', '.join(unknown)}: valid settings are {valid}")
        return dataclasses.replace(self, **changes)

    def to_custom_config(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tower_layers"] = list(self.tower_layers)
        d["time_features"] = list(self.time_features)
        return d

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any]) -> "ModelConfig":
        """The model config inside a Trainer custom_config (other keys, e.g. the catalog's, are ignored).

        A config written before ModelConfig named its family (a compiled spec's model_config, a run's
        metrics.json) has none: its history_length decided it, 0 for the tutorial's towers.
        """
        fields = {f.name for f in dataclasses.fields(cls)}
        settings = {k: v for k, v in custom_config.items() if k in fields}
        if "family" not in settings:
            settings["family"] = "history" if settings.get("history_length") else "tutorial"
        return cls(**settings)


NAMED_CONFIGS: Dict[str, ModelConfig] = {
    # The tutorial: 3 epochs, Adagrad 0.1, batch 2048, 32-d, in-batch softmax.
    "tutorial": ModelConfig(family="tutorial"),
    # Serves the future: the query is the user's 50 most recent earlier movies
    # (attention + mean over embeddings shared with the candidates; dropout
    # 0.3), L2-normalised towers, logQ-corrected in-batch softmax at
    # temperature 0.2, Adam 2e-3, batch 1024; movies already in the history
    # are never recommended. The timestamp variant adds each history movie's
    # age and the hour's affinity term (4-d, dropped whole 30% of the time):
    # chosen on validation slices, of ml-100k and of planted-context sessions,
    # never eval (docs/model.md, What time features do on the future).
    "default": ModelConfig(
        time_of_day=True,
        epochs=8,
        batch_size=1024,
        learning_rate=0.002,
        optimizer="adam",
        embedding_dim=64,
        sampling_bias_correction=True,
        temperature=0.2,
        exclude_history=True,
        family="history",
        history_length=50,
        history_encoder="attention",
        attention_heads=2,
        history_dropout=0.3,
        normalize=True,
        time_features=("history_age", "hour_affinity"),
        time_dropout=0.3,
    ),
}


# The run_fn contract beyond ModelConfig: the Trainer component adds the
# catalog's file pattern to custom_config under this key, and run_fn writes
# its measurements to this file in the ModelRun artifact.
CATALOG_PATTERN_KEY = "catalog_file_pattern"
METRICS_FILE = "metrics.json"
# TensorBoard logs of a training run, the TFX convention (in model_run_dir):
# <model_run_dir>/<run>/train: epoch_loss and epoch_learning_rate
# (Keras' TensorBoard callback), batch_loss and batch_steps_per_second every
# TENSORBOARD_STEPS steps (trainer.metrics.BatchSummaries),
# the config as text, and top-k accuracy on the train sample;
# <model_run_dir>/<run>/eval: top-k accuracy on the eval split.
# Top-k accuracy is measured once, after the last epoch: step epochs - 1.
# <run> is custom_config[TENSORBOARD_RUN_KEY]: the pipeline puts the name of
# the job's variant there (pipeline.config.PipelineConfig.trainer_custom_config),
# so TensorBoard on the runs' common parent tells the variants apart; without
# it the logs go to <model_run_dir> itself.
TENSORBOARD_RUN_KEY = "tensorboard_run"
TENSORBOARD_TRAIN, TENSORBOARD_EVAL = "train", "eval"
TENSORBOARD_STEPS = 10


def top_k_tag(k: int) -> str:
    """The TensorBoard scalar tag of top-k accuracy: "top_k_accuracy/top_100"."""
    return f"top_k_accuracy/{top_k_label(k)}"
