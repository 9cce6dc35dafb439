"""Drift between a span and the previous one: TFX's DistributionValidator with our config, on planted data."""

import os

import numpy as np
import pandas as pd
import pytest
import tensorflow_data_validation as tfdv
from tfx.components.distribution_validator import executor as dv_executor
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.utils import json_utils

from components.data_gate import DriftError, check_drift, drift_findings, drift_measurements
from pipeline import evaluation
from pipeline.config import PipelineConfig


def _statistics(tmp_path, splits):
    """An ExampleStatistics artifact with one split per DataFrame, as StatisticsGen writes it."""
    artifact = standard_artifacts.ExampleStatistics()
    artifact.uri = str(tmp_path / "statistics")
    artifact.split_names = artifact_utils.encode_split_names(list(splits))
    for name, frame in splits.items():
        directory = os.path.join(artifact.uri, f"Split-{name}")
        os.makedirs(directory)
        stats = tfdv.generate_statistics_from_dataframe(frame)
        with open(os.path.join(directory, "FeatureStats.pb"), "wb") as f:
            f.write(stats.SerializeToString())
    return artifact


def _validate(tmp_path, previous, current, config):
    statistics = _statistics(tmp_path, {"eval": current, "previous": previous})
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(tmp_path / "anomalies")
    dv_executor.Executor().Do(
        {standard_component_specs.STATISTICS_KEY: [statistics], standard_component_specs.BASELINE_STATISTICS_KEY: [statistics]},
        {standard_component_specs.ANOMALIES_KEY: [anomalies]},
        {standard_component_specs.DISTRIBUTION_VALIDATOR_CONFIG_KEY: evaluation.drift_config(config),
         standard_component_specs.INCLUDE_SPLIT_PAIRS_KEY: json_utils.dumps([("eval", "previous")])},
    )
    return anomalies


def _ratings(movies, ratings, n, seed):
    rng = np.random.RandomState(seed)
    return pd.DataFrame({"movie_id": rng.choice(movies, n).astype(bytes), "user_rating": rng.choice(ratings, n).astype(np.float32)})


def test_a_span_like_the_previous_one_is_not_drift_and_its_distances_are_reported(tmp_path):
    config = PipelineConfig(data_path="x", split="span")
    movies = [str(m) for m in range(50)]
    anomalies = _validate(tmp_path, _ratings(movies, [1, 2, 3, 4, 5], 3000, 1), _ratings(movies, [1, 2, 3, 4, 5], 3000, 2), config)
    assert drift_findings(anomalies) == []
    measured = drift_measurements(anomalies)
    assert set(measured) == {"movie_id jensen_shannon_divergence", "user_rating jensen_shannon_divergence"}
    assert all(0 <= value < 0.05 for value in measured.values()), measured
    check_drift(anomalies)  # passes


def test_planted_drift_is_found_named_and_stops_the_run_when_configured(tmp_path):
    config = PipelineConfig(data_path="x", split="span")
    before = _ratings([str(m) for m in range(50)], [1, 2, 3, 4, 5], 3000, 1)
    # New movies only, and everybody rates 1 or 2: both features drift.
    after = _ratings([str(m) for m in range(50, 100)], [1, 2], 3000, 2)
    anomalies = _validate(tmp_path, before, after, config)
    findings = drift_findings(anomalies)
    assert [line.split(":")[0] for line in findings] == ["movie_id", "user_rating"]
    assert "Jensen-Shannon" in findings[0] or "jensen" in findings[0].lower()
    assert drift_measurements(anomalies)["movie_id jensen_shannon_divergence"] > dict(config.drift_thresholds)["movie_id"]
    with pytest.raises(DriftError, match=r"drifted from the previous one .*\n  movie_id: "):
        check_drift(anomalies)
