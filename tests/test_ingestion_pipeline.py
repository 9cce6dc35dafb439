"""The real ExampleGen + StatisticsGen/SchemaGen/ExampleValidator + DataGate under LocalDagRunner."""

import glob
import os

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import standard_artifacts

from app.results import latest_outputs
from components.data_gate import DataValidationError, check_anomalies
from components.example_gen import QUARANTINE_FILE
from movielens import synthetic
from pipeline.config import named_config
from pipeline.local_runner import run_pipeline


def _read_split(artifact, split):
    files = glob.glob(os.path.join(artifact.uri, f"Split-{split}", "*"))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _value(example, name):
    feature = example.features.feature[name]
    kind = feature.WhichOneof("kind")
    values = getattr(feature, kind).value
    return values[0] if len(values) == 1 else list(values)


@pytest.fixture(scope="module")
def ingestion(tmp_path_factory):
    """Runs the ingestion and validation part of the pipeline on a temporal split with 2 quarantined rows."""
    tmp = tmp_path_factory.mktemp("ingest")
    data = synthetic.generate(str(tmp / "data"), layout="ml-1m", num_users=40, num_movies=60, num_ratings=1000, seed=2)
    with open(os.path.join(data, "ratings.dat"), "a") as f:
        f.write("1::999::5::880000000\nnot a row\n")
    config = named_config("tutorial", data_path=data, output_dir=str(tmp / "out"), split="temporal", max_bad_rows=2)
    # A partial run of the real pipeline, up to the data gate.
    run_pipeline(config, to_nodes=["DataGate", "CatalogExampleGen"])
    return config


def test_ratings_split_temporally_with_tfds_feature_names(ingestion):
    [examples] = latest_outputs(ingestion, "RatingsExampleGen")["examples"]
    train, evaluation = _read_split(examples, "train"), _read_split(examples, "eval")
    assert (len(train), len(evaluation)) == (800, 200)
    assert max(_value(e, "timestamp") for e in train) <= min(_value(e, "timestamp") for e in evaluation)
    names = set(train[0].features.feature)
    assert {"user_id", "movie_id", "movie_title", "timestamp", "user_rating", "movie_genres",
            "raw_user_age", "user_gender", "user_occupation_text", "user_zip_code"} <= names
    assert examples.custom_properties["num_quarantined_rows"].int_value == 2
    assert examples.custom_properties["num_examples_train"].int_value == 800


def test_every_rating_carries_only_what_a_live_system_knew_before_it(ingestion):
    [examples] = latest_outputs(ingestion, "RatingsExampleGen")["examples"]
    train, evaluation = _read_split(examples, "train"), _read_split(examples, "eval")
    train_keys = {(_value(e, "user_id"), _value(e, "movie_id")) for e in train}

    def history(e):
        feature = e.features.feature
        return list(feature["history"].bytes_list.value), list(feature["history_timestamps"].int64_list.value)

    for split, examples_ in (("train", train), ("eval", evaluation)):
        for e in examples_:
            movies, times = history(e)
            assert len(movies) == len(times) <= 50
            assert all(t < _value(e, "timestamp") for t in times), split  # strictly before: no same second
            assert times == sorted(times, reverse=True)  # most recent first
            if split == "train":  # train histories hold train ratings only
                assert all((_value(e, "user_id"), m) in train_keys for m in movies)
    assert any(history(e)[0] for e in evaluation)


def test_quarantined_rows_are_kept_with_reasons(ingestion):
    [examples] = latest_outputs(ingestion, "RatingsExampleGen")["examples"]
    lines = open(os.path.join(examples.uri, QUARANTINE_FILE)).read().splitlines()
    assert len(lines) == 3
    assert "ratings.dat\t1001\trating of unknown movie id 999" in lines[1]
    assert "ratings.dat\t1002\texpected 4 fields" in lines[2]


def test_catalog_has_every_movie(ingestion):
    [catalog] = latest_outputs(ingestion, "CatalogExampleGen")["examples"]
    movies = _read_split(catalog, "catalog")
    assert len(movies) == 60
    assert sorted(int(_value(m, "movie_id")) for m in movies) == list(range(1, 61))
    assert set(movies[0].features.feature) == {"movie_id", "movie_title", "movie_genres"}


def test_schema_inferred_and_no_anomalies(ingestion):
    [schema] = latest_outputs(ingestion, "SchemaGen")["schema"]
    assert os.path.exists(os.path.join(schema.uri, "schema.pbtxt"))
    assert latest_outputs(ingestion, "DataGate") == {}  # the gate ran (no outputs) ...
    [anomalies] = latest_outputs(ingestion, "ExampleValidator")["anomalies"]
    for split in ("train", "eval"):
        found = anomalies_pb2.Anomalies.FromString(open(os.path.join(anomalies.uri, f"Split-{split}", "SchemaDiff.pb"), "rb").read())
        assert not found.anomaly_info


def test_data_gate_fails_with_a_readable_summary(tmp_path):
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path)
    artifact.split_names = '["eval"]'
    os.makedirs(tmp_path / "Split-eval")
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["user_rating"]
    reason = info.reason.add()
    reason.short_description = "Out-of-range values"
    reason.description = "Unexpectedly large value: 11."
    (tmp_path / "Split-eval" / "SchemaDiff.pb").write_bytes(anomalies.SerializeToString())
    with pytest.raises(DataValidationError) as error:
        check_anomalies(artifact)
    assert "split 'eval', feature 'user_rating': Out-of-range values: Unexpectedly large value: 11." in str(error.value)
    anomalies.Clear()
    (tmp_path / "Split-eval" / "SchemaDiff.pb").write_bytes(anomalies.SerializeToString())
    check_anomalies(artifact)  # no anomaly: passes
