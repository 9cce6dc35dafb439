"""DataGate and DriftGate: stop the pipeline when validation found a problem.

ExampleValidator records anomalies but lets the run go on; DataGate reads its
output and fails with a readable summary (one line per anomaly: split,
feature, what is wrong) so that no model trains on data that broke the
schema. Transform runs only after the gate passes.

DistributionValidator (continuous training) compares a span's statistics with
the previous span's. `drift_findings` reads what it found, one line per
feature over its threshold, for reports; DriftGate, in the pipeline only when
configured (PipelineConfig.stop_on_drift), fails the run on any of them.
"""


from typing import Dict, List

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts

from core.errors import UserError

ANOMALIES_FILE = "SchemaDiff.pb"


class DataValidationError(UserError):
    """The examples do not match the schema."""


def summarize_anomalies(anomalies_artifact: types.Artifact) -> List[str]:
    """One line per anomaly found by ExampleValidator, over all its splits."""
    lines = []
    for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
        path = f"{artifact_utils.get_split_uri([anomalies_artifact], split).rstrip('/')}/{ANOMALIES_FILE}"
        anomalies = anomalies_pb2.Anomalies()
        with fileio.open(path, "rb") as f:  # the artifact may be on gs://
            anomalies.ParseFromString(f.read())
        for feature, info in sorted(anomalies.anomaly_info.items()):
            reasons = "; ".join(f"{r.short_description}: {r.description}" for r in info.reason) or info.description
            lines.append(f"split {split!r}, feature {feature!r}: {reasons}")
        if anomalies.HasField("dataset_anomaly_info"):
            reasons = "; ".join(r.description for r in anomalies.dataset_anomaly_info.reason)
            lines.append(f"split {split!r}, whole dataset: {reasons}")
    return lines


def check_anomalies(anomalies_artifact: types.Artifact) -> None:
    """Raises DataValidationError listing the anomalies, if there are any."""
    lines = summarize_anomalies(anomalies_artifact)
    if lines:
        raise DataValidationError(
            "data validation failed: the examples do not match the schema:\n  " + "\n  ".join(lines)
        )


@component
def DataGate(anomalies: InputArtifact[standard_artifacts.ExampleAnomalies]) -> None:
    """Fails the run if `anomalies` lists any anomaly."""
    check_anomalies(anomalies)


class DriftError(UserError):
    """The newest span drifted from the previous one beyond the configured thresholds."""


def _split_pair_anomalies(anomalies_artifact: types.Artifact) -> Dict[str, anomalies_pb2.Anomalies]:
    """DistributionValidator's Anomalies by split pair ("eval_previous": eval compared with previous)."""
    out = {}
    for pair in artifact_utils.decode_split_names(anomalies_artifact.split_names):
        anomalies = anomalies_pb2.Anomalies()
        with fileio.open(f"{anomalies_artifact.uri.rstrip('/')}/SplitPair-{pair}/{ANOMALIES_FILE}", "rb") as f:
            anomalies.ParseFromString(f.read())
        out[pair] = anomalies
    return out


def drift_measurements(anomalies_artifact: types.Artifact) -> Dict[str, float]:
    """Every measured distance, over the threshold or not: {"movie_id jensen_shannon_divergence": 0.41, ...}."""
    out = {}
    for anomalies in _split_pair_anomalies(anomalies_artifact).values():
        for info in anomalies.drift_skew_info:
            for m in info.drift_measurements:
                kind = anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type).lower()
                out[f"{'.'.join(info.path.step)} {kind}"] = round(float(m.value), 4)
    return out


def drift_findings(anomalies_artifact: types.Artifact) -> List[str]:
    """One line per feature whose drift exceeds its threshold (empty: no drift, or no previous span).

    The run compares one pair of splits (the span with the previous span: "eval_previous" in one
    statistics artifact, or "eval_eval" across two), so lines name the feature, not the pair."""
    lines = []
    for _, anomalies in sorted(_split_pair_anomalies(anomalies_artifact).items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            reasons = "; ".join(r.description or r.short_description for r in info.reason)
            lines.append(f"{feature}: {reasons}")
    return lines


def check_drift(anomalies_artifact: types.Artifact) -> None:
    """Raises DriftError listing the drift findings, if there are any."""
    lines = drift_findings(anomalies_artifact)
    if lines:
        raise DriftError("the newest span drifted from the previous one (PipelineConfig.stop_on_drift):\n  "
                         + "\n  ".join(lines))


@component
def DriftGate(anomalies: InputArtifact[standard_artifacts.ExampleAnomalies]) -> None:
    """Fails the run if DistributionValidator found drift (`check_drift`)."""
    check_drift(anomalies)
