"""`movielens-tfx replay` end to end on four weekly spans: killed mid-span and resumed, gated on the
next span, warm-started, the frozen model scored, and a corrupted new span refused without touching
what is deployed."""

import json
import os
import re
import shutil
import signal
import subprocess

import pytest
from ml_metadata.proto import metadata_store_pb2

from app import replay, timeline
from app.results import latest_inputs, latest_outputs, metadata_store
from components import atomic_pusher, evaluator
from components.span_resolvers import producer_input_spans
from movielens import spans, synthetic
from pipeline.config import PipelineConfig

# The history model, small and quick. Floor 0: a few steps on synthetic ratings are not meant to
# beat EASE; what this test checks is the gate against the deployed model on the next span.
FAST = ["--window-spans", "2", "--set", "epochs=2", "--set", "warm_start_epochs=1", "--set", "batch_size=256",
        "--value-floor", "0"]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, cli):
    tmp = tmp_path_factory.mktemp("replay")
    data = synthetic.generate(str(tmp / "flat"), num_users=80, num_movies=300, num_ratings=4000, days=27, seed=5)
    out = str(tmp / "out")
    args = [cli.path, "replay", "--data", data, "--output", out, *FAST]
    # Killed inside span 2's Trainer: span 1 is recorded, span 2 is not.
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "--- span 2" in "".join(seen) and "RetrievalTrainer" in line and "running" in line:
            os.killpg(process.pid, signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen)
    before = timeline.read(out)
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=1200)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return {"data": data, "out": out, "args": args, "before_kill": before, "resumed": resumed,
            "entries": timeline.read(out)}


def test_a_killed_replay_resumes_at_the_first_span_not_recorded(replayed):
    assert [e.span for e in replayed["before_kill"]] == [1]
    assert [e.span for e in replayed["entries"]] == [1, 2, 3]
    assert replayed["entries"][0] == replayed["before_kill"][0]  # span 1 was not run again
    assert "--- span 1" not in replayed["resumed"].stdout and "--- span 2" in replayed["resumed"].stdout


def test_the_killed_spans_finished_components_are_served_from_the_cache(replayed):
    # Span 2's rerun: everything span 2's killed run finished, Transform included, comes from TFX's cache
    # (its analyzer cache input is span 1's, as in the killed run); no execution is left RUNNING.
    resumed = replayed["resumed"].stdout
    span_2 = resumed.split("--- span 2")[1].split("--- span 3")[0]
    states = dict(re.findall(r"\]\s+(\S+)\s+(done|cached)\s", span_2))
    for component in ("RatingsExampleGen", "CatalogExampleGen", "StatisticsGen", "SchemaGen", "Transform"):
        assert states[component] == "cached", (component, span_2)
    assert states["RetrievalTrainer"] == "done"
    store = metadata_store(os.path.join(replayed["out"], "metadata.sqlite"))
    active = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)
    assert [e.id for e in store.get_executions() if e.last_known_state in active] == []
    # Span 3's Transform started from the analyzer cache of span 2's (window 0..1).
    [cache] = latest_inputs(PipelineConfig(data_path="", output_dir=replayed["out"]), "Transform")["analyzer_cache"]
    assert producer_input_spans(store, [cache.id]) == {cache.id: [0, 1]}


def test_each_span_trains_on_the_window_before_it_and_is_gated_on_itself(replayed):
    entries = replayed["entries"]
    manifest = spans.Manifest.read(os.path.join(replayed["out"], "spans"))
    assert [e.train_spans for e in entries] == [(0, 0), (0, 1), (1, 2)]
    assert [e.eval_ratings for e in entries] == [manifest.counts[s] for s in (1, 2, 3)]
    first = entries[0]
    assert first.deployed_top_100 is None and first.frozen_top_100 is None
    assert first.warm_start["warm_started"] is False  # nothing blessed to start from yet
    assert first.blessed and first.pushed_version  # nothing deployed, floor 0
    for entry in entries:
        assert set(entry.baselines_top_100) == {"popularity", "recent_popularity", "item_knn", "ease"}
        assert 0.0 < entry.candidate_top_100 <= 1.0
        assert entry.drift_measured and set(k.split()[0] for k in entry.drift_measured) == {"movie_id", "user_rating"}
    for entry in entries[1:]:
        # The gate on the future: blessed exactly when the interval of the candidate's gain over the deployed
        # model on this span (users resampled) is clear of zero (floor 0: the baselines are reported only).
        compared = entry.comparisons["blessed_model"]
        assert compared["diff"] == pytest.approx(entry.candidate_top_100 - entry.deployed_top_100, abs=1e-6)
        assert entry.blessed == (compared["lower"] > 0), entry
        assert bool(entry.pushed_version) == entry.blessed
        assert "floor_baseline" in entry.comparisons
    table = open(os.path.join(replayed["out"], timeline.MARKDOWN_FILE)).read()
    assert entries[1].comparisons["blessed_model"]["words"] in table


def test_the_deployed_model_is_the_last_pushed_and_the_frozen_one_is_scored_like_the_evaluator(replayed):
    entries = replayed["entries"]
    serving = os.path.join(replayed["out"], "serving", "movielens_retrieval")
    pushed = [e.pushed_version for e in entries if e.pushed_version]
    assert sorted(str(v) for v in atomic_pusher.existing_versions(serving)) == sorted(pushed)
    for entry in entries:
        so_far = [e.pushed_version for e in entries if e.span <= entry.span and e.pushed_version]
        assert entry.serving_version == so_far[-1]
    # Span 2 is served by span 1's model, which is also the frozen model: the replay's own
    # scoring (the exported evaluate_hits signature) must agree with TFMA's.
    assert entries[1].frozen_top_100 == pytest.approx(entries[1].deployed_top_100, abs=1e-6)


def test_the_next_spans_evaluator_reuses_the_model_it_loaded_and_scores_it_as_a_fresh_load(replayed):
    # Span 3's Evaluator scored the deployed model that span 2's Evaluator, in the same process, had loaded
    # (components.evaluator.kept_models): not loaded again, and it scores the same as a fresh load of
    # the pushed copy of that model (replay.model_accuracy: the exported evaluate_hits signature).
    config = PipelineConfig(data_path="", output_dir=replayed["out"])
    [evaluation] = latest_outputs(config, "Evaluator")["evaluation"]
    assert evaluation.custom_properties[evaluator.MODELS_REUSED_PROPERTY].int_value == 1
    entries = replayed["entries"]
    deployed = os.path.join(replayed["out"], "serving", "movielens_retrieval", entries[1].serving_version)
    fresh = replay.model_accuracy(deployed, replay._eval_pattern(config))
    assert fresh == pytest.approx(entries[2].deployed_top_100, abs=1e-6)


def test_warm_start_copies_the_deployed_model(replayed):
    for entry in replayed["entries"][1:]:
        assert entry.warm_start["warm_started"] and entry.warm_start["rows_copied"] > 0, entry.warm_start


def test_timeline_files_are_written(replayed):
    out = replayed["out"]
    with open(os.path.join(out, timeline.JSON_FILE)) as f:
        assert [e["span"] for e in json.load(f)["entries"]] == [1, 2, 3]
    with open(os.path.join(out, timeline.MARKDOWN_FILE)) as f:
        text = f.read()
    assert "| 3 | 1-2 |" in text and "## Summary" in text
    with open(os.path.join(out, timeline.PLOT_FILE), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_corrupted_new_span_is_refused_and_nothing_deployed_is_touched(replayed, cli):
    out = replayed["out"]
    root = os.path.join(out, "spans")
    serving = os.path.join(out, "serving", "movielens_retrieval")
    versions = atomic_pusher.existing_versions(serving)
    new = spans.span_dir(root, 4)
    subprocess.run(["cp", "-r", spans.span_dir(root, 3), new], check=True)
    with open(os.path.join(new, "u.data"), "w") as f:
        f.write("1\t2\t4\t2000000000\n1\t3\tfive\t2000000001\n")
    result = cli(*replayed["args"][1:])
    assert result.returncode == 2
    assert f"{new}/u.data:2: " in result.stderr and "Traceback" not in result.stderr
    assert atomic_pusher.existing_versions(serving) == versions
    assert [e.span for e in timeline.read(out)] == [1, 2, 3]


def test_a_missing_span_is_refused_before_any_span_trains(tmp_path, cli):
    # span-0, span-1, span-3: the layout is checked whole before span 1 trains, not at span 2 by TFX.
    flat = synthetic.generate(str(tmp_path / "flat"), num_users=40, num_movies=80, num_ratings=1500, days=27, seed=5)
    root = str(tmp_path / "data")
    spans.write(flat, root, span_days=7)
    shutil.rmtree(spans.span_dir(root, 2))
    out = str(tmp_path / "out")
    result = cli("replay", "--data", root, "--output", out, *FAST, timeout=600)
    assert result.returncode == 2
    assert result.stderr == f"error: {root}/span-2: span 2 is missing (spans 0..3 are needed; found 0..1, 3)\n"
    assert not os.path.exists(os.path.join(out, "pipeline")) and not os.path.exists(os.path.join(out, "metadata.sqlite"))
