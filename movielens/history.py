"""Each rating's history: the user's most recent movies rated strictly before it, as a live system knew them.

For a rating r of user u at time t, the history holds u's ratings s with

    timestamp(s) < t            strictly: never r itself, never a same-second rating, never a later one;
    s in train  or  r in eval   a train example sees only train ratings (otherwise an eval rating of the
                                same user would leak into training through another example's history);
                                an eval example sees every earlier rating, train or eval, as a live system
                                would know them at that moment;

most recent first (equal timestamps: the later row in the file first), at most `max_length` of them.
The count before truncation is kept too (for slicing by history length).

Vectorised: one sort of all ratings by (user, time, row) (HistoryIndex) and binary searches; no Python loop
per rating.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class Histories:
    """Ragged histories by rating row: rows[offsets[i]:offsets[i + 1]] are rating i's history (row indices)."""

    offsets: np.ndarray  # int64 [num_ratings + 1]
    rows: np.ndarray  # int64 [total]: row indices of the history ratings, most recent first
    full_lengths: np.ndarray  # int64 [num_ratings]: history length before truncation to max_length

    def of(self, i: int) -> np.ndarray:
        return self.rows[self.offsets[i]:self.offsets[i + 1]]


def _ordered(user_codes: np.ndarray, timestamps: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`rows` sorted by (user, timestamp, row)."""
    return rows[np.lexsort((rows, timestamps[rows], user_codes[rows]))]


def _key(user_codes: np.ndarray, timestamps: np.ndarray) -> np.ndarray:
    """(user, time) as one sortable int: user-major (timestamps are non-negative and < 2**40)."""
    return user_codes * (1 << 40) + timestamps


class HistoryIndex:
    """Every rating sorted by (user, time, row), twice (all ratings; train only), to look histories up.

    Memory is about 4 int64 per rating (320 MB for 10M ratings); a lookup's
    memory is its own histories', so ExampleGen looks them up chunk by chunk
    instead of listing all of them at once (50 a rating: 4 GB at 10M, and 5x
    that in temporaries).

    user_codes: int64 [n], one integer per user; timestamps: int64 [n];
    is_eval: bool [n], True for the eval split's ratings.
    """

    def __init__(self, user_codes: np.ndarray, timestamps: np.ndarray, is_eval: np.ndarray):
        n = len(timestamps)
        self._users = np.asarray(user_codes, np.int64)
        self._timestamps = np.asarray(timestamps, np.int64)
        self._is_eval = np.asarray(is_eval, bool)
        # What a rating's history is read from, by whether the rating is eval: (rows sorted, their sort keys).
        self._sources = {}
        for from_eval, rows in ((True, np.arange(n, dtype=np.int64)), (False, np.flatnonzero(~self._is_eval))):
            rows = _ordered(self._users, self._timestamps, rows.astype(np.int64))
            self._sources[from_eval] = (rows, _key(self._users[rows], self._timestamps[rows]))

    def lookup(self, queries: np.ndarray, max_length: int, only: Optional[np.ndarray] = None) -> Histories:
        """The histories of the ratings at row indices `queries` [q], in that order (Histories indexed 0..q-1).

        only: bool [q] or None, the queries whose history is listed (the others
        get an empty list, their full_lengths still counted): rated_before is
        kept for eval ratings only.
        """
        queries = np.asarray(queries, np.int64)
        from_everything = self._is_eval[queries]  # an eval rating sees every earlier rating; train sees train
        first = np.empty(len(queries), np.int64)
        cut = np.empty(len(queries), np.int64)
        for from_eval, chosen in ((True, from_everything), (False, ~from_everything)):
            asked, keys = queries[chosen], self._sources[from_eval][1]
            # [first, cut): the query user's ratings in the source strictly before the query's time.
            first[chosen] = np.searchsorted(keys, _key(self._users[asked], 0), side="left")
            cut[chosen] = np.searchsorted(keys, _key(self._users[asked], self._timestamps[asked]), side="left")
        full_lengths = cut - first
        lengths = np.minimum(full_lengths, max_length)
        if only is not None:
            lengths = np.where(np.asarray(only, bool), lengths, 0)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # Position of each history element in its source, most recent first: cut-1, cut-2, ...
        owner = np.repeat(np.arange(len(queries)), lengths)
        position = np.repeat(cut - 1 + offsets[:-1], lengths) - np.arange(offsets[-1])
        rows = np.empty(len(owner), np.int64)
        everything = from_everything[owner]
        rows[everything] = self._sources[True][0][position[everything]]
        rows[~everything] = self._sources[False][0][position[~everything]]  # none when every rating is eval (a span run)
        return Histories(offsets=offsets, rows=rows, full_lengths=full_lengths)


def build(user_codes: np.ndarray, timestamps: np.ndarray, is_eval: np.ndarray, max_length: int,
          only: Optional[np.ndarray] = None) -> Histories:
    """Histories of every rating (see module docstring and HistoryIndex.lookup), by row."""
    return HistoryIndex(user_codes, timestamps, is_eval).lookup(np.arange(len(timestamps)), max_length, only)


def length_bucket(length: int) -> str:
    """The slice a history length falls in: "0", "1-9", "10-49" or "50+"."""
    if length == 0:
        return "0"
    if length < 10:
        return "1-9"
    if length < 50:
        return "10-49"
    return "50+"


LENGTH_BUCKETS = ("0", "1-9", "10-49", "50+")
