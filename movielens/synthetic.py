"""Synthetic MovieLens data in the official file layouts (tests, benchmarks, scale runs).

`generate(...)` writes N users, M movies and R ratings in the ml-100k, ml-1m
or CSV layout, with structure a retrieval model can learn:

* popularity skew: movies are drawn with Zipf-like weights;
* user taste: each user prefers one of `num_tastes` movie groups;
* time of day (`time_of_day_effect` in [0, 1]): each rating happens in one of
  four 6-hour periods of the day, and with this probability the movie comes
  from that period's own group of movies, whoever the user is.

`context_effect` (in [0, 1], with sessions) plants the same kind of
context in session data: each movie belongs to one of the four 6-hour periods
of the day, and with this probability a rating's movie is drawn from the
movies of the period its time falls in, instead of by the user's history or
taste: by popularity at that time ** _CONTEXT_POPULARITY (flatter, so that the
period's own movies, not the few hits of every period, carry the effect), and
drawn again among them (_CONTEXT_ATTEMPTS times) when the user rated the one
drawn. Only a model that reads the rating's time of day can learn it (the
timestamp variant's hour affinity); at 0 the data are those of
`sessions=True` byte for byte.

Those ratings are drawn independently, in no order: a user's history says
little beyond their taste, and a history model does not learn from them (at
1M, 0.208 top-100 against popularity's 0.403). `sessions=True` draws them the
way MovieLens users rate instead (`_sessions`): each user rates in one active
period, movies in sequence, often one similar to a movie just rated; no movie
twice; new movies are released over the period and are popular for a while.

MovieLens' licence forbids redistributing the real files, so tests generate
their data with this module.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from typing import Dict, List

import numpy as np

from movielens.reader import GENRES

_WORDS = (
    "red night love war star lost city dark blue king dead man woman house story "
    "last first secret river road summer winter dream time game heart fire moon "
    "sun ghost island party little big return"
).split()
_OCCUPATIONS = ("engineer", "student", "writer", "artist", "doctor", "other")
_ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
LAYOUTS = ("ml-100k", "ml-1m", "csv")
_PERIODS = 4  # 6-hour periods of the day


def _titles(num_movies: int, rng: np.random.RandomState) -> List[str]:
    titles = []
    for movie in range(num_movies):
        words = " ".join(w.capitalize() for w in rng.choice(_WORDS, size=rng.randint(1, 4)))
        titles.append(f"{words} {movie + 1} ({1930 + rng.randint(0, 69)})")
    return titles


def generate(
    path: str,
    layout: str = "ml-100k",
    num_users: int = 100,
    num_movies: int = 200,
    num_ratings: int = 5000,
    seed: int = 0,
    num_tastes: int = 8,
    time_of_day_effect: float = 0.0,
    start: int = 880_000_000,
    days: int = 200,
    as_zip: bool = False,
    sessions: bool = False,
    context_effect: float = 0.0,
) -> str:
    """Writes a synthetic dataset; returns the directory (or .zip) path.

    With `sessions`, `num_ratings` is a target: a user rates at most a third of
    the movies, and a draw that finds no movie the user has not rated is left
    out (a few hundred of 1M).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    if sessions and time_of_day_effect:
        raise ValueError("time_of_day_effect applies to independent ratings: not with sessions=True")
    if context_effect and not sessions:
        raise ValueError("context_effect applies to session data: use sessions=True (or time_of_day_effect)")
    if not 0.0 <= context_effect <= 1.0:
        raise ValueError(f"context_effect: {context_effect} is not in [0, 1]")
    rng = np.random.RandomState(seed)
    titles = _titles(num_movies, rng)
    genres = [sorted(rng.choice(len(_ML100K_GENRES) - 1, size=rng.randint(1, 3), replace=False) + 1) for _ in titles]
    if sessions:
        users, movies, timestamps = _sessions(rng, num_users, num_movies, num_ratings, num_tastes, start, days,
                                              context_effect)
        ratings = rng.randint(1, 6, size=len(users))
        return _write(path, layout, as_zip, _render(layout, titles, genres, users, movies, ratings, timestamps,
                                                    num_users, rng))
    popularity = 1.0 / np.arange(1, num_movies + 1) ** 0.8
    rng.shuffle(popularity)
    taste_of_movie = rng.randint(0, num_tastes, size=num_movies)
    period_of_movie = rng.randint(0, _PERIODS, size=num_movies)
    user_taste = rng.randint(0, num_tastes, size=num_users)

    users = rng.randint(0, num_users, size=num_ratings)
    timestamps = start + rng.randint(0, days * 86400, size=num_ratings)
    periods = (timestamps % 86400) // (86400 // _PERIODS)
    by_period = rng.rand(num_ratings) < time_of_day_effect
    anything = rng.rand(num_ratings) < 0.3  # a popular movie of any taste
    groups = np.where(by_period, periods, np.where(anything, -1, _PERIODS + user_taste[users]))
    movies = np.empty(num_ratings, dtype=np.int64)
    for group in np.unique(groups):
        rows = np.flatnonzero(groups == group)
        if group == -1:
            mask = np.ones(num_movies, dtype=bool)
        elif group < _PERIODS:
            mask = period_of_movie == group
        else:
            mask = taste_of_movie == group - _PERIODS
        if not mask.any():
            mask = np.ones(num_movies, dtype=bool)
        weights = popularity * mask
        movies[rows] = rng.choice(num_movies, size=len(rows), p=weights / weights.sum())
    ratings = rng.randint(1, 6, size=num_ratings)

    files = _render(layout, titles, genres, users, movies, ratings, timestamps, num_users, rng)
    return _write(path, layout, as_zip, files)



def at_scale(path: str, num_ratings: int, seed: int = 1) -> str:
    """ml-1m-shaped session data of any size (the benchmarks' `--synthetic N`): ml-1m's
    ratings per user and per movie (N/160 users, N/270 movies), 20 taste groups over 1,000 days."""
    return generate(path, layout="ml-1m", num_users=max(50, num_ratings // 160), num_movies=max(100, num_ratings // 270),
                    num_ratings=num_ratings, seed=seed, num_tastes=20, days=1000, sessions=True)


def _write(path: str, layout: str, as_zip: bool, files: Dict[str, bytes]) -> str:
    name = {"ml-100k": "ml-100k", "ml-1m": "ml-1m", "csv": "ml-latest-small"}[layout]
    if as_zip:
        target = os.path.join(path, f"{name}.zip")
        os.makedirs(path, exist_ok=True)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            for filename, data in files.items():
                zf.writestr(f"{name}/{filename}", data)
        return target
    os.makedirs(path, exist_ok=True)
    for filename, data in files.items():
        with open(os.path.join(path, filename), "wb") as f:
            f.write(data)
    return path



# The session model's knobs. Chosen so that on a dataset of ml-100k's size
# (943 users, 1,682 movies, 100k ratings) the baselines keep ml-100k's order
# on the temporal split: popularity 0.29, item-kNN 0.37, EASE 0.48 top-100
# with rated movies skipped (ml-100k itself: 0.36, 0.53, 0.60).
_ZIPF = 1.2  # movie popularity ~ 1 / rank ** _ZIPF
_P_NEIGHBOUR = 0.45  # the next movie is similar to one of the user's last _RECENT
_P_TASTE = 0.2  # ... else from the user's taste group, else from all movies
_RECENT = 5
_NEIGHBOURS = 30  # the similar movies of a movie (nearest latent vectors)
_DIM = 16  # latent vectors: taste-group centre + noise, unit length
_NEW_FRACTION = 0.3  # movies released during the period (the rest before it)
_NEW_BOOST, _NEW_DAYS = 4.0, 60.0  # a new movie is (1 + 4 e^(-age/60 d)) times as popular
_SPAN_DAYS, _SPAN_SIGMA = 5.0, 2.5  # a user's active period: lognormal, median 5 days
_PERIODS_OF_POPULARITY = 40  # popularity changes in this many steps over the period
_ATTEMPTS = 12  # draws for a rating before it is left out (every movie the user rated is drawn again)
_CONTEXT_ATTEMPTS = 6  # a rating in context draws from its period's movies this many times before any movie
_CONTEXT_POPULARITY = 0.5  # in context, movies are drawn by popularity ** this: a period's less popular movies too


def _activity(rng: np.random.RandomState, num_users: int, num_ratings: int, cap: int) -> np.ndarray:
    """Ratings per user [num_users]: lognormal, at least 1, at most `cap`, summing to num_ratings when the cap allows."""
    activity = rng.lognormal(0.0, 1.1, size=num_users)
    counts = np.clip(np.floor(activity / activity.sum() * num_ratings), 1, cap).astype(np.int64)
    for _ in range(50):  # hand what the cap cut off to the users below it
        short = num_ratings - counts.sum()
        room = counts < cap
        if short <= 0 or not room.any():
            break
        share = np.ceil(short * activity[room] / activity[room].sum()).astype(np.int64)
        counts[room] = np.minimum(cap, counts[room] + share)
    for user in np.argsort(-counts, kind="stable"):  # trim the overshoot from the most active
        excess = counts.sum() - num_ratings
        if excess <= 0:
            break
        counts[user] -= min(excess, counts[user] - 1)
    return counts


class _Sampler:
    """Draws indices from many discrete distributions at once: cdf [groups, n], each row rising to 1."""

    def __init__(self, cdf: np.ndarray):
        self.n = cdf.shape[1]
        self.flat = (cdf + np.arange(len(cdf))[:, None]).ravel()  # row g spans (g, g + 1]: one search for all

    def __call__(self, groups: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        """One index per entry of `groups` [k], from its group's distribution."""
        found = np.searchsorted(self.flat, groups + rng.rand(len(groups)))
        return np.clip(found - groups * self.n, 0, self.n - 1)


def _cdf(weights: np.ndarray) -> np.ndarray:
    totals = weights.sum(axis=-1, keepdims=True)
    return np.cumsum(weights, axis=-1) / np.where(totals > 0, totals, 1.0)


# Above this many movies the similarity matrix (movies^2 float64: 3.2 GB at 20,000) is computed in blocks of rows.
_BLOCKED_ABOVE_MOVIES = 20_000


def _nearest(vectors: np.ndarray, block: int = 2048) -> np.ndarray:
    """Each movie's _NEIGHBOURS most similar other movies, most similar first (int [movies, _NEIGHBOURS]).

    Up to _BLOCKED_ABOVE_MOVIES movies the whole similarity matrix is sorted, as
    always (the data of every size measured so far is unchanged); above, block by
    block of rows, the top ones found with argpartition and then sorted: the same
    neighbours but for exact ties, in memory of a block (the whole matrix at 10M
    ratings, 37,037 movies, would be 11 GB, and its sort as much again)."""
    n = len(vectors)
    if n <= _BLOCKED_ABOVE_MOVIES:
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, -np.inf)
        return np.argsort(-similarity, axis=1)[:, :_NEIGHBOURS]
    out = np.empty((n, _NEIGHBOURS), dtype=np.int64)
    for begin in range(0, n, block):
        rows = np.arange(begin, min(n, begin + block))
        similarity = vectors[rows] @ vectors.T
        similarity[np.arange(len(rows)), rows] = -np.inf
        top = np.argpartition(-similarity, _NEIGHBOURS, axis=1)[:, :_NEIGHBOURS]
        order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1)
        out[rows] = np.take_along_axis(top, order, axis=1)
    return out


def _sessions(rng: np.random.RandomState, num_users: int, num_movies: int, num_ratings: int, num_tastes: int,
              start: int, days: int, context_effect: float = 0.0):
    """Users, movies, timestamps (int arrays [n], n <= num_ratings) of users rating in sessions.

    Each user has a taste group and one active period (start uniform over the
    `days`, length lognormal); their ratings are spread over it in time order.
    The i-th movie is, with _P_NEIGHBOUR, one of the _NEIGHBOURS most similar
    movies (latent vectors) of one of the user's last _RECENT, weighted by
    popularity; with _P_TASTE a movie of the user's taste group, else any
    movie, both by popularity at that time (released movies only, new ones
    boosted). A movie the user already rated is drawn again: 4 times a
    similar movie of a recent one, then from all movies; a rating still
    without a movie after _ATTEMPTS draws is left out. With context_effect,
    that share of ratings (the first draw) takes a movie of the rating's
    period of the day instead (generate's docstring); the random numbers of
    the other draws are the same.
    """
    taste_of_movie = rng.randint(0, num_tastes, size=num_movies)
    vectors = rng.randn(num_tastes, _DIM)[taste_of_movie] + 0.7 * rng.randn(num_movies, _DIM)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    neighbours = _nearest(vectors)
    popularity = 1.0 / np.arange(1, num_movies + 1) ** _ZIPF
    rng.shuffle(popularity)
    similar_of = _Sampler(_cdf(popularity[neighbours] ** 0.7))
    seconds = days * 86400
    new = rng.rand(num_movies) < _NEW_FRACTION
    release = np.where(new, start + rng.randint(0, seconds, size=num_movies), start - 1)

    counts = _activity(rng, num_users, num_ratings, cap=max(1, num_movies // 3))
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # each user's first row: rows are grouped by user
    users = np.repeat(np.arange(num_users), counts)
    begin = start + (rng.rand(num_users) * 0.95 * seconds).astype(np.int64)
    length = np.minimum(rng.lognormal(np.log(_SPAN_DAYS * 86400), _SPAN_SIGMA, size=num_users), start + seconds - begin)
    timestamps = begin[users] + (rng.rand(len(users)) * length[users]).astype(np.int64)
    timestamps = timestamps[np.lexsort((timestamps, users))]  # users stay grouped: in time order within each

    edges = start + np.arange(_PERIODS_OF_POPULARITY) * (seconds // _PERIODS_OF_POPULARITY)
    age_days = (edges[:, None] - release[None, :]) / 86400.0
    weight = popularity * (age_days >= 0) * (1.0 + _NEW_BOOST * new * np.exp(-np.maximum(age_days, 0) / _NEW_DAYS))
    any_of = _Sampler(_cdf(weight))  # [periods, movies]
    taste_of = _Sampler(_cdf(weight[:, None, :] * (taste_of_movie[None, None, :] == np.arange(num_tastes)[None, :, None]))
                       .reshape(-1, num_movies))  # [periods * tastes, movies]
    period = np.clip(np.searchsorted(edges, timestamps, side="right") - 1, 0, len(edges) - 1)
    user_taste = rng.randint(0, num_tastes, size=num_users)
    kind = rng.rand(len(users))
    in_context = np.zeros(len(users), bool)
    if context_effect:  # drawn after everything else: the rest of the data keeps its random numbers
        period_of_movie = rng.randint(0, _PERIODS, size=num_movies)
        in_context = rng.rand(len(users)) < context_effect
        of_day = (timestamps % 86400) // (86400 // _PERIODS)
        by_context = period * _PERIODS + of_day
        context_of = _Sampler(_cdf(weight[:, None, :] ** _CONTEXT_POPULARITY * (period_of_movie[None, None, :]
                                                         == np.arange(_PERIODS)[None, :, None])).reshape(-1, num_movies))

    movies = np.full(len(users), -1, np.int64)
    rated = set()
    for position in range(int(counts.max())):
        rows = first[counts > position] + position
        user = users[rows]
        by_taste = period[rows] * num_tastes + user_taste[user]
        chosen = np.empty(len(rows), np.int64)
        contextual = in_context[rows]
        neighbour = (kind[rows] < _P_NEIGHBOUR if position else np.zeros(len(rows), bool)) & ~contextual
        anything = kind[rows] >= _P_NEIGHBOUR + _P_TASTE
        repeat = np.ones(len(rows), bool)
        for attempt in range(_ATTEMPTS):  # a repeat is drawn again: a similar movie, then anything
            by_day = repeat & contextual & (attempt < _CONTEXT_ATTEMPTS)
            similar = repeat & ~by_day & (neighbour if attempt == 0 else np.full(len(rows), position > 0 and attempt <= 4))
            group = repeat & ~similar & ~anything & ~by_day & (attempt == 0)
            other = repeat & ~similar & ~group & ~by_day
            if by_day.any():
                chosen[by_day] = context_of(by_context[rows[by_day]], rng)
            if similar.any():  # one of the last _RECENT movies, each attempt anew
                back = rng.randint(1, min(_RECENT, position) + 1, size=similar.sum())
                sources = movies[rows[similar] - back]
                sources = np.where(sources < 0, rng.randint(0, num_movies, size=len(sources)), sources)
                chosen[similar] = neighbours[sources, similar_of(sources, rng)]
            chosen[group] = taste_of(by_taste[group], rng)
            chosen[other] = any_of(period[rows[other]], rng)
            keys = user * num_movies + chosen
            repeat = np.fromiter((key in rated for key in keys.tolist()), bool, len(keys))
            if not repeat.any():
                break
        keep = ~repeat
        movies[rows[keep]] = chosen[keep]
        rated.update(keys[keep].tolist())
    kept = movies >= 0
    return users[kept], movies[kept], timestamps[kept]

def _render(layout, titles, genres, users, movies, ratings, timestamps, num_users, rng) -> Dict[str, bytes]:
    ages = rng.randint(7, 70, size=num_users)
    genders = rng.choice(["M", "F"], size=num_users)
    occupations = rng.randint(0, len(_OCCUPATIONS), size=num_users)
    rows = zip(users + 1, movies + 1, ratings, timestamps, strict=True)
    if layout == "ml-100k":
        data = "".join(f"{u}\t{m}\t{r}\t{t}\n" for u, m, r, t in rows)
        items = []
        for i, title in enumerate(titles):
            flags = ["1" if g in genres[i] else "0" for g in range(len(_ML100K_GENRES))]
            items.append("|".join([str(i + 1), title, "01-Jan-1995", "", "http://example.invalid/"] + flags))
        user_rows = [f"{u + 1}|{ages[u]}|{genders[u]}|{_OCCUPATIONS[occupations[u]]}|{10000 + u}" for u in range(num_users)]
        return {
            "u.data": data.encode("ascii"),
            "u.item": ("\n".join(items) + "\n").encode("latin-1"),
            "u.user": ("\n".join(user_rows) + "\n").encode("ascii"),
        }
    genre_names = [[GENRES[GENRES.index(_ML100K_GENRES[g].replace("Children's", "Children"))] for g in gs] for gs in genres]
    if layout == "ml-1m":
        data = "".join(f"{u}::{m}::{r}::{t}\n" for u, m, r, t in rows)
        items = [f"{i + 1}::{title}::{'|'.join(genre_names[i])}" for i, title in enumerate(titles)]
        user_rows = [f"{u + 1}::{genders[u]}::{ages[u]}::{occupations[u]}::{10000 + u}" for u in range(num_users)]
        return {
            "ratings.dat": data.encode("ascii"),
            "movies.dat": ("\n".join(items) + "\n").encode("latin-1"),
            "users.dat": ("\n".join(user_rows) + "\n").encode("ascii"),
        }
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["userId", "movieId", "rating", "timestamp"])
    writer.writerows([u, m, f"{r:.1f}", t] for u, m, r, t in rows)
    movies_out = io.StringIO()
    writer = csv.writer(movies_out, lineterminator="\n")
    writer.writerow(["movieId", "title", "genres"])
    writer.writerows([i + 1, title, "|".join(genre_names[i])] for i, title in enumerate(titles))
    return {"ratings.csv": out.getvalue().encode("utf-8"), "movies.csv": movies_out.getvalue().encode("utf-8")}
