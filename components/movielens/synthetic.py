"""Synthetic MovieLens data in the official file layouts (tests, benchmarks, scale runs).

`generate(...)` writes N users, M movies and R ratings in the ml-100k, ml-1m
or CSV layout, with structure a retrieval model can learn:

* popularity skew: movies are drawn with Zipf-like weights;
* user taste: each user prefers one of `num_tastes` movie groups;
* time of day (`time_of_day_effect` in [0, 1]): each rating happens in one of
  four 6-hour periods of the day, and with this probability the movie comes
  from that period's own group of movies, whoever the user is.

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

from components.movielens.reader import GENRES

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
) -> str:
    """Writes a synthetic dataset; returns the directory (or .zip) path."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    rng = np.random.RandomState(seed)
    titles = _titles(num_movies, rng)
    genres = [sorted(rng.choice(len(_ML100K_GENRES) - 1, size=rng.randint(1, 3), replace=False) + 1) for _ in titles]
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
