"""The gate proven on cases whose answer is known, through the whole pipeline (the default config, unchanged).

* A/A: the same config trained twice with two seeds on one output directory and
  metadata store. Neither model is better by construction: the second is never
  blessed over the first, and serving keeps the first.
* Planted context: on sessions whose movies depend on the time of day
  (synthetic.generate(context_effect=...)), the default timestamp variant (the
  one `make run` trains) is blessed over the baseline variant with an interval
  clear of zero; on the same generator without it (the A/A data), it is not.
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
# Half the ratings' movies drawn from the movies of the rating's period of the day.
PLANTED_EFFECT = 0.5
PLANTED_FLOOR = 0.1


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
    report = {name: open(os.path.join(config.output_dir, name)).read() for name in ("report.json", "report.md",
                                                                                    "report.html")}
    # No context in these data: the timestamp variant against the first baseline model, the latest blessed.
    timestamp = run_job(config, variants=["timestamp"])["models"]["timestamp"]
    return {"config": config, "first": first["models"]["baseline"], "second": second["models"]["baseline"],
            "timestamp": timestamp, "serving_after_first": serving, "report": report}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("planted")
    data = synthetic.generate(str(tmp / "data"), context_effect=PLANTED_EFFECT, **DATA)
    # A fixed floor: on these data the baseline variant does not beat recent popularity (the default floor), so
    # it would not be blessed, and the timestamp variant would meet only the floor, not the baseline variant.
    config = _config(data, str(tmp / "out")).replace(value_floor=PLANTED_FLOOR)
    return run_job(config, variants=["baseline", "timestamp"])["models"]


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
    report = json.loads(aa["report"]["report.json"])
    assert report["gate"]["confidence"] == 0.95 and "bootstrap over users" in report["gate"]["comparison"]
    compared = report["models"]["baseline"]["comparisons"]["blessed_model"]
    assert compared["words"].startswith(compared["verdict"] + ": ")
    assert f"- baseline vs the latest blessed model: {compared['words']}" in aa["report"]["report.md"]
    assert compared["words"] in aa["report"]["report.html"]


def test_planted_context_the_timestamp_variant_is_blessed_with_an_interval_clear_of_zero(planted):
    baseline, timestamp = planted["baseline"], planted["timestamp"]
    assert baseline["blessed"] and baseline["pushed_to"]
    assert timestamp["compared_with"] == baseline["model_uri"]
    compared = timestamp["comparisons"]["blessed_model"]
    assert compared["verdict"] == "better" and compared["lower"] > 0.0, compared
    assert compared["diff"] == pytest.approx(timestamp["eval"][100] - baseline["eval"][100], abs=1e-6)
    assert timestamp["blessed"] is True and timestamp["pushed_to"]


def test_without_context_the_timestamp_variant_is_not_blessed_and_serving_keeps_the_first_model(aa, tree):
    timestamp = aa["timestamp"]
    assert timestamp["compared_with"] == aa["first"]["model_uri"]
    compared = timestamp["comparisons"]["blessed_model"]
    assert compared["verdict"] in ("not distinguishable", "worse") and compared["lower"] <= 0.0, compared
    assert timestamp["blessed"] is False and timestamp["pushed_to"] is None
    assert tree(aa["config"].serving_dir) == aa["serving_after_first"]
