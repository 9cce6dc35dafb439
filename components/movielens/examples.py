"""Turns validated MovieLens rows into tf.train.Examples.

Feature names follow tensorflow-datasets' `movielens/*-ratings` and
`movielens/*-movies` where the source has the field:

  user_id (bytes), movie_id (bytes), movie_title (bytes), timestamp (int64,
  seconds), user_rating (float), movie_genres (int64 list: indices into
  reader.GENRES) and, when the layout has a users file, raw_user_age (float),
  user_gender (int64: 1 male, 0 female), user_occupation_text (bytes),
  user_zip_code (bytes).
"""

from __future__ import annotations

from typing import Dict, Iterable, Iterator, Optional, Sequence, Tuple

import tensorflow as tf

from components.movielens.reader import Movie, User

RatingRow = Tuple[str, str, float, int]  # user_id, movie_id, rating, timestamp


def _bytes(value: str) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))


def _ints(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _floats(values: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _movie_features(movie_id: str, movie: Movie) -> Dict[str, tf.train.Feature]:
    return {
        "movie_id": _bytes(movie_id),
        "movie_title": _bytes(movie.title),
        "movie_genres": _ints(movie.genres),
    }


def catalog_examples(movies: Dict[str, Movie]) -> Iterator[bytes]:
    """One serialized example per catalog movie, ordered by movie id."""
    for movie_id in sorted(movies, key=int):
        features = _movie_features(movie_id, movies[movie_id])
        yield tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def rating_examples(
    rows: Iterable[RatingRow], movies: Dict[str, Movie], users: Optional[Dict[str, User]]
) -> Iterator[bytes]:
    """One serialized example per rating, joined with its movie and user."""
    for user_id, movie_id, rating, timestamp in rows:
        features = _movie_features(movie_id, movies[movie_id])
        features["user_id"] = _bytes(user_id)
        features["timestamp"] = _ints([timestamp])
        features["user_rating"] = _floats([rating])
        if users is not None:
            user = users[user_id]
            features["raw_user_age"] = _floats([user.age])
            features["user_gender"] = _ints([1 if user.gender == "M" else 0])
            features["user_occupation_text"] = _bytes(user.occupation)
            features["user_zip_code"] = _bytes(user.zip_code)
        yield tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()
