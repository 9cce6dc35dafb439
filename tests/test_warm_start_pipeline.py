"""The pipeline with warm_start on, twice: the second Trainer starts from the first (blessed) model,
on data whose vocabulary gained and lost movies."""

import json
import os

import pytest

from app.job import run_job
from movielens import synthetic
from pipeline.config import named_config
from pipeline.pipeline import create_components
from trainer import warm_start
from trainer.config import METRICS_FILE
from transform import features as F

MOVIE_TABLE = "candidate_tower/movie_embedding/embeddings"


def _metrics(model):
    with open(os.path.join(model["model_run_uri"], METRICS_FILE)) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("warm")
    before = synthetic.generate(str(tmp / "before"), num_users=60, num_movies=120, num_ratings=2000, seed=4)
    # Later data: 40 more movies and 20 more users (ids 1..120 and 1..60 are shared).
    after = synthetic.generate(str(tmp / "after"), num_users=80, num_movies=160, num_ratings=2600, seed=5)
    config = named_config("default", data_path=before, output_dir=str(tmp / "out"), value_floor=0.0).with_model(
        epochs=2, warm_start=True, warm_start_epochs=1, batch_size=256, embedding_dim=16)
    first = run_job(config, variants=["baseline"])["models"]["baseline"]
    second = run_job(config.replace(data_path=after), variants=["baseline"])["models"]["baseline"]
    return {"first": first, "second": second}


def test_the_first_run_has_no_base_and_trains_cold(runs):
    first = runs["first"]
    metrics = _metrics(first)
    assert metrics["warm_start"] == {"base_model": None, "warm_started": False,
                                     "cold_start_because": "no blessed model to start from"}
    assert metrics["epochs"] == 2 and len(metrics["loss"]) == 2
    assert first["blessed"] is True  # so that it is the second run's base
    # The sidecar is in the pushed copy too.
    assert os.path.exists(os.path.join(first["pushed_to"], warm_start.SIDECAR_DIR, warm_start.MANIFEST_FILE))


def test_the_second_run_warm_starts_from_the_first_with_rows_moved_by_id(runs):
    first, second = runs["first"], runs["second"]
    metrics = _metrics(second)
    summary = metrics["warm_start"]
    assert summary["base_model"] == os.path.join(first["model_uri"], "Format-Serving")
    assert summary["warm_started"] is True
    # Oracle: the two runs' movie vocabularies, as each Trainer recorded them.
    _, _, old = warm_start.read_sidecar(summary["base_model"])
    _, _, new = warm_start.read_sidecar(os.path.join(second["model_uri"], "Format-Serving"))
    old, new = set(old[F.MOVIE_VOCAB]), set(new[F.MOVIE_VOCAB])
    assert new - old and old & new  # the vocabulary changed: new movies, and shared ones
    assert summary["tables"] == {MOVIE_TABLE: {"vocabulary": F.MOVIE_VOCAB, "shared_ids": len(old & new),
                                               "new_ids": len(new - old), "dropped_ids": len(old - new)}}
    assert summary["rows_copied"] == len(old & new) + 1  # and the OOV row
    assert summary["new_ids"] == len(new - old) > 0
    assert summary["weights_copied"] > 0 and summary["skipped"] == {}
    assert metrics["epochs"] == 1 and len(metrics["loss"]) == 1  # warm_start_epochs
    assert second["warm_start"] == summary  # what the report shows


def test_without_warm_start_the_trainer_has_no_base_model(tmp_path):
    config = named_config("default", data_path="d", output_dir=str(tmp_path))
    [trainer] = [c for c in create_components(config) if c.id == "RetrievalTrainer"]
    assert "base_model" not in trainer.inputs
    [trainer] = [c for c in create_components(config.with_model(warm_start=True)) if c.id == "RetrievalTrainer"]
    assert trainer.inputs["base_model"].producer_component_id == "LatestBlessedModelResolver"
