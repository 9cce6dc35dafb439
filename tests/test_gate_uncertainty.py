"""The gate proven on cases whose answer is known, through the whole pipeline (the default config, unchanged).

* A/A: the same config trained twice with two seeds on one output directory and
  metadata store. Neither model is better by construction: the second is never
  blessed over the first, and serving keeps the first.

The planted-context check (the timestamp variant blessed on data whose taste
depends on the time of day, not blessed without) is not here: the calendar
variant does not learn the planted effect (docs/evaluation.md; bench/gate_bench.py
planted measures it).
"""

import json
import os

import pytest

from app.job import run_job
from movielens import synthetic
from pipeline.config import named_config

# ml-100k's users and movies, fewer ratings: sessions as MovieLens users rate.
DATA = dict(layout="ml-100k", num_users=943, num_movies=1682, num_ratings=60_000, seed=3, num_tastes=12, days=200,
            sessions=True)


def _config(data, output):
    return named_config("default", data_path=data, output_dir=output)


@pytest.fixture(scope="module")
def aa(tmp_path_factory, tree):
    tmp = tmp_path_factory.mktemp("aa")
    data = synthetic.generate(str(tmp / "data"), **DATA)
    config = _config(data, str(tmp / "out"))
    first = run_job(config.with_model(seed=42), variants=["baseline"])
    serving = tree(config.serving_dir)
    second = run_job(config.with_model(seed=7), variants=["baseline"])
    return {"config": config, "first": first["models"]["baseline"], "second": second["models"]["baseline"],
            "serving_after_first": serving, "report": json.load(open(os.path.join(config.output_dir, "report.json")))}


def test_a_a_the_second_seed_is_not_blessed_over_the_first_and_serving_keeps_the_first(aa, tree):
    first, second = aa["first"], aa["second"]
    assert first["blessed"] and first["pushed_to"]
    assert second["compared_with"] == first["model_uri"]
    compared = second["comparisons"]["blessed_model"]
    assert compared["lower"] <= 0.0 <= compared["upper"] or compared["upper"] < 0, compared
    assert compared["verdict"] in ("not distinguishable", "worse")
    assert compared["diff"] == pytest.approx(second["eval"][100] - first["eval"][100], abs=1e-6)
    assert compared["users"] > 50 and compared["confidence"] == 0.95
    assert second["blessed"] is False and second["pushed_to"] is None
    assert "the gain over the latest blessed model is not clearly above" in " ".join(second["not_blessed_because"])
    assert tree(aa["config"].serving_dir) == aa["serving_after_first"]


def test_a_a_the_report_says_it_in_words(aa):
    report = aa["report"]
    assert report["gate"]["confidence"] == 0.95 and "bootstrap over users" in report["gate"]["comparison"]
    compared = report["models"]["baseline"]["comparisons"]["blessed_model"]
    assert compared["words"].startswith(compared["verdict"] + ": ")
    markdown = open(os.path.join(aa["config"].output_dir, "report.md")).read()
    assert f"- baseline vs the latest blessed model: {compared['words']}" in markdown
    html = open(os.path.join(aa["config"].output_dir, "report.html")).read()
    assert compared["words"] in html
