"""Turns validated MovieLens rows into serialized tf.train.Examples.

Feature names follow tensorflow-datasets' `movielens/*-ratings` and
`movielens/*-movies` where the source has the field:

  user_id (bytes), movie_id (bytes), movie_title (bytes), timestamp (int64,
  seconds), user_rating (float), movie_genres (int64 list: indices into
  reader.GENRES) and, when the layout has a users file, raw_user_age (float),
  user_gender (int64: 1 male, 0 female), user_occupation_text (bytes),
  user_zip_code (bytes).

Each rating also carries its context as a live system knew it (history.py):
  history (bytes list: movie ids, most recent first), history_timestamps
  (int64 list, aligned), rated_before (bytes list, eval examples only:
  every earlier movie of the user, the movies never recommended back, up to
  transform.features.MAX_RATED_BEFORE), and two slicing features: user_in_train (int64:
  1 when the user has a train rating) and history_bucket (bytes: "0", "1-9",
  "10-49" or "50+", by the history's length before truncation).

Rows become Arrow record batches (columns gathered with numpy and Arrow
`take`, no per-row Python objects) and tfx_bsl's C++ encoder serializes them:
about 1M ratings in seconds.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import pyarrow as pa
from tfx_bsl.coders import example_coder

from movielens import history as ml_history
from movielens.reader import Movie, MovieLensData, User
from transform.features import MAX_RATED_BEFORE

_ENCODER = example_coder.RecordBatchToExamplesEncoder()


def _one_per_row(values: pa.Array) -> pa.LargeListArray:
    """[v0, v1, ...] -> [[v0], [v1], ...]."""
    return pa.LargeListArray.from_arrays(pa.array(np.arange(len(values) + 1), pa.int64()), values)


def _bytes(strings: Sequence[str]) -> pa.LargeListArray:
    return _one_per_row(pa.array([s.encode("utf-8") for s in strings], pa.large_binary()))


def _numbers(values: np.ndarray, arrow_type) -> pa.LargeListArray:
    return _one_per_row(pa.array(values, arrow_type))


def _catalog_columns(movies: Dict[str, Movie], order: List[str]) -> Dict[str, pa.Array]:
    genres = [movies[m].genres for m in order]
    offsets = np.concatenate([[0], np.cumsum([len(g) for g in genres])]).astype(np.int64)
    flat = np.fromiter((g for gs in genres for g in gs), dtype=np.int64, count=int(offsets[-1]))
    return {
        "movie_id": _bytes(order),
        "movie_title": _bytes([movies[m].title for m in order]),
        "movie_genres": pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.int64())),
    }


def _user_columns(users: Dict[str, User], order: List[str]) -> Dict[str, pa.Array]:
    return {
        "raw_user_age": _numbers(np.array([users[u].age for u in order], np.float32), pa.float32()),
        "user_gender": _numbers(np.array([users[u].gender == "M" for u in order], np.int64), pa.int64()),
        "user_occupation_text": _bytes([users[u].occupation for u in order]),
        "user_zip_code": _bytes([users[u].zip_code for u in order]),
    }


def _encode(columns: Dict[str, pa.Array]) -> List[bytes]:
    names = sorted(columns)
    return _ENCODER.encode(pa.RecordBatch.from_arrays([columns[n] for n in names], names))


def catalog_examples(movies: Dict[str, Movie]) -> List[bytes]:
    """One serialized example per catalog movie, ordered by movie id."""
    return _encode(_catalog_columns(movies, sorted(movies, key=int)))


def _lists(values: pa.Array, offsets: np.ndarray) -> pa.LargeListArray:
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)


class RatingEncoder:
    """Serializes ratings (joined with their movie, user and history) by row index.

    `eval_rows`: the eval split's row indices (the history rule depends on the split).
    """

    def __init__(self, data: MovieLensData, eval_rows: np.ndarray, max_history: int):
        ratings = data.ratings
        movie_order = sorted(data.movies, key=int)
        movie_position = {m: i for i, m in enumerate(movie_order)}
        self._catalog = _catalog_columns(data.movies, movie_order)
        self._movie_index = np.array([movie_position[m] for m in ratings.movie_ids], np.int64)
        self._user_ids = ratings.user_ids
        self._ratings = ratings.ratings
        self._timestamps = ratings.timestamps
        self._users: Optional[Dict[str, pa.Array]] = None
        if data.users is not None:
            user_order = sorted(data.users, key=int)
            user_position = {u: i for i, u in enumerate(user_order)}
            self._users = _user_columns(data.users, user_order)
            self._user_index = np.array([user_position[u] for u in ratings.user_ids], np.int64)
        is_eval = np.zeros(len(ratings), bool)
        is_eval[eval_rows] = True
        codes = {u: i for i, u in enumerate(dict.fromkeys(ratings.user_ids))}
        user_codes = np.fromiter((codes[u] for u in ratings.user_ids), np.int64, count=len(ratings))
        # Histories are looked up per encoded chunk: listing all of them up front grows
        # with ratings x history (OOM-killed at 24 GB for 10M ratings).
        self._histories = ml_history.HistoryIndex(user_codes, self._timestamps, is_eval)
        self._max_history = max_history
        self._is_eval = is_eval
        # Every movie id once, in catalog order: history lists are taken from it by
        # position in Arrow (a Python bytes object per history element was most of
        # ExampleGen's encoding time at 1M ratings: 50M of them).
        self._movie_ids = self._catalog["movie_id"].flatten()
        self._user_in_train = np.isin(user_codes, user_codes[~is_eval]).astype(np.int64)

    def encode(self, rows: np.ndarray) -> List[bytes]:
        """Serialized examples of the ratings at row indices `rows`, in that order."""
        movies = pa.array(self._movie_index[rows])
        columns = {name: column.take(movies) for name, column in self._catalog.items()}
        columns["user_id"] = _bytes([self._user_ids[i] for i in rows])
        columns["timestamp"] = _numbers(self._timestamps[rows], pa.int64())
        columns["user_rating"] = _numbers(self._ratings[rows], pa.float32())
        if self._users is not None:
            users = pa.array(self._user_index[rows])
            columns.update({name: column.take(users) for name, column in self._users.items()})
        h = self._histories.lookup(rows, self._max_history)
        columns["history"] = _lists(self._movie_ids.take(pa.array(self._movie_index[h.rows])), h.offsets)
        columns["history_timestamps"] = _lists(pa.array(self._timestamps[h.rows], pa.int64()), h.offsets)
        rated = self._histories.lookup(rows, MAX_RATED_BEFORE, only=self._is_eval[rows])
        columns["rated_before"] = _lists(self._movie_ids.take(pa.array(self._movie_index[rated.rows])), rated.offsets)
        columns["user_in_train"] = _numbers(self._user_in_train[rows], pa.int64())
        columns["history_bucket"] = _bytes([ml_history.length_bucket(n) for n in h.full_lengths])
        return _encode(columns)
