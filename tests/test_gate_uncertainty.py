"""The gate proven on cases whose answer is known, through the whole pipeline (the default config, unchanged).

* A/A: the same config trained twice with two seeds on one output directory and
  metadata store. Neither model is better by construction: the second is never
  blessed over the first, and serving keeps the first.
* Planted context: session data in which a share of ratings is of movies tied to
  the time of day (synthetic.generate(context_effect=...)). The timestamp
  variant, which reads the rating's time, is blessed over the baseline variant
  with an interval clear of zero; on the same generator without the context it
  is not.
"""

import json
import os

import pytest

from app.job import run_job
from components.movielens import synthetic
from pipeline.config import named_config

# ml-100k's users and movies, fewer ratings: sessions as MovieLens users rate.
DATA = dict(layout="ml-100k", num_users=943, num_movies=1682, num_ratings=60_000, seed=3, num_tastes=12, days=200,
            sessions=True)
PLANTED = 0.5


def _tree(path):
    out = {}
    for root, _, names in os.walk(path):
        for name in names:
            full = os.path.join(root, name)
            out[os.path.relpath(full, path)] = (os.path.getsize(full), os.path.getmtime(full))
    return out


def _config(data, output):
    return named_config("default", data_path=data, output_dir=output)


@pytest.fixture(scope="module")
def aa(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("aa")
    data = synthetic.generate(str(tmp / "data"), **DATA)
    config = _config(data, str(tmp / "out"))
    first = run_job(config.with_model(seed=42), variants=["baseline"])
    serving = _tree(config.serving_dir)
    second = run_job(config.with_model(seed=7), variants=["baseline"])
    return {"config": config, "first": first["models"]["baseline"], "second": second["models"]["baseline"],
            "serving_after_first": serving, "report": json.load(open(os.path.join(config.output_dir, "report.json")))}


def test_a_a_the_second_seed_is_not_blessed_over_the_first_and_serving_keeps_the_first(aa):
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
    assert _tree(aa["config"].serving_dir) == aa["serving_after_first"]


def test_a_a_the_report_says_it_in_words(aa):
    report = aa["report"]
    assert report["gate"]["confidence"] == 0.95 and "bootstrap over users" in report["gate"]["comparison"]
    compared = report["models"]["baseline"]["comparisons"]["blessed_model"]
    assert compared["words"].startswith(compared["verdict"] + ": ")
    markdown = open(os.path.join(aa["config"].output_dir, "report.md")).read()
    assert f"- baseline vs the latest blessed model: {compared['words']}" in markdown
    html = open(os.path.join(aa["config"].output_dir, "report.html")).read()
    assert compared["words"] in html


def _planted_run(tmp, effect):
    data = synthetic.generate(str(tmp / "data"), context_effect=effect, **DATA)
    return run_job(_config(data, str(tmp / "out")), variants=["baseline", "timestamp"])["models"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return {"with": _planted_run(tmp_path_factory.mktemp("planted"), PLANTED),
            "without": _planted_run(tmp_path_factory.mktemp("unplanted"), 0.0)}


def test_planted_context_the_timestamp_variant_is_blessed_clear_of_zero(planted):
    baseline, timestamp = planted["with"]["baseline"], planted["with"]["timestamp"]
    assert baseline["blessed"]
    compared = timestamp["comparisons"]["blessed_model"]
    assert timestamp["compared_with"] == baseline["model_uri"]
    assert compared["verdict"] == "better" and compared["lower"] > 0, compared
    assert timestamp["blessed"] and timestamp["pushed_to"]
    assert timestamp["comparisons"]["floor_baseline"]["lower"] > 0


def test_without_the_context_the_timestamp_variant_is_not_blessed(planted):
    baseline, timestamp = planted["without"]["baseline"], planted["without"]["timestamp"]
    assert baseline["blessed"]
    compared = timestamp["comparisons"]["blessed_model"]
    assert compared["verdict"] != "better", compared
    assert timestamp["blessed"] is False and timestamp["pushed_to"] is None
