"""The session generator (`synthetic.generate(sessions=True)`): MovieLens-like rules, and an order that matters.

Read back through the pipeline's own reader, split and history rules, and
scored with the pipeline's own item-kNN baseline: on the temporal split, a
user's 5 most recent movies must predict the next far better than 5 older
ones (recency was the largest lever on ml-100k). On the independent
generator's data the order says nothing: both predict alike.
"""

import numpy as np
import pytest

from baselines import algorithms as baselines
from movielens import history, reader, synthetic

START, DAYS = 880_000_000, 300


def _load(tmp_path, **kw):
    path = synthetic.generate(str(tmp_path), layout="ml-1m", num_users=400, num_movies=1000, num_ratings=30_000,
                              seed=7, num_tastes=10, start=START, days=DAYS, **kw)
    data = reader.load(path)
    assert not data.bad_rows
    return data


def _recent_and_older(data) -> dict:
    """item-kNN top-100 on the temporal split (train 0.8, rated movies skipped), fed 5 of each eval rating's
    history: the 5 most recent ("recent") or the 5 before the 20 most recent ("older"); ratings with >= 25 only."""
    r = data.ratings
    _, users = np.unique(r.user_ids, return_inverse=True)
    movie_ids, items = np.unique(r.movie_ids, return_inverse=True)
    train, evaluation = reader.split_indices(r.timestamps, "temporal", 0.8, seed=42)
    is_eval = np.zeros(len(items), bool)
    is_eval[evaluation] = True
    hist = history.build(users, r.timestamps, is_eval, max_length=25)
    evaluation = np.array([i for i in evaluation if len(hist.of(i)) == 25])
    assert len(evaluation) > 1000, len(evaluation)
    train_split = baselines.Split(users[train], items[train], r.timestamps[train], [])
    out = {}
    for name, part in (("recent", slice(0, 5)), ("older", slice(20, 25))):
        fed = baselines.Split(users[evaluation], items[evaluation], r.timestamps[evaluation],
                              [items[hist.of(i)][part] for i in evaluation],
                              rated=[items[hist.of(i)] for i in evaluation])
        out[name] = baselines.compute(train_split, fed, len(movie_ids), exclude_history=True, ks=(100,))["item_knn"][100]
    return out


def test_sessions_follow_movielens_rules(tmp_path):
    data = _load(tmp_path, sessions=True)
    r = data.ratings
    pairs = set(zip(r.user_ids, r.movie_ids, strict=True))
    assert len(pairs) == len(r.user_ids), "a user rates a movie at most once"
    assert 0.99 * 30_000 <= len(r.user_ids) <= 30_000, len(r.user_ids)
    assert r.timestamps.min() >= START and r.timestamps.max() < START + DAYS * 86400
    per_user = np.unique(r.user_ids, return_counts=True)[1]
    assert per_user.max() <= 1000 // 3 and per_user.min() >= 1
    assert per_user.max() > 5 * np.median(per_user), "activity is skewed, as MovieLens users' is"


def test_sessions_make_the_order_of_a_history_matter(tmp_path):
    sessions = _recent_and_older(_load(tmp_path / "s", sessions=True))
    independent = _recent_and_older(_load(tmp_path / "i"))
    assert sessions["recent"] > sessions["older"] + 0.1, sessions
    assert abs(independent["recent"] - independent["older"]) < 0.03, independent


def test_sessions_refuse_the_time_of_day_knob(tmp_path):
    with pytest.raises(ValueError, match="time_of_day_effect"):
        synthetic.generate(str(tmp_path), sessions=True, time_of_day_effect=0.3)


def _period_share(data) -> float:
    """The largest share of one movie's ratings in one 6-hour period of the day, averaged over the movies
    with at least 20 ratings (0.25 when the time of day says nothing of the movie)."""
    r = data.ratings
    period = (r.timestamps % 86400) // (86400 // 4)
    movies = np.asarray(r.movie_ids)
    shares = []
    for movie in np.unique(movies):
        mine = period[movies == movie]
        if len(mine) >= 20:
            shares.append(np.bincount(mine, minlength=4).max() / len(mine))
    return float(np.mean(shares))


def test_planted_context_ties_movies_to_the_time_of_day_and_zero_is_the_plain_sessions(tmp_path):
    plain = _load(tmp_path / "plain", sessions=True)
    zero = _load(tmp_path / "zero", sessions=True, context_effect=0.0)
    assert all((tmp_path / "plain" / f).read_bytes() == (tmp_path / "zero" / f).read_bytes()
               for f in ("ratings.dat", "movies.dat", "users.dat"))
    planted = _load(tmp_path / "planted", sessions=True, context_effect=0.5)
    assert len(zero.ratings.user_ids) == len(plain.ratings.user_ids)
    assert _period_share(plain) < 0.4, _period_share(plain)
    assert _period_share(planted) > _period_share(plain) + 0.05, (_period_share(planted), _period_share(plain))
    pairs = set(zip(planted.ratings.user_ids, planted.ratings.movie_ids, strict=True))
    assert len(pairs) == len(planted.ratings.user_ids), "still a movie at most once per user"
    with pytest.raises(ValueError, match="context_effect applies to session data"):
        synthetic.generate(str(tmp_path / "x"), context_effect=0.3)
    with pytest.raises(ValueError, match=r"context_effect: 1.5 is not in \[0, 1\]"):
        synthetic.generate(str(tmp_path / "x"), sessions=True, context_effect=1.5)


def test_nearest_movies_in_blocks_are_the_whole_matrix_ones(monkeypatch):
    rng = np.random.RandomState(3)
    vectors = rng.randn(700, 8)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    whole = synthetic._nearest(vectors)
    monkeypatch.setattr(synthetic, "_BLOCKED_ABOVE_MOVIES", 100)
    blocked = synthetic._nearest(vectors, block=64)
    assert blocked.shape == (700, synthetic._NEIGHBOURS)
    np.testing.assert_array_equal(blocked, whole)
    assert not (blocked == np.arange(700)[:, None]).any()  # never the movie itself
