"""The gate's paired comparison (core.comparison) and its TFMA combiner (trainer.tfma_metric.PairedHits).

Proven on cases whose answer is known: an A/A pair (two recommenders with the
same hit rate, independent hits) is "not distinguishable" about as often as the
confidence level says; a planted gain is "better"; the interval resamples users,
so clustered ratings give a wider interval than the same ratings independent.
"""

import json

import numpy as np
import pytest
from tensorflow_model_analysis.metrics import metric_types

from core import comparison
from trainer import tfma_metric
from trainer.export import hit_output
from transform import features as F


def _clustered(rng, users, per_user, rate_a, rate_b):
    """Per-rating hits of two recommenders; each user (a cluster) has a taste that moves both, and a gain of A
    over B of their own around the mean gain rate_a - rate_b."""
    ids = np.repeat(np.arange(users), per_user)
    taste = rng.normal(0, 1.5, users)[ids]
    own_gain = rng.normal(0, 0.15, users)[ids]
    base = 1 / (1 + np.exp(-taste))
    a = rng.random(ids.size) < np.clip(base + rate_a + own_gain / 2, 0, 1)
    b = rng.random(ids.size) < np.clip(base + rate_b - own_gain / 2, 0, 1)
    return ids, a, b


def test_the_point_difference_is_the_difference_of_the_accuracies_and_inside_the_interval():
    rng = np.random.default_rng(1)
    ids, a, b = _clustered(rng, 300, 60, 0.02, 0.0)
    result = comparison.from_hits(ids, a, b)
    assert result.diff == pytest.approx(a.mean() - b.mean())
    assert result.lower <= result.diff <= result.upper
    assert (result.users, result.ratings, result.confidence) == (300, 18000, 0.95)
    assert comparison.from_hits(ids, a, b) == result  # seeded


def test_a_a_pairs_are_rarely_distinguishable_and_a_planted_gain_is_better():
    rng = np.random.default_rng(2)
    verdicts = [comparison.from_hits(*_clustered(rng, 200, 30, 0.0, 0.0), draws=1000).verdict for _ in range(40)]
    # 95% two-sided: about 2 of 40 outside by chance; more than 6 would mean the interval is too narrow.
    assert verdicts.count(comparison.NOT_DISTINGUISHABLE) >= 34
    planted = comparison.from_hits(*_clustered(rng, 200, 30, 0.06, 0.0))
    assert planted.verdict == comparison.BETTER and planted.lower > 0.02
    worse = comparison.from_hits(*_clustered(rng, 200, 30, 0.0, 0.06))
    assert worse.verdict == comparison.WORSE and worse.words().startswith("worse: -0.")


def test_resampling_users_widens_the_interval_of_clustered_ratings():
    rng = np.random.default_rng(3)
    ids, a, b = _clustered(rng, 100, 100, 0.0, 0.0)
    # The same ratings with users cut into singletons: every rating independent.
    clustered = comparison.from_hits(ids, a, b)
    independent = comparison.from_hits(np.arange(ids.size), a, b)
    assert clustered.upper - clustered.lower > 1.1 * (independent.upper - independent.lower)


def test_a_higher_confidence_gives_a_wider_interval_and_words_carry_the_sign():
    rng = np.random.default_rng(4)
    ids, a, b = _clustered(rng, 300, 20, 0.01, 0.0)
    narrow, wide = comparison.from_hits(ids, a, b, 0.8), comparison.from_hits(ids, a, b, 0.99)
    assert wide.lower < narrow.lower <= narrow.upper < wide.upper
    words = comparison.Comparison(0.002, -0.003, 0.009, 0.95, 301, 20000).words(3)
    assert words == "not distinguishable: +0.002 [-0.003, +0.009]"
    assert comparison.Comparison.from_json(json.loads(json.dumps(narrow.to_json()))) == narrow
    assert comparison.check_confidence(0.95) is None and "not a confidence level" in comparison.check_confidence(1.0)


def _element(users, movies, times, candidate, blessed=None):
    predictions = {hit_output(100): np.array(candidate, np.float32)}
    if blessed is not None:
        predictions = {"candidate": predictions, "baseline": {hit_output(100): np.array(blessed, np.float32)}}
    return metric_types.StandardMetricInputs({
        "predictions": predictions,
        "features": {F.USER_ID: np.array(users, object), F.MOVIE_ID: np.array(movies, object),
                     F.TIMESTAMP: np.array(times, np.int64)}})


def _keys(against):
    names = {part: tfma_metric.gain_name(100, against, part) for part in tfma_metric.GAIN_PARTS}
    return {part: metric_types.MetricKey(name=name, model_name="candidate") for part, name in names.items()}


def test_the_combiner_against_the_blessed_model_equals_the_oracle_however_beam_splits():
    rng = np.random.default_rng(5)
    ids, a, b = _clustered(rng, 50, 8, 0.05, 0.0)
    keys = _keys("blessed")
    combiner = tfma_metric.PairedHits(keys, "candidate", "baseline", hit_output(100), "", "", 100, 0.95)
    parts = [combiner.create_accumulator() for _ in range(3)]
    for i in range(ids.size):  # one example at a time, as the Evaluator passes them, in three accumulators
        parts[i % 3] = combiner.add_input(parts[i % 3], _element(
            [str(ids[i]).encode()], [b"1"], [i], [a[i]], [b[i]]))
    merged = combiner.merge_accumulators(parts)
    out = combiner.extract_output(merged)
    oracle = comparison.from_hits(np.array([str(i).encode() for i in ids], object), a, b)  # users in one order
    assert out == {keys["lower"]: oracle.lower, keys[""]: oracle.diff, keys["upper"]: oracle.upper,
                   keys["users"]: 50.0, keys["noise"]: 0.0}
    noisy = tfma_metric.PairedHits(keys, "candidate", "baseline", hit_output(100), "", "", 100, 0.95, noise=0.01)
    widened = noisy.extract_output(merged)
    assert widened[keys["lower"]] == pytest.approx(oracle.widened(0.01).lower) and widened[keys["noise"]] == 0.01


def test_the_combiner_against_a_baseline_reads_its_per_rating_hits_by_rating(tmp_path):
    path = str(tmp_path / tfma_metric.PER_RATING_HITS_FILE)
    tfma_metric.write_per_rating_hits(path, 100, [b"1", b"1", b"2"], [b"10", b"11", b"10"], [5, 6, 5],
                                      {"ease": np.array([1, 0, 0], bool), "popularity": np.array([0, 0, 0], bool)})
    keys = _keys("baseline")
    combiner = tfma_metric.PairedHits(keys, "", None, hit_output(100), path, "ease", 100, 0.95)
    # The candidate hits all three, ease the first only, in another order than the file's.
    acc = combiner.add_input(combiner.create_accumulator(),
                             _element([b"2", b"1", b"1"], [b"10", b"11", b"10"], [5, 6, 5], [1, 1, 1]))
    out = combiner.extract_output(acc)
    assert out[keys[""]] == pytest.approx(2 / 3) and out[keys["users"]] == 2
    with pytest.raises(ValueError, match="no hit of baseline 'ease' for the eval rating"):
        combiner.add_input(acc, _element([b"3"], [b"10"], [5], [1]))
    with pytest.raises(ValueError, match="no per-rating hits of baseline 'knn'"):
        tfma_metric.read_per_rating_hits(path, "knn", 100)


def test_paired_gain_against_the_blessed_model_computes_nothing_without_one():
    import tensorflow_model_analysis as tfma

    alone = tfma.EvalConfig(model_specs=[tfma.ModelSpec(name="")])
    assert tfma_metric.PairedGain(against="blessed").computations(eval_config=alone, model_names=[""]) == []
    both = tfma.EvalConfig(model_specs=[tfma.ModelSpec(name="candidate"), tfma.ModelSpec(name="baseline",
                                                                                         is_baseline=True)])
    [computation] = tfma_metric.PairedGain(against="blessed").computations(
        eval_config=both, model_names=["candidate", "baseline"])
    assert sorted(key.name for key in computation.keys) == sorted(
        tfma_metric.gain_name(100, "blessed", part) for part in tfma_metric.GAIN_PARTS)
    assert {key.model_name for key in computation.keys} == {"candidate"}


def test_the_training_noise_widens_each_side_in_quadrature_and_is_measured_from_a_a_pairs():
    users_only = comparison.Comparison(0.004, 0.001, 0.008, 0.95, 300, 20000)
    widened = users_only.widened(0.005)
    z = 1.959964
    assert widened.lower == pytest.approx(0.004 - ((0.003) ** 2 + (z * 0.005) ** 2) ** 0.5, rel=1e-5)
    assert widened.upper == pytest.approx(0.004 + ((0.004) ** 2 + (z * 0.005) ** 2) ** 0.5, rel=1e-5)
    assert widened.verdict == comparison.NOT_DISTINGUISHABLE and users_only.verdict == comparison.BETTER
    assert widened.training_noise == 0.005 and users_only.widened(0.0) == users_only
    # A/A pairs drawn with a known training noise of 0.006 on top of the users' 0.0025: measured back.
    rng = np.random.default_rng(6)
    se, noise = 0.0025, 0.006
    pairs = []
    for _ in range(400):
        diff = rng.normal(0, (se ** 2 + noise ** 2) ** 0.5)
        pairs.append(comparison.Comparison(diff, diff - z * se, diff + z * se, 0.95, 300, 20000))
    assert comparison.noise_of(pairs) == pytest.approx(noise, rel=0.1)
    assert comparison.noise_of(pairs[:1] * 0) == 0.0
    assert "not a standard deviation" in comparison.check_training_noise(-0.1)
