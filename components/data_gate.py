"""DataGate: stops the pipeline when ExampleValidator found anomalies.

ExampleValidator records anomalies but lets the run go on; this component
reads its output and fails with a readable summary (one line per anomaly:
split, feature, what is wrong) so that no model trains on data that broke the
schema. Transform runs only after the gate passes.
"""


from typing import List

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
