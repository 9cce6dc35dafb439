"""Baselines against brute-force oracles; serving version numbers."""

import numpy as np
import pytest

from baselines import algorithms as baselines
from components import atomic_pusher
from trainer.config import TOP_KS


def _split(users, items, timestamps, histories):
    return baselines.Split(np.array(users, dtype=object), np.array(items), np.array(timestamps),
                           [np.array(h, np.int64) for h in histories])


def _oracle_rank(scores, target, excluded, popularity):
    """Rank of `target` under the strict order (score, popularity, smaller index), excluded items skipped."""
    order = sorted((i for i in range(len(scores)) if i not in set(excluded) or i == target),
                   key=lambda i: (-scores[i], -popularity[i], i))
    return order.index(target)


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(3)
    num_items = 40
    n = 1500
    users = rng.integers(0, 60, size=n)
    items = (rng.zipf(1.5, size=n) - 1) % num_items
    timestamps = rng.integers(0, 100 * 86400, size=n)
    train = _split(users, items, timestamps, [[]] * n)
    m = 200
    eval_items = rng.integers(0, num_items, size=m)
    histories = [rng.choice(num_items, size=rng.integers(0, 6), replace=False) for _ in range(m)]
    histories = [h[h != t] for h, t in zip(histories, eval_items, strict=True)]
    evaluation = _split(rng.integers(0, 60, size=m), eval_items, np.full(m, 101 * 86400), histories)
    return train, evaluation, num_items


@pytest.mark.parametrize("exclude, gram_block", [(False, 2048), (True, 2048), (True, 7)])
def test_every_baseline_matches_a_brute_force_ranking(planted, exclude, gram_block, monkeypatch):
    # gram_block 7: the co-occurrence and cosine made by blocks of items (40 movies: 6 blocks, the last short).
    monkeypatch.setattr(baselines, "_GRAM_BLOCK", gram_block)
    train, evaluation, num_items = planted
    got = baselines.compute(train, evaluation, num_items, exclude_history=exclude, ks=(1, 5, 10))
    popularity = np.bincount(train.items, minlength=num_items).astype(float)
    recent = train.timestamps >= train.timestamps.max() - baselines.RECENT_DAYS * 86400
    x = np.zeros((60, num_items))
    x[train.users.astype(int), train.items] = 1
    gram = x.T @ x
    cosine = gram / np.maximum(np.sqrt(np.outer(np.diag(gram), np.diag(gram))), 1e-12)
    np.fill_diagonal(cosine, 0)
    p = np.linalg.inv(gram + baselines.EASE_LAMBDA * np.eye(num_items))
    ease = -p / np.diag(p)
    np.fill_diagonal(ease, 0)
    scorers = {
        "popularity": lambda h: popularity,
        "recent_popularity": lambda h: np.bincount(train.items[recent], minlength=num_items).astype(float),
        "item_knn": lambda h: cosine[h].sum(axis=0),
        "ease": lambda h: ease[h].sum(axis=0),
    }
    assert set(got) == set(scorers)
    for name, score in scorers.items():
        ranks = np.array([
            _oracle_rank(np.round(score(h), 5), t, h if exclude else [], popularity)
            for h, t in zip(evaluation.histories, evaluation.items, strict=True)
        ])
        for k in (1, 5, 10):
            assert got[name][k] == pytest.approx(np.mean(ranks < k), abs=0.011), (name, k)


def test_skipping_the_history_never_hurts_popularity(planted):
    train, evaluation, num_items = planted
    plain = baselines.compute(train, evaluation, num_items, exclude_history=False, ks=TOP_KS[:3])
    skipped = baselines.compute(train, evaluation, num_items, exclude_history=True, ks=TOP_KS[:3])
    assert all(skipped["popularity"][k] >= plain["popularity"][k] for k in TOP_KS[:3])


def test_popularity_breaks_ties_by_the_smaller_index():
    train = _split([1, 1, 2, 2, 3], [3, 1, 3, 1, 2], [0] * 5, [[]] * 5)
    evaluation = _split([9, 9, 9], [1, 3, 2], [1] * 3, [[]] * 3)
    got = baselines.compute(train, evaluation, 4, exclude_history=False, ks=(1, 2, 3))["popularity"]
    # Items 1 and 3 have two ratings each: 1 ranks first, then 3, then 2.
    assert got == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: 1.0}


def test_best_baseline_is_the_value_floor():
    assert baselines.best_at({"popularity": {100: 0.3}, "ease": {100: 0.45}, "notes": {}}, 100) == 0.45


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


def _old_top_k_hits(scores, targets, excluded, tiebreak, ks):
    """The former top_k_hits (per-row lists of excluded items, a tiebreak vector): the oracle of the new one."""
    rows = np.arange(len(targets))
    target_score = scores[rows, targets][:, None]
    order_key, target_key = tiebreak[None, :], tiebreak[targets][:, None]
    items = np.arange(scores.shape[1])[None, :]
    ahead = (scores > target_score) | ((scores == target_score) & (
        (order_key > target_key) | ((order_key == target_key) & (items < targets[:, None]))))
    for row, items_out in enumerate(excluded):
        ahead[row, items_out] = False
    return np.stack([ahead.sum(axis=1) < k for k in ks])


def test_vectorised_history_sums_and_ranks_match_the_former_loops():
    rng = np.random.default_rng(5)
    num_items, rows = 50, 300
    matrix = rng.standard_normal((num_items, num_items)).astype(np.float32)
    matrix[:, ::3] = 0.0  # equal scores: ties broken by popularity, then index
    histories = [rng.integers(0, num_items, size=rng.integers(0, 12)) for _ in range(rows)]  # empty, repeats
    rated_before = [rng.choice(num_items, size=rng.integers(0, 20), replace=False) for _ in range(rows)]
    history = baselines.Ragged.of(histories)
    assert [list(h) for h in history] == [list(h) for h in histories]
    assert [list(h) for h in baselines.Ragged.concat([history[:7], history[7:]])] == [list(h) for h in histories]
    # The sparse product adds each history's rows in order: bit for bit the former per-history loop.
    got = baselines._history_sum(matrix)(history[10:250])
    want = np.stack([matrix[h].sum(axis=0) if len(h) else np.zeros(num_items, np.float32) for h in histories[10:250]])
    assert got.dtype == np.float32 and np.array_equal(got, want)
    reused = np.full((240, num_items), 7.0, np.float32)  # a buffer holding the last batch's scores
    assert baselines._history_sum(matrix)(history[10:250], reused) is reused and np.array_equal(reused, want)
    tiebreak = rng.integers(0, 5, size=num_items).astype(np.float64)
    scores = baselines._history_sum(matrix)(history)
    targets = rng.integers(0, num_items, size=rows)
    ks = (1, 5, 10, 20)
    union = [np.union1d(h, r) for h, r in zip(histories, rated_before, strict=True)]
    for excluded, parts in (([[]] * rows, []), (union, [history, baselines.Ragged.of(rated_before)])):
        want = _old_top_k_hits(scores, targets, excluded, tiebreak, ks)
        got = baselines.top_k_hits(scores, targets, parts, baselines._positions(tiebreak), ks)
        assert np.array_equal(got, want)
        dirty = np.ones(scores.shape, bool)  # a reused mask: what it held must not matter
        assert np.array_equal(baselines.top_k_hits(scores, targets, parts, baselines._positions(tiebreak), ks, dirty),
                              want)


def test_constant_scores_rank_without_a_score_matrix():
    # Popularity's path: one score vector for every row, ranked by each item's place in the one strict
    # order. It must give top_k_hits' hits on the broadcast matrix: ties in score (broken by the tiebreak,
    # then the index), an item in both excluded lists or twice in one, the target itself excluded.
    rng = np.random.default_rng(11)
    num_items, rows = 30, 400
    score = rng.integers(0, 6, size=num_items).astype(np.float64)
    tiebreak = rng.integers(0, 3, size=num_items).astype(np.float64)
    targets = rng.integers(0, num_items, size=rows)
    history = baselines.Ragged.of([rng.integers(0, num_items, size=rng.integers(0, 8)) for _ in range(rows)])
    rated = baselines.Ragged.of([np.append(rng.integers(0, num_items, size=rng.integers(0, 8)), t)
                                 if i % 5 == 0 else rng.integers(0, num_items, size=rng.integers(0, 8))
                                 for i, t in enumerate(targets)])
    position = baselines._positions(tiebreak)
    ks = (1, 3, 5, 10)
    for parts in ([], [history], [history, rated]):
        want = baselines.top_k_hits(np.broadcast_to(score, (rows, num_items)), targets, parts, position, ks)
        got = baselines._constant_top_k_hits(baselines._places(score, position), targets, parts, ks)
        assert np.array_equal(got, want)
        assert 0 < got[-1].mean() < 1  # neither side trivially all hits or none


def test_batches_on_threads_give_the_one_thread_hits(planted, monkeypatch):
    # 200 eval ratings in batches of 16 on 3 threads (each reusing its buffers; the last batch short)
    # against one batch on one thread: the same hits, rating for rating, for every baseline.
    train, evaluation, num_items = planted
    alone = {}
    baselines.compute(train, evaluation, num_items, exclude_history=True, ks=(1, 5, 10), per_rating=alone)
    monkeypatch.setattr(baselines, "_BATCH", 16)
    monkeypatch.setattr(baselines, "THREADS", 3)
    threaded = {}
    baselines.compute(train, evaluation, num_items, exclude_history=True, ks=(1, 5, 10), per_rating=threaded)
    assert set(threaded) == set(alone) == {"popularity", "recent_popularity", "item_knn", "ease"}
    for name, hits in alone.items():
        for k in (1, 5, 10):
            assert np.array_equal(threaded[name][k], hits[k]), (name, k)
        assert 0 < hits[10].mean() < 1
