"""The whole pipeline on a small fixture: a blessed baseline, then a worse candidate that is not pushed."""

import json
import os
import subprocess
import sys

import pytest

from app.job import run_job
from movielens import synthetic
from pipeline.config import named_config
from trainer.config import TOP_KS


@pytest.fixture(scope="module")
def gated(tmp_path_factory, tree):
    tmp = tmp_path_factory.mktemp("gate")
    data = synthetic.generate(str(tmp / "data"), num_users=120, num_movies=300, num_ratings=6000, seed=4, time_of_day_effect=0.3)
    config = named_config("default", data_path=data, output_dir=str(tmp / "out"), value_floor=0.0).with_model(
        epochs=4, batch_size=256, learning_rate=0.01, optimizer="adam", embedding_dim=32, tower_layers=(),
        sampling_bias_correction=False, temperature=1.0,
    )
    first = run_job(config, variants=["baseline"])
    serving_after_first = tree(config.serving_dir)
    # A candidate that cannot have learned anything: learning rate 0.
    second = run_job(config.with_model(learning_rate=0.0), variants=["timestamp"])
    return {"config": config, "first": first, "second": second, "serving_after_first": serving_after_first}


def test_first_model_is_judged_on_the_floor_blessed_and_pushed_in_serving_layout(gated):
    baseline = gated["first"]["models"]["baseline"]
    assert baseline["blessed"] is True and baseline["compared_with"] is None
    pushed = baseline["pushed_to"]
    assert os.path.dirname(pushed) == os.path.abspath(gated["config"].model_serving_dir)
    assert os.path.basename(pushed).isdigit()
    assert os.path.exists(os.path.join(pushed, "saved_model.pb"))


def test_tfma_agrees_with_factorized_top_k(gated):
    baseline = gated["first"]["models"]["baseline"]
    for k in TOP_KS:
        assert abs(baseline["eval"][k] - baseline["trainer_eval"][k]) <= 0.002, k


def test_worse_candidate_is_not_blessed_and_serving_is_untouched(gated, tree):
    candidate = gated["second"]["models"]["timestamp"]
    baseline = gated["first"]["models"]["baseline"]
    assert candidate["eval"][100] < baseline["eval"][100]
    assert candidate["blessed"] is False and candidate["pushed_to"] is None
    assert candidate["compared_with"] == baseline["model_uri"]  # the latest blessed model
    assert tree(gated["config"].serving_dir) == gated["serving_after_first"]
    reasons = " ".join(candidate["not_blessed_because"])
    assert "the gain over the latest blessed model is not clearly above 0.0000" in reasons
    compared = candidate["comparisons"]["blessed_model"]
    assert compared["verdict"] == "worse" and compared["upper"] < 0, compared
    assert f"timestamp vs the latest blessed model: {compared['words']}" in open(
        os.path.join(gated["config"].output_dir, "report.md")).read()


def test_upstream_components_come_from_the_cache_on_the_second_run(gated):
    states = {t["component"]: t["state"] for t in gated["second"]["timings"]["timestamp"]}
    for component in ("RatingsExampleGen", "CatalogExampleGen", "StatisticsGen", "SchemaGen", "Transform"):
        assert states[component] == "cached", component
    assert states["RetrievalTrainer"] == "done" and states["Evaluator"] == "done"


def test_report_files(gated):
    out = gated["config"].output_dir
    report = json.load(open(os.path.join(out, "report.json")))
    assert set(report) >= {"dataset", "split", "config", "models"}
    assert report["models"]["timestamp"]["blessed"] is False
    assert set(report["baselines"]["popularity"]) == {str(k) for k in TOP_KS}  # JSON keys
    assert "| timestamp |" in open(os.path.join(out, "report.md")).read()
    assert open(os.path.join(out, "top_k.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_recommend_reads_the_latest_pushed_model(gated, cli):
    out = cli("recommend", "--user", "7", "-k", "5", "--json", "--output", gated["config"].output_dir, check=True)
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["model"] == gated["first"]["models"]["baseline"]["pushed_to"]
    assert len(answer["recommendations"]) == 5
    scores = [r["score"] for r in answer["recommendations"]]
    assert scores == sorted(scores, reverse=True)
    assert all(r["title"] for r in answer["recommendations"])


def test_saved_model_cli_calls_serving_default_with_raw_inputs(gated):
    model = gated["first"]["models"]["baseline"]["pushed_to"]
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    out = subprocess.run(
        [cli, "run", "--dir", model, "--tag_set", "serve", "--signature_def", "serving_default",
         "--input_exprs", "user_id=['7', 'unknown-user'];timestamp=[880000000, 880000000];"
         "history=[['1', '2'], ['', '']];history_timestamps=[[879999000, 879998000], [0, 0]]"],
        capture_output=True, text=True, env={**os.environ, "TF_USE_LEGACY_KERAS": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "movie_titles" in out.stdout and "scores" in out.stdout


def test_cli_stops_on_bad_data_with_file_line_and_reason(tmp_path, cli):
    data = synthetic.generate(str(tmp_path / "data"), num_users=5, num_movies=5, num_ratings=50)
    with open(os.path.join(data, "u.data"), "a") as f:
        f.write("1\t2\tthree\t880000000\n")
    out = cli("run", "--data", data, "--output", str(tmp_path / "out"))
    assert out.returncode == 2
    assert "u.data:51: rating 'three' is not a number" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert not os.path.exists(tmp_path / "out" / "serving")
