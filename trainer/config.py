"""The model's contract: ModelConfig (the Trainer's custom_config), the named configs, the k's measured.

Dependency-free (no TensorFlow), so the command line validates a config before
any component starts. Metrics are keyed by the integer k everywhere; they are
formatted ("top_100") only when printed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Tuple

from core.errors import ConfigError, check_choice

# Top-k accuracies measured by the Trainer, the Evaluator and the baselines.
TOP_KS: Tuple[int, ...] = (1, 5, 10, 50, 100)
# The Evaluator blesses on top-GATE_K accuracy.
GATE_K = 100
OPTIMIZERS = ("adagrad", "adam")
# The two models the job trains, in order: name -> use_timestamps.
VARIANTS: Dict[str, bool] = {"baseline": False, "timestamp": True}


def variant_name(use_timestamps: bool) -> str:
    """The variant a model with this use_timestamps is: "baseline" or "timestamp"."""
    return next(name for name, flag in VARIANTS.items() if flag == bool(use_timestamps))


def top_k_label(k: int) -> str:
    """How top-k accuracy is printed: "top_100"."""
    return f"top_{k}"


def metrics_by_k(metrics: Mapping[Any, float]) -> Dict[int, float]:
    """{k: value} from a mapping keyed by k or by its JSON form ("100"), sorted by k."""
    return {int(k): float(v) for k, v in sorted(metrics.items(), key=lambda item: int(item[0]))}


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

    def __post_init__(self):
        object.__setattr__(self, "tower_layers", tuple(self.tower_layers))
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        for name in ("epochs", "batch_size", "embedding_dim", "export_top_k"):
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
        return d

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any]) -> "ModelConfig":
        """The model config inside a Trainer custom_config (other keys, e.g. the catalog's, are ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in custom_config.items() if k in fields})


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

# The run_fn contract beyond ModelConfig: the Trainer component adds the
# catalog's file pattern to custom_config under this key, and run_fn writes
# its measurements to this file in the ModelRun artifact.
CATALOG_PATTERN_KEY = "catalog_file_pattern"
METRICS_FILE = "metrics.json"
# TensorBoard logs of a training run, the TFX convention (in model_run_dir):
# <model_run_dir>/<variant_name>/train: epoch_loss, batch_loss and
# batch_steps_per_second (every TENSORBOARD_STEPS steps), epoch_learning_rate
# (Keras' TensorBoard callback),
# the config as text, and top-k accuracy on the train sample;
# <model_run_dir>/<variant_name>/eval: top-k accuracy on the eval split.
# Top-k accuracy is measured once, after the last epoch: step epochs - 1.
TENSORBOARD_TRAIN, TENSORBOARD_EVAL = "train", "eval"
TENSORBOARD_STEPS = 10


def top_k_tag(k: int) -> str:
    """The TensorBoard scalar tag of top-k accuracy: "top_k_accuracy/top_100"."""
    return f"top_k_accuracy/{top_k_label(k)}"
