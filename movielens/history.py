"""Each rating's history: the user's most recent movies rated strictly before it, as a live system knew them.

For a rating r of user u at time t, the history holds u's ratings s with

    timestamp(s) < t            strictly: never r itself, never a same-second rating, never a later one;
    s in train  or  r in eval   a train example sees only train ratings (otherwise an eval rating of the
                                same user would leak into training through another example's history);
                                an eval example sees every earlier rating, train or eval, as a live system
                                would know them at that moment;

most recent first (equal timestamps: the later row in the file first), at most `max_length` of them.
The count before truncation is kept too (for slicing by history length).

Vectorised: one sort of all ratings by (user, time, row) and binary searches; no Python loop per rating.
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


def build(user_codes: np.ndarray, timestamps: np.ndarray, is_eval: np.ndarray, max_length: int,
          only: Optional[np.ndarray] = None) -> Histories:
    """Histories of every rating (see module docstring).

    user_codes: int64 [n], one integer per user; timestamps: int64 [n];
    is_eval: bool [n], True for the eval split's ratings; only: bool [n] or
    None, the ratings whose history is listed (the others get an empty list,
    their full_lengths still counted): rated_before is kept for eval ratings
    only, and listing it for all of 1M synthetic ratings (about 80 a rating)
    was ExampleGen's 6 GB peak.
    """
    n = len(timestamps)
    user_codes = np.asarray(user_codes, np.int64)
    timestamps = np.asarray(timestamps, np.int64)
    is_eval = np.asarray(is_eval, bool)
    everything = _ordered(user_codes, timestamps, np.arange(n, dtype=np.int64))
    train_only = _ordered(user_codes, timestamps, np.flatnonzero(~is_eval).astype(np.int64))

    def bounds(source: np.ndarray, queries: np.ndarray):
        """For each query rating, [first, cut) of its user's ratings in `source` strictly before it."""
        keys = np.stack([user_codes[source], timestamps[source]], axis=1)
        # Sort key as one int: user-major, then time (timestamps are non-negative and < 2**40).
        flat = keys[:, 0] * (1 << 40) + keys[:, 1]
        first = np.searchsorted(flat, user_codes[queries] * (1 << 40), side="left")
        cut = np.searchsorted(flat, user_codes[queries] * (1 << 40) + timestamps[queries], side="left")
        return first, cut

    first = np.empty(n, np.int64)
    cut = np.empty(n, np.int64)
    source_of = np.empty(n, np.int64)  # 0: everything, 1: train only
    eval_rows, train_rows = np.flatnonzero(is_eval), np.flatnonzero(~is_eval)
    first[eval_rows], cut[eval_rows] = bounds(everything, eval_rows)
    first[train_rows], cut[train_rows] = bounds(train_only, train_rows)
    source_of[eval_rows], source_of[train_rows] = 0, 1

    full_lengths = cut - first
    lengths = np.minimum(full_lengths, max_length)
    if only is not None:
        lengths = np.where(np.asarray(only, bool), lengths, 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    # Position of each history element in its source, most recent first: cut-1, cut-2, ...
    owner = np.repeat(np.arange(n), lengths)
    step = np.arange(offsets[-1]) - np.repeat(offsets[:-1], lengths)
    position = cut[owner] - 1 - step
    rows = np.empty(len(owner), np.int64)
    from_everything = source_of[owner] == 0
    rows[from_everything] = everything[position[from_everything]]
    rows[~from_everything] = train_only[position[~from_everything]]  # none when every rating is eval (a span run)
    return Histories(offsets=offsets, rows=rows, full_lengths=full_lengths.astype(np.int64))


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
