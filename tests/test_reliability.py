"""Faults provoked for real: SIGKILL and resume, concurrent runs, atomic pushes, changed input."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx.types import standard_artifacts

from app import lock
from app.results import latest_outputs, metadata_store
from components import atomic_pusher
from movielens import spans, synthetic
from pipeline.config import named_config
from pipeline.local_runner import ABANDONED_PROPERTY, run_pipeline

FAST = ["--config", "tutorial", "--set", "epochs=2", "--set", "batch_size=256", "--value-floor", "0"]


def _small_data(path):
    return synthetic.generate(str(path), num_users=60, num_movies=150, num_ratings=3000, seed=6)


def test_second_run_on_the_same_output_is_refused(tmp_path, cli):
    data, out = _small_data(tmp_path / "data"), str(tmp_path / "out")
    with lock.exclusive(out):
        result = cli("run", "--data", data, "--output", out, *FAST)
    assert result.returncode == 2
    assert f"{out} is in use by another movielens-tfx run (pid {os.getpid()}" in result.stderr
    # Refused before anything under the output is written (the log, opened before the heavy imports).
    assert os.listdir(out) == [lock.LOCK_FILE]


def _files(root):
    """{path: (modification time, bytes)} of every file under root."""
    out = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                out[path] = (os.stat(path).st_mtime_ns, f.read())
    return out


def test_a_refused_replay_leaves_the_running_replays_spans_untouched(tmp_path, cli):
    # Replay A (weekly spans) holds the output; replay B asks for 3-day spans on the same output.
    data = synthetic.generate(str(tmp_path / "flat"), num_users=40, num_movies=80, num_ratings=1500, days=27, seed=5)
    out = str(tmp_path / "out")
    spans.write(data, os.path.join(out, "spans"), span_days=7)  # what A's replay.prepare_data cut
    before = _files(os.path.join(out, "spans"))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom app import lock\nwith lock.exclusive(sys.argv[1]):\n"
         "    print('locked', flush=True)\n    time.sleep(600)\n", out],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        time.sleep(0.01)  # a rewrite would change modification times
        result = cli("replay", "--data", data, "--output", out, "--span-days", "3", timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 2
    assert re.fullmatch(rf"error: {re.escape(out)} is in use by another movielens-tfx run \(pid {holder.pid}, started "
                        r"[-0-9: ]+\); wait for it to finish or use another --output\n", result.stderr), result.stderr
    assert _files(os.path.join(out, "spans")) == before  # same files, same times, same bytes
    assert sorted(os.listdir(out)) == [lock.LOCK_FILE, "spans"]  # no log either


def test_killed_run_resumes_from_the_cache_and_metadata_stays_consistent(tmp_path, cli):
    data, out = _small_data(tmp_path / "data"), str(tmp_path / "out")
    args = [cli.path, "run", "--data", data, "--output", out, "--variants", "baseline", *FAST]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, start_new_session=True)
    for line in process.stdout:
        if "RetrievalTrainer" in line and "running" in line:
            time.sleep(3)  # inside the Trainer
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(out, "report.json"))

    resumed = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    states = dict(re.findall(r"\]\s+(\S+)\s+(done|cached)\s", resumed.stdout))
    for component in ("RatingsExampleGen", "CatalogExampleGen", "StatisticsGen", "SchemaGen", "Transform"):
        assert states[component] == "cached", (component, resumed.stdout)
    assert states["RetrievalTrainer"] == "done"
    assert json.load(open(os.path.join(out, "report.json")))["models"]["baseline"]["blessed"] is True

    # Every artifact ML Metadata holds as LIVE exists on disk; each component's
    # latest execution is complete or cached.
    store = metadata_store(os.path.join(out, "metadata.sqlite"))
    live = [a for a in store.get_artifacts() if a.state == metadata_store_pb2.Artifact.LIVE]
    assert live and all(os.path.exists(a.uri) for a in live)
    for context in store.get_contexts_by_type("node"):
        executions = store.get_executions_by_context(context.id)
        if executions:
            latest = max(executions, key=lambda e: e.id)
            assert latest.last_known_state in (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED), context.name
    # The killed Trainer's execution, which TFX leaves RUNNING, was marked FAILED before the rerun started;
    # nothing is left running.
    executions = store.get_executions()
    active = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)
    assert [e.id for e in executions if e.last_known_state in active] == []
    [killed] = [e for e in executions if ABANDONED_PROPERTY in e.custom_properties]
    assert killed.last_known_state == metadata_store_pb2.Execution.FAILED
    assert f"--- marked FAILED in ML Metadata, left running by a killed run: RetrievalTrainer (execution {killed.id})" \
        in resumed.stdout


def test_push_is_atomic(tmp_path, monkeypatch):
    model = tmp_path / "model" / "Format-Serving"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"pb")
    (model / "variables" / "variables.index").write_bytes(b"index")
    serving = tmp_path / "serving"
    seen_during_copy = []
    original_copy = atomic_pusher.io_utils.copy_dir

    def copy_and_look(src, dst, *args, **kwargs):
        original_copy(src, dst, *args, **kwargs)
        if str(dst).startswith(str(serving)):
            seen_during_copy.append(sorted(os.listdir(serving)))

    monkeypatch.setattr(atomic_pusher.io_utils, "copy_dir", copy_and_look)
    model_artifact = standard_artifacts.Model()
    model_artifact.uri = str(tmp_path / "model")
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(tmp_path / "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed")
    destination = json.dumps({"filesystem": {"base_directory": str(serving)}})
    (serving / "1000").mkdir(parents=True)  # an older version that must stay
    atomic_pusher.Executor().Do(
        {"model": [model_artifact], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
        {"push_destination": destination},
    )
    # While files were copied, no new version directory was visible.
    assert seen_during_copy and all(v == ["1000"] for v in [[n for n in names if not n.startswith(".")] for names in seen_during_copy])
    versions = sorted(os.listdir(serving))
    assert len(versions) == 2 and all(v.isdigit() for v in versions)
    new = os.path.join(serving, versions[-1])
    assert sorted(os.listdir(new)) == ["saved_model.pb", "variables"]
    assert pushed.get_int_custom_property("pushed") == 1 and pushed.get_string_custom_property("pushed_destination") == new


def test_changed_input_is_reingested_unchanged_input_hits_the_cache(tmp_path):
    data = _small_data(tmp_path / "data")
    config = named_config("tutorial", data_path=data, output_dir=str(tmp_path / "out"))

    def ingest():
        run_pipeline(config, to_nodes=["RatingsExampleGen"])
        [examples] = latest_outputs(config, "RatingsExampleGen")["examples"]
        return examples

    first = ingest()
    again = ingest()
    assert again.id == first.id  # cached: the same artifact
    time.sleep(1.1)  # a new modification time
    with open(os.path.join(data, "u.data"), "a") as f:
        f.write("1\t1\t5\t880000000\n")
    changed = ingest()
    assert changed.id != first.id
    assert changed.custom_properties["num_examples_train"].int_value + changed.custom_properties["num_examples_eval"].int_value == 3001


@pytest.fixture
def small_filesystem(tmp_path):
    """A 2 MB tmpfs (needs root and mount, as on the project's machines)."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()

    def mount(options):
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount_point)], capture_output=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
        return str(mount_point)

    yield mount
    # Lazy: the run's in-process ML Metadata connection may still hold its SQLite file.
    subprocess.run(["umount", "--lazy", str(mount_point)], capture_output=True)


def test_read_only_output_directory_is_a_clear_error(tmp_path, small_filesystem, cli):
    data, out = _small_data(tmp_path / "data"), os.path.join(small_filesystem("size=1m,ro"), "out")
    result = cli("run", "--data", data, "--output", out, *FAST)
    assert result.returncode == 2
    assert f"error: cannot write {out}: Read-only file system" in result.stderr
    assert "Traceback" not in result.stderr


def test_full_disk_is_a_clear_error_and_registers_nothing_half_written(tmp_path, small_filesystem, cli):
    data, out = _small_data(tmp_path / "data"), os.path.join(small_filesystem("size=2m"), "out")
    result = cli("run", "--data", data, "--output", out, *FAST)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: cannot write {out}: no space left on the device" in result.stderr
    assert "Traceback" not in result.stderr
    store = metadata_store(os.path.join(out, "metadata.sqlite"))
    live = [a for a in store.get_artifacts() if a.state == metadata_store_pb2.Artifact.LIVE]
    assert all(os.path.exists(a.uri) for a in live)
    serving = os.path.join(out, "serving", "movielens_retrieval")
    for version in os.listdir(serving) if os.path.exists(serving) else []:
        assert version.isdigit(), version  # no staging directory left behind
        assert sorted(os.listdir(os.path.join(serving, version))) == [
            "assets", "assets.extra", "embeddings", "fingerprint.pb", "saved_model.pb", "variables"]
