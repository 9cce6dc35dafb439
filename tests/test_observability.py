"""What a user sees of a run: quiet commands (logs in a file, --verbose shows them),
the training curves in TensorBoard, report.html in a browser, the run's config
recorded and read back by `recommend`.

One small run through the command line (both variants, fast settings, a model
reading HISTORY movies) is shared by the module's tests.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import ml_metadata as mlmd
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from app.results import metadata_store, user_history
from movielens import synthetic
from pipeline.config import PipelineConfig
from pipeline.local_runner import RUN_CONFIG_PROPERTY
from trainer.config import TENSORBOARD_EVAL, TENSORBOARD_STEPS, TENSORBOARD_TRAIN, TOP_KS, top_k_tag

FAST = ["--config", "tutorial", "--set", "epochs=2", "--set", "batch_size=256", "--value-floor", "0"]
# The run's model reads the 7 latest movies of a user (--set history_length): `recommend` must read as many,
# from the run's recorded config, not the defaults' 50.
HISTORY = 7
IMAGE = "us-docker.pkg.dev/p/r/movielens-tfx:1"
# What TensorFlow, absl, Beam and third-party libraries write to stderr.
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "  # TensorFlow's C++ logging
    r"|^[IWEF]\d{4} \d\d:\d\d:\d\d"  # absl C++ logging
    r"|Warning\b|warnings\.warn|^(INFO|WARNING|ERROR):|absl|tensorflow|apache_beam|cuda|cuDNN|cuBLAS",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory, cli):
    tmp = tmp_path_factory.mktemp("observability")
    data = synthetic.generate(str(tmp / "data"), num_users=60, num_movies=150, num_ratings=3000, seed=6)
    out = str(tmp / "out")
    result = cli("run", "--data", data, "--output", out, *FAST, "--set", "family=history", "--set", f"history_length={HISTORY}",
                 timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"tmp": tmp, "out": out, "result": result}


def _quiet(result, what):
    noise = LOG_LINE.findall(result.stderr)
    assert result.stderr == "", f"{what} wrote to stderr ({len(noise)} log lines):\n{result.stderr[:3000]}"


def test_every_command_is_quiet_by_default_and_logs_to_a_file(run, cli, tmp_path):
    out = run["out"]
    _quiet(run["result"], "run")
    assert "report:" in run["result"].stdout
    run_log = open(os.path.join(out, "run.log")).read()
    assert LOG_LINE.search(run_log), "run.log has no TensorFlow / absl / warning lines"

    recommend = cli("recommend", "--user", "42", "--output", out)
    assert recommend.returncode == 0
    _quiet(recommend, "recommend")
    assert recommend.stdout.startswith("top 10 for user 42")
    assert LOG_LINE.search(open(os.path.join(out, "recommend.log")).read())

    spec = str(tmp_path / "spec" / "pipeline.json")
    compiled = cli("compile", "--target", "kubeflow", "--output", spec, "--image", IMAGE,
                   "--data", "gs://b/d", "--root", "gs://b/r")
    assert compiled.returncode == 0
    _quiet(compiled, "compile")
    assert os.path.getsize(tmp_path / "spec" / "compile.log") > 0

    submitted = cli("submit", "--spec", spec, "--project", "p", "--dry-run")
    assert submitted.returncode == 0
    _quiet(submitted, "submit")
    assert os.path.getsize(tmp_path / "spec" / "submit.log") > 0

    # A user error is one line on stderr, nothing else.
    missing = cli("recommend", "--user", "42", "--output", str(tmp_path / "nothing"))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and missing.stderr.startswith("error: no pushed model in ")


def test_verbose_shows_the_logs_and_still_writes_the_file(run, cli):
    log = os.path.join(run["out"], "recommend.log")
    before = os.path.getsize(log) if os.path.exists(log) else 0
    verbose = cli("recommend", "--user", "42", "--output", run["out"], "--verbose")
    assert verbose.returncode == 0
    assert LOG_LINE.search(verbose.stderr), verbose.stderr[:2000]
    assert verbose.stdout.startswith("top 10 for user 42")
    assert os.path.getsize(log) > before


def _run_configs(metadata_path):
    """The configs recorded on the pipeline_run contexts of ML Metadata, in run order."""
    store = metadata_store(metadata_path)
    contexts = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
    return [PipelineConfig.from_dict(json.loads(c.custom_properties[RUN_CONFIG_PROPERTY].string_value))
            for c in contexts if RUN_CONFIG_PROPERTY in c.custom_properties]


def test_the_runs_config_is_recorded_and_recommend_reads_its_history_length(run, cli, tmp_path):
    out = run["out"]
    recorded = PipelineConfig.from_dict(json.load(open(os.path.join(out, "report.json")))["pipeline_config"])
    assert (recorded.config_name, recorded.model.history_length, recorded.ingested_history_length) == ("tutorial", 7, 7)
    assert recorded.model.epochs == 2 and recorded.value_floor == 0 and recorded.output_dir == out
    # In ML Metadata, on each variant's run: the job's config with the variant's use_timestamps.
    runs = _run_configs(os.path.join(out, "metadata.sqlite"))
    assert [c.model.use_timestamps for c in runs] == [False, True]
    assert all(c.with_model(use_timestamps=False) == recorded for c in runs)

    answer = json.loads(cli("recommend", "--user", "42", "--json", "--output", out, check=True).stdout)
    stored = [movie for movie, _ in user_history(recorded, "42", before=answer["timestamp"])]
    assert answer["history"] == stored and len(stored) == HISTORY
    defaults = [movie for movie, _ in user_history(PipelineConfig(data_path="", output_dir=out), "42",
                                                   before=answer["timestamp"])]
    assert len(defaults) > HISTORY and defaults[:HISTORY] == stored  # what reading the defaults would have done

    # report.json gone (a replay writes none): ML Metadata's record of the run that pushed the model.
    old = str(tmp_path / "old")
    shutil.copytree(out, old)
    os.remove(os.path.join(old, "report.json"))
    result = cli("recommend", "--user", "42", "--json", "--output", old, "--timestamp", str(answer["timestamp"]))
    assert (result.returncode, result.stderr) == (0, "") and json.loads(result.stdout)["history"] == stored
    # An output from before configs were recorded: the defaults, with a note.
    store = mlmd.MetadataStore(PipelineConfig(data_path="", output_dir=old).metadata_connection_config())
    contexts = store.get_contexts_by_type("pipeline_run")
    for context in contexts:
        del context.custom_properties[RUN_CONFIG_PROPERTY]
    store.put_contexts(contexts)
    assert _run_configs(os.path.join(old, "metadata.sqlite")) == []
    result = cli("recommend", "--user", "42", "--json", "--output", old, "--timestamp", str(answer["timestamp"]))
    assert result.returncode == 0 and json.loads(result.stdout)["history"] == defaults
    assert result.stderr == (f"note: {old} records no pipeline config (report.json, ML Metadata: it predates them): the "
                             "user's history is read up to the default length, 50 movies\n")


def _scalars(run_dir):
    """{tag: [(step, value)]} of a TensorBoard run directory, read by TensorBoard's own loader."""
    events = event_accumulator.EventAccumulator(run_dir, size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    return {
        tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
        for tag in events.Tags()["tensors"] if tag != "config"
    }


_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, never through a proxy


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_trainer_writes_tensorboard_logs_for_both_variants(run):
    report = json.load(open(os.path.join(run["out"], "report.json")))
    logdir = report["tensorboard_logdir"]
    command = f"tensorboard --logdir {logdir}"
    assert command in open(os.path.join(run["out"], "report.md")).read()
    assert f"training curves: {command}" in run["result"].stdout
    epochs = report["model_config"]["epochs"]
    runs = []
    for name, model in report["models"].items():
        variant_dir = os.path.join(model["model_run_uri"], name)
        assert os.path.dirname(model["model_run_uri"]) == logdir
        runs += [os.path.relpath(os.path.join(variant_dir, split), logdir) for split in (TENSORBOARD_TRAIN, TENSORBOARD_EVAL)]
        train = _scalars(os.path.join(variant_dir, TENSORBOARD_TRAIN))
        assert [step for step, _ in train["epoch_loss"]] == list(range(epochs))
        assert all(value == pytest.approx(0.1) for _, value in train["epoch_learning_rate"])  # tutorial: Adagrad 0.1
        assert train["batch_loss"] and all(step % TENSORBOARD_STEPS == 0 for step, _ in train["batch_loss"])
        evaluation = _scalars(os.path.join(variant_dir, TENSORBOARD_EVAL))
        for k in TOP_KS:  # the Trainer's FactorizedTopK, as in metrics.json
            assert evaluation[top_k_tag(k)] == [(epochs - 1, pytest.approx(model["trainer_eval"][str(k)], abs=1e-6))]
            assert train[top_k_tag(k)] == [(epochs - 1, pytest.approx(model["train"][str(k)], abs=1e-6))]

    # The report's one command shows both variants' runs.
    port = _free_port()
    tensorboard = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    server = subprocess.Popen([tensorboard, "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        shown, deadline = [], time.time() + 90
        while time.time() < deadline and set(shown) != set(runs):
            time.sleep(1)
            try:
                shown = json.load(_LOCAL.open(f"http://127.0.0.1:{port}/data/runs", timeout=5))
            except OSError:
                pass
        assert sorted(shown) == sorted(runs)
    finally:
        server.terminate()
        server.wait(timeout=30)


# Evaluated in the page: what each section shows.
_PAGE_CHECK = """JSON.stringify({
  sections: [...document.querySelectorAll('body > section')].map(s => s.id),
  models: [...document.querySelectorAll('#models table:first-of-type tbody tr')].map(r => r.cells[0].innerText),
  plot: document.getElementById('top-k-plot')?.naturalWidth || 0,
  gate: [...document.querySelectorAll('#gate > ul > li')].map(li => li.innerText),
  slices: [...document.querySelectorAll('#slices table.slices tbody tr')].map(r => r.cells[0].innerText),
  sliceHeader: [...document.querySelector('#slices table.slices').tHead.rows[0].cells].map(th => th.innerText),
  features: [...document.querySelectorAll('#data table.numbers tbody tr')].map(r => r.cells[0].innerText),
  facets: document.getElementById('facets-template')?.innerHTML.includes('facets-overview') || false,
  anomalies: [...document.querySelectorAll('#data h4')].map(h => h.innerText),
  users: [...document.querySelectorAll('#examples .user')].map(u => ({
    history: u.querySelectorAll('table.history tbody tr').length,
    recs: u.querySelectorAll('table.recs tbody tr').length})),
})"""


def test_report_html_renders_in_headless_chromium_without_console_errors(run, chromium):
    out = run["out"]
    page = os.path.join(out, "report.html")
    assert f"report: {page}" in run["result"].stdout
    # Self-contained: nothing outside TFDV's on-request Facets template is fetched.
    text = open(page).read()
    outside = re.sub(r"<template id=\"facets-template\">.*?</template>", "", text, flags=re.S)
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", outside)

    screenshot = os.path.join(out, "report.png")
    loaded = chromium.load("file://" + page, screenshot, check=_PAGE_CHECK)
    assert loaded["errors"] == []
    shown = json.loads(loaded["result"])
    assert shown["sections"] == ["models", "gate", "slices", "data", "examples"]
    assert shown["models"] == ["popularity", "recent_popularity", "item_knn", "ease", "baseline", "timestamp"]
    assert shown["plot"] > 0  # the inlined PNG decoded
    assert len(shown["gate"]) == 2 and all("blessed" in line for line in shown["gate"])
    assert shown["slices"].count("Overall") == 2  # one table per variant, overall first, then each slice
    assert all(name == "Overall" or name.split(":")[0] in ("user_in_train", "history_bucket") for name in shown["slices"])
    assert shown["sliceHeader"][1:-2] == ["example_count", *(f"top_{k}_accuracy" for k in TOP_KS)]
    # The gate's comparisons with their intervals, per slice and in each model's gate entry.
    assert shown["sliceHeader"][-2] == "vs the latest blessed model" and shown["sliceHeader"][-1].startswith("vs ")
    assert all(" vs " in line and "[" in line for line in shown["gate"])
    assert {"user_id", "movie_title", "timestamp", "user_rating"} <= set(shown["features"])
    assert shown["facets"]
    assert shown["anomalies"] == ["train", "eval"]
    assert len(shown["users"]) == 3 and all(u["recs"] == 10 and u["history"] >= 1 for u in shown["users"])
    with open(screenshot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(screenshot) > 20_000

    # The check itself sees errors: a console error, an exception, a missing file.
    broken = chromium.load("data:text/html,<script>console.error('boom');missing()</script><img src='file:///nonexistent.png'>",
                           os.path.join(out, "broken.png"))
    assert len(broken["errors"]) == 3, broken["errors"]
