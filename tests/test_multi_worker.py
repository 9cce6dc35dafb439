"""Multi-worker training: two Trainer workers on 127.0.0.1 against one worker, on the same small data.

The Trainer's run_fn runs in worker processes (tests/multi_worker_driver.py), each with the TF_CONFIG
Vertex AI Training would set on a chief pool of 1 and a worker pool of 1, every address 127.0.0.1 on
ports picked free here: the workers connect to each other only, and (isolated_network) run in a
network namespace whose only interface is the loopback. They share the output directories, as
replicas share gs:// on Vertex. One worker is the same driver without TF_CONFIG.
"""

import json
import os
import shlex
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from helpers import tft_analyze

from movielens import reader, synthetic
from movielens.examples import RatingEncoder, catalog_examples
from trainer.config import CATALOG_PATTERN_KEY, METRICS_FILE, NAMED_CONFIGS, TENSORBOARD_RUN_KEY
from trainer.warm_start import MANIFEST_FILE, sidecar_dir
from transform import features as F
from transform.config import TransformConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(REPO, "tests", "multi_worker_driver.py")
HISTORY = 20
# The default family, small: 2 epochs of global batches of 256 over ~5,600 train ratings (22 steps).
CONFIG = NAMED_CONFIGS["default"].replace(history_length=HISTORY, epochs=2, batch_size=256, embedding_dim=32,
                                          use_timestamps=True, export_top_k=20)
# Eval top-10 and top-50 accuracy of two workers against one, absolute. Both train the same global
# batches (the same seeded order) from the same initial weights with the same negatives; they differ in
# the dropout masks (each worker draws its own for its share) and in the order of float sums: the size
# of a change of seed. Measured on this data (seeds 42..46; each run is deterministic, a rerun gives the
# same numbers):
#   top-10  one worker 0.258 0.270 0.250 0.251 0.276 (sd 0.011); two workers 0.265 0.269 0.252 0.257 0.273 (sd 0.009)
#   top-50  one worker 0.675 0.690 0.690 0.685 0.689 (sd 0.006); two workers 0.699 0.691 0.680 0.680 0.668 (sd 0.012)
# so one run's seed noise is about 0.01 and the difference of two runs about 0.014; 0.04 is ~3 of those.
# At seed 42 two workers differ from one by 0.008 (top-10) and 0.023 (top-50).
TOLERANCE = 0.04
# The loss per epoch (the global batch's, summed over the workers): seed noise moves it by <= 0.4%
# (first epoch 954.7..961.7 over the ten runs above). Workers that scored their queries against their
# own share of the batch only (half the negatives) gave 829.6 against 956.7 (-13%), with top-10 0.268:
# the loss, not the accuracy, is what shows a wrong split of the negatives.
LOSS_RTOL = 0.02
TIMEOUT = 300


def _write_records(path, records):
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(record)


def _rows(records):
    """Raw feature dicts (numpy values) of serialized rating examples, as tft_analyze takes them."""
    spec = F.raw_rating_spec((1,))
    rows = []
    for record in records:
        example = tf.train.Example.FromString(record).features.feature
        row = {}
        for name, feature_spec in spec.items():
            values = example[name]
            values = list(values.bytes_list.value) if feature_spec.dtype == tf.string else list(values.int64_list.value)
            if isinstance(feature_spec, tf.io.VarLenFeature):
                row[name] = np.array(values, dtype=object if feature_spec.dtype == tf.string else np.int64)
            else:
                row[name] = values[0]
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    return prepare_inputs(tmp_path_factory.mktemp("multi_worker"))


def prepare_inputs(tmp):
    """The Trainer's inputs under `tmp` (a pathlib.Path): ExampleGen-like train / eval / catalog files
    and Transform's output; "root" is where run_workers writes."""
    path = synthetic.generate(str(tmp / "data"), num_users=150, num_movies=120, num_ratings=7000, seed=3,
                              sessions=True, context_effect=0.5)
    data = reader.load(path)
    train, evaluation = reader.split_indices(data.ratings.timestamps, "temporal", 0.8, 42)
    encoder = RatingEncoder(data, evaluation, HISTORY)
    os.makedirs(tmp / "examples")
    train_records, eval_records = encoder.encode(train), encoder.encode(evaluation)
    _write_records(str(tmp / "examples" / "train.gz"), train_records)
    _write_records(str(tmp / "examples" / "eval.gz"), eval_records)
    _write_records(str(tmp / "examples" / "catalog.gz"), catalog_examples(data.movies))
    tft_analyze(_rows(train_records), str(tmp / "transform"), F.raw_rating_spec((1,)),
                TransformConfig(tutorial_features=False).to_custom_config())
    return {
        "root": tmp,
        "transform_output": str(tmp / "transform"),
        "train_files": [str(tmp / "examples" / "train.gz")],
        "eval_files": [str(tmp / "examples" / "eval.gz")],
        "custom_config": {**CONFIG.to_custom_config(), CATALOG_PATTERN_KEY: str(tmp / "examples" / "catalog.gz"),
                          TENSORBOARD_RUN_KEY: "timestamp"},
    }


def free_ports(n):
    """n ports free on 127.0.0.1 now (bound then released; the workers bind them moments later)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def isolated_network():
    """Whether a command can run in a network namespace of its own, with only a loopback interface
    (`unshare -rn`: an unprivileged user namespace; Debian allows it). The workers then run there: the
    gRPC servers TensorFlow starts listen on every interface of the machine (`*:port`), and in that
    namespace the only one is 127.0.0.1's."""
    try:
        return subprocess.run(["unshare", "-rn", "sh", "-c", "ip link set lo up"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


ISOLATED = isolated_network()


def vertex_tf_configs(ports):
    """The TF_CONFIG of each replica of a Vertex job with a chief pool of 1 and a worker pool of
    len(ports) - 1, every address on 127.0.0.1."""
    addresses = [f"127.0.0.1:{port}" for port in ports]
    cluster = {"chief": addresses[:1], "worker": addresses[1:]}
    tasks = [("chief", 0)] + [("worker", i) for i in range(len(ports) - 1)]
    return [json.dumps({"cluster": cluster, "task": {"type": t, "index": i}, "environment": "cloud"})
            for t, i in tasks]


def run_workers(inputs, name, tf_configs):
    """Runs one driver per TF_CONFIG (None: no TF_CONFIG), all at once, sharing the output directories;
    returns (outputs, [(returncode, result or None, stderr tail)])."""
    out = inputs["root"] / name
    spec = {k: v for k, v in inputs.items() if k != "root"}
    spec.update(serving_model_dir=str(out / "model" / "Format-Serving"), model_run_dir=str(out / "model_run"))
    spec_path = out / "spec.json"
    os.makedirs(out)
    spec_path.write_text(json.dumps(spec))
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "CLUSTER_SPEC")}
    env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env["TF_CPP_MIN_LOG_LEVEL"] = "1"
    # One shell starts every worker (in the isolated namespace when there is one) and writes each exit code.
    lines = ["ip link set lo up || exit 97"] if ISOLATED and len(tf_configs) > 1 else []
    for i, tf_config in enumerate(tf_configs):
        tmp = out / f"tmp-{i}"  # where a non-chief's temporary outputs go
        os.makedirs(tmp)
        variables = [f"TMPDIR={shlex.quote(str(tmp))}"] + ([f"TF_CONFIG={shlex.quote(tf_config)}"] if tf_config else [])
        command = " ".join([*variables, shlex.quote(sys.executable), shlex.quote(DRIVER), shlex.quote(str(spec_path)),
                            shlex.quote(str(out / f"result-{i}.json"))])
        lines.append(f"( {command} > {shlex.quote(str(out / f'worker-{i}.log'))} 2>&1; "
                     f"echo $? > {shlex.quote(str(out / f'rc-{i}'))} ) &")
    lines.append("wait")
    prefix = ["unshare", "-rn"] if ISOLATED and len(tf_configs) > 1 else []
    process = subprocess.Popen([*prefix, "sh", "-c", "\n".join(lines)], env=env, cwd=str(out), start_new_session=True)
    try:
        shell = process.wait(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert shell == 0, f"the workers' shell exited {shell}"
    reports = []
    for i in range(len(tf_configs)):
        code = int((out / f"rc-{i}").read_text())
        result_path = out / f"result-{i}.json"
        result = json.loads(result_path.read_text()) if result_path.exists() else None
        reports.append((code, result, (out / f"worker-{i}.log").read_text()[-3000:]))
    return out, reports


def _metrics(out):
    with open(out / "model_run" / METRICS_FILE) as f:
        return json.load(f)


def _outputs(out):
    """Every file under the Trainer's output directories, TensorBoard event files by directory only
    (their names hold the host, the pid and the time)."""
    files = set()
    for top in ("model", "model_run"):
        for root, _, names in os.walk(out / top):
            for name in names:
                rel = os.path.relpath(os.path.join(root, name), out)
                files.add(os.path.dirname(rel) + "/<events>" if name.startswith("events.out.tfevents") else rel)
    return files


@pytest.fixture(scope="module")
def runs(inputs):
    one = run_workers(inputs, "one", [None])
    two = run_workers(inputs, "two", vertex_tf_configs(free_ports(2)))
    return one, two


def test_every_worker_exits_0_and_tfx_finds_the_model_on_each(runs):
    for _, reports in runs:
        for code, result, log in reports:
            assert code == 0, log
            # What TFX's Trainer executor checks after run_fn, on every worker: the barrier kept the
            # non-chief in run_fn until the chief had written the model.
            assert result["serving_model_dir_exists"], log
    # The two workers could reach nothing but 127.0.0.1: a network namespace with only a loopback.
    _, reports = runs[1]
    if ISOLATED:
        assert [result["interfaces"] for _, result, _ in reports] == [["lo"], ["lo"]]


def test_only_the_chief_writes_the_outputs(runs):
    (one, _), (two, reports) = runs
    # The chief wrote the model, its warm-start sidecar, metrics.json and the TensorBoard logs ...
    assert (two / "model" / "Format-Serving" / "saved_model.pb").exists()
    assert os.path.exists(os.path.join(sidecar_dir(str(two / "model" / "Format-Serving")), MANIFEST_FILE))
    assert {"train", "eval"} <= set(os.listdir(two / "model_run" / "timestamp"))
    # ... exactly what one worker writes: nothing of the other worker's reached the outputs.
    assert _outputs(two) == _outputs(one)
    assert not any("workertemp" in name or "tmp-" in name for name in _outputs(two))
    # The other worker saved too (TensorFlow's rule: every worker takes part in a save), into its
    # temporary directories, under its own TMPDIR, and deleted them.
    _, worker, log = reports[1]
    assert all(d.startswith(str(two / "tmp-1")) for d in worker["worker_dirs"]), worker
    assert "serving_model/saved_model.pb" in worker["worker_files"], log
    assert f"model_run/{METRICS_FILE}" in worker["worker_files"], log
    # Nothing of the Trainer's is left in that TMPDIR (other libraries use it too: under TF 2.21
    # AutoGraph leaves the __pycache__ of the modules it generates there).
    assert worker["worker_dirs_left"] == []
    assert [name for name in os.listdir(two / "tmp-1") if name.startswith("movielens-tfx-")] == []
    # The chief wrote in place.
    assert reports[0][1]["worker_dirs"] == [str(two / "model" / "Format-Serving"), str(two / "model_run")]


def test_two_workers_train_the_model_one_worker_trains(runs):
    (one, _), (two, _) = runs
    single, double = _metrics(one), _metrics(two)
    assert double["epochs"] == single["epochs"] == CONFIG.epochs
    assert double["config"] == single["config"]
    # Same global batches, same negatives: the summed loss of the workers is the one-worker loss of the
    # global batch (LOSS_RTOL).
    np.testing.assert_allclose(double["loss"], single["loss"], rtol=LOSS_RTOL)
    for k in (10, 50):
        assert abs(double["eval"][str(k)] - single["eval"][str(k)]) <= TOLERANCE, (k, single["eval"], double["eval"])
    # It learned: far above chance (10 of 120 movies).
    assert double["eval"]["10"] > 2 * 10 / 120


def test_two_workers_warm_start_from_a_model(inputs, runs):
    """Warm start under the strategy: every worker copies the base model's weights into its mirrored
    variables (the one-worker run's model as the base), then trains warm_start_epochs."""
    (one, _), _ = runs
    base = str(one / "model" / "Format-Serving")
    with open(os.path.join(sidecar_dir(base), MANIFEST_FILE)) as f:
        weights = len(json.load(f)["weights"])
    warm = dict(inputs, base_model=base,
                custom_config=dict(inputs["custom_config"], warm_start=True, warm_start_epochs=1))
    out, reports = run_workers(warm, "two-warm", vertex_tf_configs(free_ports(2)))
    assert [code for code, _, _ in reports] == [0, 0], [log for _, _, log in reports]
    metrics = _metrics(out)
    assert metrics["epochs"] == 1 and metrics["warm_start"]["warm_started"]
    # Every weight of the base: whole, or row by row for a vocabulary-keyed table.
    summary = metrics["warm_start"]
    assert summary["weights_copied"] + len(summary["tables"]) == weights and summary["skipped"] == {}
    assert abs(metrics["eval"]["10"] - _metrics(one)["eval"]["10"]) <= TOLERANCE
