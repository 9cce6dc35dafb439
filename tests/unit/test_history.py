"""Histories on planted data: no rating sees itself, a same-second rating or a later one; train never sees eval."""

import numpy as np

from movielens import history


def _brute_force(users, timestamps, is_eval, max_length):
    out = []
    for r in range(len(users)):
        earlier = [s for s in range(len(users))
                   if users[s] == users[r] and timestamps[s] < timestamps[r] and (not is_eval[s] or is_eval[r])]
        earlier.sort(key=lambda s: (timestamps[s], s), reverse=True)  # most recent first, later row first on ties
        out.append((earlier[:max_length], len(earlier)))
    return out


def test_planted_histories_follow_the_live_system_rule():
    # user 1: t=10 (train), t=20 (eval), t=20 (train, same second), t=30 (train), t=40 (eval)
    users = np.array([1, 1, 1, 1, 1, 2, 2])
    timestamps = np.array([10, 20, 20, 30, 40, 5, 5])
    is_eval = np.array([False, True, False, False, True, False, True])
    h = history.build(users, timestamps, is_eval, max_length=50)
    assert h.of(0).tolist() == []  # the first rating: nothing before
    assert h.of(1).tolist() == [0]  # eval at 20: only t=10 (not the same-second train rating 2)
    assert h.of(2).tolist() == [0]  # train at 20: t=10; not the eval rating at 20
    assert h.of(3).tolist() == [2, 0]  # train at 30: train ratings only (not eval row 1)
    assert h.of(4).tolist() == [3, 2, 1, 0]  # eval at 40: every earlier rating, most recent first
    assert h.of(6).tolist() == []  # same second as user 2's train rating: not seen
    assert h.full_lengths.tolist() == [0, 1, 1, 2, 4, 0, 0]


def test_histories_match_a_brute_force_oracle_and_truncate():
    rng = np.random.default_rng(0)
    n = 400
    users = rng.integers(0, 12, size=n)
    timestamps = rng.integers(0, 60, size=n)  # many same-second ratings
    is_eval = rng.random(n) < 0.3
    h = history.build(users, timestamps, is_eval, max_length=5)
    for r, (expected, full) in enumerate(_brute_force(users, timestamps, is_eval, 5)):
        assert h.of(r).tolist() == expected, r
        assert h.full_lengths[r] == full, r
        assert r not in h.of(r)


def test_every_rating_eval_or_every_rating_train_matches_the_oracle():
    # A local span run ingests only its span, every rating eval: no train rating at all (and the reverse).
    rng = np.random.default_rng(2)
    users, timestamps = rng.integers(0, 6, size=120), rng.integers(0, 30, size=120)
    for flag in (True, False):
        is_eval = np.full(120, flag)
        h = history.build(users, timestamps, is_eval, max_length=7)
        for r, (expected, full) in enumerate(_brute_force(users, timestamps, is_eval, 7)):
            assert h.of(r).tolist() == expected and h.full_lengths[r] == full, (flag, r)


def test_only_lists_the_chosen_ratings_and_keeps_their_histories_whole():
    rng = np.random.default_rng(1)
    n = 300
    users, timestamps = rng.integers(0, 8, size=n), rng.integers(0, 40, size=n)
    is_eval = rng.random(n) < 0.3
    full = history.build(users, timestamps, is_eval, max_length=1000)
    listed = history.build(users, timestamps, is_eval, max_length=1000, only=is_eval)
    for r in range(n):
        assert listed.of(r).tolist() == (full.of(r).tolist() if is_eval[r] else []), r
    assert listed.full_lengths.tolist() == full.full_lengths.tolist()
    assert len(listed.rows) == sum(len(full.of(r)) for r in np.flatnonzero(is_eval)) > 0


def test_length_buckets():
    assert [history.length_bucket(n) for n in (0, 1, 9, 10, 49, 50, 300)] == ["0", "1-9", "1-9", "10-49", "10-49", "50+", "50+"]


def test_a_lookup_of_some_ratings_in_any_order_equals_their_rows_of_the_whole_build():
    # ExampleGen looks histories up chunk by chunk (HistoryIndex.lookup); the whole build is the oracle above.
    rng = np.random.default_rng(3)
    n = 500
    users, timestamps = rng.integers(0, 10, size=n), rng.integers(0, 50, size=n)
    is_eval = rng.random(n) < 0.3
    index = history.HistoryIndex(users, timestamps, is_eval)
    whole = history.build(users, timestamps, is_eval, max_length=6)
    whole_rated = history.build(users, timestamps, is_eval, max_length=1000, only=is_eval)
    for queries in (rng.permutation(n)[:77], np.array([5, 5, 0]), np.array([], np.int64)):
        some = index.lookup(queries, max_length=6)
        rated = index.lookup(queries, max_length=1000, only=is_eval[queries])
        assert len(some.offsets) == len(queries) + 1 and some.full_lengths.tolist() == whole.full_lengths[queries].tolist()
        for i, r in enumerate(queries):
            assert some.of(i).tolist() == whole.of(r).tolist(), r
            assert rated.of(i).tolist() == whole_rated.of(r).tolist(), r
