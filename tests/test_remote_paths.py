"""Remote-path semantics, on TensorFlow's in-memory ram:// filesystem.

ram:// goes through tf.io.gfile exactly as gs:// does, and builtin open and
os fail on it: code that passes here does no local file access on a remote
URI. What ram:// does not show is GCS itself (listing format, latency,
permissions); where GCS lists differently (names of directories end in
"/"), the tests emulate it. No Beam, no LocalDagRunner.

ram:// is a flat map of names (tsl/platform/ram_file_system.h): listing
"d/a" also lists the tail of a sibling "d/a.b" (".b"), which breaks walk
and rmtree, and a directory rename moves the directory's entry only. The
tests therefore use no sibling names of which one prefixes the other
(a real SavedModel's assets/ and assets.extra/ would be such a pair).
"""

import json
import posixpath
import uuid

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_artifacts

from app import results
from components import atomic_pusher, baselines, data_gate
from movielens import files, reader, synthetic
from trainer.metrics import write_metrics

# A SavedModel's shape: saved_model.pb, variables/, fingerprint.pb; and an empty assets/ (_push); and the
# catalog's embeddings file (trainer.export), published with the rest before saved_model.pb.
FAKE_MODEL = {
    "saved_model.pb": b"graph" * 10,
    "fingerprint.pb": b"fp",
    "embeddings/candidates.json": b'{"id": "1", "embedding": [0.5], "embedding_metadata": {"title": "T"}}\n',
    "variables/variables.index": b"index" * 3,
    "variables/variables.data-00000-of-00001": b"weights" * 100,
}


@pytest.fixture
def ram():
    root = f"ram://{uuid.uuid4().hex}"
    tf.io.gfile.makedirs(root)
    yield root
    if tf.io.gfile.exists(root):
        tf.io.gfile.rmtree(root)


def _write(path: str, data: bytes) -> None:
    tf.io.gfile.makedirs(posixpath.dirname(path))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)


def _read(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def test_ram_paths_fail_on_builtin_open(ram):
    _write(f"{ram}/x", b"1")
    with pytest.raises(FileNotFoundError):
        open(f"{ram}/x", "rb")


# ---------------------------------------------------------------------------
# The pusher.


def _push(root: str, base: str):
    """Runs the AtomicPusher executor on FAKE_MODEL (blessed); returns the PushedModel artifact."""
    model_dir = f"{root}/model/Format-Serving"
    for rel, data in FAKE_MODEL.items():
        _write(f"{model_dir}/{rel}", data)
    tf.io.gfile.makedirs(f"{model_dir}/assets")  # empty, as in most SavedModels
    model = standard_artifacts.Model()
    model.uri = f"{root}/model"
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = f"{root}/blessing"
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = f"{root}/pushed"
    atomic_pusher.Executor().Do(
        {"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
        {"push_destination": json.dumps({"filesystem": {"base_directory": base}})},
    )
    return pushed


def _reader_view(base: str):
    """What TF Serving's poll sees: {version: {file: size}} for every integer-named child."""
    return {v: {rel: size for rel, size in atomic_pusher.tree(f"{base}/{v}").items() if size is not None}
            for v in atomic_pusher.existing_versions(base)}


@pytest.fixture
def gcs_listings(monkeypatch):
    """Directory names as GCS lists them: with a trailing "/" (listdir, and walk's subdirectories)."""
    listdir, walk, isdir = fileio.listdir, fileio.walk, fileio.isdir

    def gcs_listdir(path):
        return [n + "/" if isdir(posixpath.join(path, n)) else n for n in listdir(path)]

    def gcs_walk(top, *args, **kwargs):
        for directory, subdirs, leaves in walk(top, *args, **kwargs):
            yield (directory if directory == top else directory + "/"), [d + "/" for d in subdirs], leaves

    monkeypatch.setattr(fileio, "listdir", gcs_listdir)
    monkeypatch.setattr(fileio, "walk", gcs_walk)


def test_push_to_ram_makes_one_complete_version_and_saved_model_pb_comes_last(ram, monkeypatch):
    base = f"{ram}/serving"
    _write(f"{base}/1000/saved_model.pb", b"old")  # an older version that must stay
    views = []
    copy = atomic_pusher.copy_file

    def copy_and_look(src, dst):
        copy(src, dst)
        views.append(_reader_view(base))

    monkeypatch.setattr(atomic_pusher, "copy_file", copy_and_look)
    pushed = _push(ram, base)

    versions = atomic_pusher.existing_versions(base)
    assert len(versions) == 2 and versions[0] == 1000
    new = f"{base}/{versions[1]}"
    assert atomic_pusher.tree(new) == atomic_pusher.tree(f"{ram}/model/Format-Serving")  # files, sizes, empty assets/
    assert all(_read(f"{new}/{rel}") == data for rel, data in FAKE_MODEL.items())
    assert _read(f"{base}/1000/saved_model.pb") == b"old"
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_destination") == new
    # One copy per file; a reader never saw saved_model.pb before every other file was there.
    complete = {rel: len(data) for rel, data in FAKE_MODEL.items()}
    assert len(views) == len(FAKE_MODEL)
    for view in views:
        assert view[1000] == {"saved_model.pb": 3}
        seen = view.get(versions[1], {})
        assert "saved_model.pb" not in seen or seen == complete
    assert all("saved_model.pb" not in view.get(versions[1], {}) for view in views[:-1])
    assert views[-1][versions[1]] == complete
    assert not [n for n in tf.io.gfile.listdir(base) if n.startswith(".")]  # no staging directory on a remote path


def test_push_honours_versions_listed_with_a_trailing_slash(ram, gcs_listings):
    base = f"{ram}/serving"
    _write(f"{base}/9999999990/saved_model.pb", b"future")  # newer than the clock
    _write(f"{base}/.tmp-5-1/saved_model.pb", b"x")  # not a version
    assert "9999999990/" in fileio.listdir(base)
    assert atomic_pusher.existing_versions(base) == [9999999990]
    pushed = _push(ram, base)
    assert atomic_pusher.existing_versions(base) == [9999999990, 9999999991]
    assert pushed.get_string_custom_property("pushed_version") == "9999999991"
    assert atomic_pusher.tree(f"{base}/9999999991") == atomic_pusher.tree(f"{ram}/model/Format-Serving")


def test_a_failing_copy_leaves_no_version(ram, monkeypatch):
    base = f"{ram}/serving"
    _write(f"{base}/1000/saved_model.pb", b"old")
    copies = []
    copy = atomic_pusher.copy_file

    def fail_on_third(src, dst):
        copies.append(dst)
        if len(copies) == 3:
            raise tf.errors.UnavailableError(None, None, "connection reset")
        copy(src, dst)

    monkeypatch.setattr(atomic_pusher, "copy_file", fail_on_third)
    with pytest.raises(tf.errors.UnavailableError):
        _push(ram, base)
    assert atomic_pusher.existing_versions(base) == [1000]
    assert fileio.listdir(base) == ["1000"]


@pytest.mark.parametrize("cut", ["variables.data", "candidates.json"])
def test_a_copy_that_does_not_match_the_model_is_not_published(ram, monkeypatch, cut):
    base = f"{ram}/serving"

    def truncating_copy(src, dst):  # e.g. an upload cut short that still "succeeded"
        data = _read(src)
        _write(dst, data[:-1] if cut in dst else data)

    monkeypatch.setattr(atomic_pusher, "copy_file", truncating_copy)
    with pytest.raises(atomic_pusher.PushError, match="does not match"):
        _push(ram, base)
    assert fileio.listdir(base) == []


# ---------------------------------------------------------------------------
# DataGate, run_fn's metrics, the baselines, the report's readers, the reader.


def test_data_gate_reads_anomalies_on_ram(ram):
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = f"{ram}/anomalies"
    artifact.split_names = artifact_utils.encode_split_names(["train", "eval"])
    clean = anomalies_pb2.Anomalies()
    broken = anomalies_pb2.Anomalies()
    reason = broken.anomaly_info["movie_title"].reason.add()
    reason.short_description, reason.description = "Column dropped", "The feature was present in fewer examples"
    _write(f"{artifact.uri}/Split-train/{data_gate.ANOMALIES_FILE}", clean.SerializeToString())
    _write(f"{artifact.uri}/Split-eval/{data_gate.ANOMALIES_FILE}", broken.SerializeToString())
    with pytest.raises(data_gate.DataValidationError) as raised:
        data_gate.check_anomalies(artifact)
    assert ("split 'eval', feature 'movie_title': Column dropped: The feature was present in fewer examples"
            in str(raised.value))


def test_trainer_metrics_written_and_read_back_on_ram(ram):
    metrics = {"train": {"10": 0.5}, "eval": {"10": 0.25, "100": 0.75}, "train_seconds": 12.34, "loss": [1.0]}
    model_run = f"{ram}/model_run/7/"  # a URI with a trailing "/" too
    path = write_metrics(model_run, metrics)
    assert path == f"{ram}/model_run/7/metrics.json"
    assert json.loads(_read(path)) == metrics
    assert results.trainer_metrics(model_run) == {
        "train": {10: 0.5}, "trainer_eval": {10: 0.25, 100: 0.75}, "train_seconds": 12.3,
    }


def test_baselines_write_and_read_on_ram(ram):
    artifact = standard_artifacts.ModelEvaluation()
    artifact.uri = f"{ram}/baselines/3"
    baselines.write({"popularity": {10: 0.1, 100: 0.4}}, artifact)
    assert baselines.read(artifact.uri) == {"popularity": {10: 0.1, 100: 0.4}}


def test_movielens_reader_on_ram(ram, tmp_path):
    local = synthetic.generate(str(tmp_path / "data"), num_users=20, num_movies=30, num_ratings=200, seed=1)
    archive = synthetic.generate(str(tmp_path / "zip"), num_users=20, num_movies=30, num_ratings=200, seed=1, as_zip=True)
    tf.io.gfile.makedirs(f"{ram}/dir/ml-100k")
    for name in ("u.data", "u.item", "u.user"):
        tf.io.gfile.copy(f"{local}/{name}", f"{ram}/dir/ml-100k/{name}")
    tf.io.gfile.makedirs(f"{ram}/zip")
    tf.io.gfile.copy(archive, f"{ram}/zip/ml-100k.zip")
    expected = reader.load(local)
    for remote in (f"{ram}/dir/ml-100k", f"{ram}/zip/ml-100k.zip"):
        data = reader.load_cached(remote)  # files.identity stats the remote files
        assert data.layout == "ml-100k" and data.ratings.movie_ids == expected.ratings.movie_ids
        assert len(data.movies) == len(expected.movies)
    assert files.absolute(f"{ram}/dir/ml-100k") == f"{ram}/dir/ml-100k"
