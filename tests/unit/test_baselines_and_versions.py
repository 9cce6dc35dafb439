"""Baselines against a brute-force oracle; serving version numbers."""

import numpy as np
import pytest

from components import atomic_pusher, baselines
from trainer.config import TOP_KS


def test_popularity_matches_a_brute_force_ranking():
    rng = np.random.default_rng(3)
    train = [str(m) for m in rng.zipf(1.6, size=3000) % 400 + 1]
    evaluation = [str(m) for m in rng.zipf(1.6, size=700) % 450 + 1]  # some never rated in train
    got = baselines.popularity_top_k(train, evaluation, TOP_KS)
    counts = {m: train.count(m) for m in set(train)}
    for k in TOP_KS:
        top = sorted(counts, key=lambda m: (-counts[m], int(m)))[:k]
        assert got[k] == pytest.approx(np.mean([m in top for m in evaluation])), k
    assert list(got) == list(TOP_KS)


def test_popularity_breaks_ties_by_the_smaller_movie_id_and_accepts_bytes():
    # Movies 7 and 3 have two ratings each: 3 ranks first.
    got = baselines.popularity_top_k([b"7", b"3", b"7", b"3", b"12"], [b"3", b"7", b"12"], (1, 2, 3))
    assert got == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: 1.0}


def test_best_baseline_is_the_value_floor():
    assert baselines.best_at({"popularity": {100: 0.3}, "other": {100: 0.45}}, 100) == 0.45


def test_versions_skip_staging_names_and_read_object_store_listings(tmp_path, monkeypatch):
    for name in ("1000", "1002", ".tmp-1003-77", "notes"):
        (tmp_path / name).mkdir()
    assert atomic_pusher.existing_versions(str(tmp_path)) == [1000, 1002]
    assert atomic_pusher.next_version(str(tmp_path), now=500) == "1003"  # past the newest, even if the clock is behind
    assert atomic_pusher.next_version(str(tmp_path), now=5000.7) == "5000"
    assert atomic_pusher.existing_versions(str(tmp_path / "missing")) == []
    # gs:// listings end directory names with "/".
    monkeypatch.setattr(atomic_pusher.fileio, "listdir", lambda path: ["1000/", "1700000000/", ".tmp-1/"])
    assert atomic_pusher.existing_versions(str(tmp_path)) == [1000, 1700000000]
