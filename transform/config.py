"""TransformConfig: what preprocessing_fn receives as custom_config."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

from core.errors import ConfigError, check_choice

TIMESTAMP_BUCKET_MODES = ("uniform", "quantiles")


@dataclasses.dataclass(frozen=True)
class TransformConfig:
    """Transform's knobs; validated on construction."""

    # uniform: boundaries evenly between the train min and max (the tutorial);
    # quantiles: boundaries at train quantiles.
    timestamp_buckets: str = "uniform"
    num_timestamp_buckets: int = 1000
    max_title_tokens: int = 10_000
    # The tutorial towers' features: user and title vocabularies, title tokens,
    # timestamp bucket and z-score. The history-aware towers read none of them
    # (only the movie vocabulary and the time features); without them Transform
    # analyses half as much (docs/performance.md). The pipeline sets it from
    # the model config it is built with (PipelineConfig.transform_config); a
    # compiled spec whose runtime model_config turned a history model into the
    # tutorial's would need compiling again (the Trainer says so).
    tutorial_features: bool = True

    def __post_init__(self):
        check_choice("timestamp_buckets", self.timestamp_buckets, TIMESTAMP_BUCKET_MODES)
        if self.num_timestamp_buckets < 2:
            raise ConfigError(f"num_timestamp_buckets: {self.num_timestamp_buckets} is less than 2")
        if self.max_title_tokens < 1:
            raise ConfigError(f"max_title_tokens: {self.max_title_tokens} is less than 1")

    def replace(self, **changes) -> "TransformConfig":
        return dataclasses.replace(self, **changes)

    def to_custom_config(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_custom_config(cls, custom_config: Optional[Dict[str, Any]]) -> "TransformConfig":
        return cls(**(custom_config or {}))
