"""The baselines: the recommenders any deep model has to beat, as plain numpy / scipy functions.

No TFX and no TensorFlow: the Baselines component (components.baselines) reads
ExampleGen's examples into `Split`s, calls `compute` and writes its result; the
Evaluator's default value floor is `best_at` of it (components.evaluator), the
best baseline's top-GATE_K accuracy. Items are integer indices into the catalog.
With `exclude_history`, the movies the user already rated (an eval rating's
`Split.rated`: the example's history and rated_before) are never recommended,
as in serving.

Each baseline scores the whole catalog for an eval rating; top-k accuracy is
the share of eval ratings whose movie ranks in the top k. Ranks use a strict
order (score, then train popularity, then movie id), so ties never count as
hits.

  popularity         train rating counts, the same list for everyone
  recent_popularity  counts over the last RECENT_DAYS days of train
  item_knn           sum over the rating's history of the cosine similarity
                     of item co-occurrence vectors (train users)
  ease               EASE (Steck 2019): B = I - P / diag(P), P = (X'X + lambda I)^-1
                     over the binary train user-item matrix X; score = sum of
                     the history's rows of B. Skipped above EASE_MAX_ITEMS movies.

item_knn and ease read the same history as the model (the example's `history`:
the user's most recent movies rated strictly before the rating). `compute`
returns {name: {k: accuracy}} plus "notes" on skipped baselines, and with
`per_rating` each eval rating's hits (the Evaluator's paired comparison with
the floor baseline).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
from scipy import sparse
from scipy.sparse import _sparsetools  # csr_matvecs: what `csr @ dense` runs (scipy 1.12 to 1.17)

from trainer.config import TOP_KS

RECENT_DAYS = 30
# EASE's L2 weight. Of 50, 200 and 500 on ml-100k's temporal split, 500 was
# strongest (0.52 / 0.58 / 0.60 top-100, full history excluded): the largest
# makes the gate's floor the hardest to beat, so it is the one kept.
EASE_LAMBDA = 500.0
EASE_MAX_ITEMS = 20_000  # X'X inverse: 20k^2 floats, ~1 min on 2 cores
_BATCH = 2048
# Threads scoring and ranking a score matrix's batches: each holds a batch's scores (2048 x items float32:
# 0.3 GB at 37k movies) and a mask (a quarter of that).
THREADS = min(4, os.cpu_count() or 1)
_GRAM_BLOCK = 2048  # items per block of the co-occurrence product (a block's sparse product: items x 2048 at most)



class Ragged:
    """Rows of item indices, flat: row i is values[offsets[i]:offsets[i + 1]] (values int32, offsets int64).
    Iterates and indexes like the list of its rows; slices are Ragged views."""

    def __init__(self, values: np.ndarray, offsets: np.ndarray):
        self.values, self.offsets = values, offsets

    @classmethod
    def of(cls, rows) -> "Ragged":
        """`rows` itself if Ragged, else a Ragged of a sequence of index arrays."""
        if isinstance(rows, Ragged):
            return rows
        lengths = np.fromiter((len(row) for row in rows), np.int64, len(rows))
        values = np.concatenate([np.asarray(row) for row in rows]) if len(rows) else np.zeros(0)
        return cls(values.astype(np.int32), np.concatenate([[0], np.cumsum(lengths)]))

    @classmethod
    def concat(cls, parts: Sequence["Ragged"]) -> "Ragged":
        lengths = np.concatenate([np.diff(part.offsets) for part in parts] or [np.zeros(0, np.int64)])
        return cls(np.concatenate([part.flat() for part in parts] or [np.zeros(0, np.int32)]),
                   np.concatenate([[0], np.cumsum(lengths)]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            assert step == 1, step
            return Ragged(self.values, self.offsets[start:stop + 1] if stop > start else self.offsets[start:start + 1])
        return self.values[self.offsets[key]:self.offsets[key + 1]]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def row_ids(self) -> np.ndarray:
        """Each value's row (0-based within this view)."""
        return np.repeat(np.arange(len(self)), np.diff(self.offsets))

    def flat(self) -> np.ndarray:
        return self.values[self.offsets[0]:self.offsets[-1]]


class Split:
    """Ratings as item indices into the catalog: users [n], items [n], timestamps [n], histories (per rating, an
    array of item indices; a list of arrays or a Ragged: what kNN and EASE score from), rated (what is never
    recommended: per rating, item indices; a list of arrays, a Ragged, or a tuple of Raggeds whose rows' union
    is excluded; default: the histories)."""

    def __init__(self, users: np.ndarray, items: np.ndarray, timestamps: np.ndarray, histories,
                 rated=None):
        self.users, self.items, self.timestamps = users, items, timestamps
        self.histories = Ragged.of(histories)
        rated = self.histories if rated is None else rated
        self.rated = tuple(rated) if isinstance(rated, tuple) else (Ragged.of(rated),)


def _positions(tiebreak: np.ndarray) -> np.ndarray:
    """Each item's place in the strict order of equal scores: larger `tiebreak` first, then the smaller index."""
    order = np.lexsort((np.arange(len(tiebreak)), -tiebreak))
    position = np.empty(len(tiebreak), np.int32)
    position[order] = np.arange(len(tiebreak))
    return position


def _excluded_ahead(rows: int, excluded: Sequence[Ragged], is_ahead) -> np.ndarray:
    """int [rows]: per row, how many distinct excluded items `is_ahead(row_ids, items)` (bool per pair) puts
    ahead of the row's target. excluded: Raggeds of `rows` rows; an item in several of a row's lists counts once.
    """
    row_ids = np.concatenate([part.row_ids() for part in excluded] or [np.zeros(0, np.int64)])
    items = np.concatenate([part.flat() for part in excluded] or [np.zeros(0, np.int32)]).astype(np.int64)
    keep = is_ahead(row_ids, items)
    width = int(items.max(initial=0)) + 1
    pairs = np.unique(row_ids[keep] * width + items[keep])
    return np.bincount(pairs // width, minlength=rows)


def top_k_hits(scores: np.ndarray, targets: np.ndarray, excluded: Sequence[Ragged], position: np.ndarray,
               ks: Sequence[int], mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Hits [len(ks), rows] of a batch: fewer than k non-excluded items ahead of the target.

    scores: float [rows, items]; targets: int [rows]; excluded: Raggeds of `rows` rows each, item indices
    that may not be recommended (the union of their rows); position: int [items], `_positions(tiebreak)`:
    the order of equal scores (tiebreak larger first, then the smaller index); mask: bool [rows, items]
    scratch space, reused (a new one per call otherwise).

    Two passes over `scores` (greater, equal); the order of equal scores is read only on rows with a tie,
    and the excluded items only at their own scores.
    """
    rows = np.arange(len(targets))
    target_score = scores[rows, targets]
    mask = np.empty(scores.shape, bool) if mask is None else mask
    rank = np.count_nonzero(np.greater(scores, target_score[:, None], out=mask), axis=1)
    tied = np.flatnonzero(np.count_nonzero(np.equal(scores, target_score[:, None], out=mask), axis=1) > 1)
    if len(tied):
        rank[tied] += np.count_nonzero((scores[tied] == target_score[tied, None])
                                       & (position[None, :] < position[targets[tied]][:, None]), axis=1)

    def is_ahead(row_ids, items):
        score, target = scores[row_ids, items], target_score[row_ids]
        return (score > target) | ((score == target) & (position[items] < position[targets[row_ids]]))

    rank -= _excluded_ahead(len(targets), excluded, is_ahead)
    return np.stack([rank < k for k in ks])


def _places(score: np.ndarray, position: np.ndarray) -> np.ndarray:
    """int64 [items]: each item's place in the one strict order of `score` (larger first, then `position`),
    the count of items ahead of it."""
    place = np.empty(len(score), np.int64)
    place[np.lexsort((position, -score))] = np.arange(len(score))
    return place


def _constant_top_k_hits(place: np.ndarray, targets: np.ndarray, excluded: Sequence[Ragged],
                         ks: Sequence[int]) -> np.ndarray:
    """`top_k_hits` when every row has the same scores, without a [rows, items] pass: place is `_places` of
    those scores; a target's rank is its place less the excluded items placed ahead of it."""
    rank = place[targets] - _excluded_ahead(len(targets), excluded,
                                           lambda row_ids, items: place[items] < place[targets[row_ids]])
    return np.stack([rank < k for k in ks])


def _scored(scores, evaluation: Split, tiebreak: np.ndarray, exclude: bool, ks: Sequence[int],
            per_rating: Optional[Dict[int, np.ndarray]] = None) -> Dict[int, float]:
    """{k: top-k accuracy}; with `per_rating`, it also gets {k: each eval rating's hit, bool [ratings]}.

    scores: float [items], the same for every rating, or a score_fn (histories, out -> float [rows, items]
    written into out), whose batches are ranked on THREADS threads (numpy and the sparse product release
    the GIL), each thread with its own buffers for a batch's scores and masks, reused batch after batch.
    """
    position = _positions(tiebreak)
    place = None if callable(scores) else _places(scores, position)  # once, not once a batch
    buffers = threading.local()

    def batch_hits(start: int) -> np.ndarray:
        stop = min(start + _BATCH, len(evaluation.items))
        excluded = [part[start:stop] for part in evaluation.rated] if exclude else []
        if not callable(scores):
            return _constant_top_k_hits(place, evaluation.items[start:stop], excluded, ks)
        if not hasattr(buffers, "scores"):
            buffers.scores = np.empty((_BATCH, len(tiebreak)), np.float32)
            buffers.mask = np.empty((_BATCH, len(tiebreak)), bool)
        rows = stop - start
        batch_scores = scores(evaluation.histories[start:stop], buffers.scores[:rows])
        return top_k_hits(batch_scores, evaluation.items[start:stop], excluded, position, ks, buffers.mask[:rows])

    starts = range(0, len(evaluation.items), _BATCH)
    with concurrent.futures.ThreadPoolExecutor(THREADS if callable(scores) else 1) as pool:
        hits = list(pool.map(batch_hits, starts))
    hits = np.concatenate(hits, axis=1) if hits else np.zeros((len(ks), 0), bool)
    if per_rating is not None:
        per_rating.update({int(k): hits[i] for i, k in enumerate(ks)})
    return {int(k): float(hits[i].mean()) for i, k in enumerate(ks)}


def _counts(items: np.ndarray, num_items: int) -> np.ndarray:
    return np.bincount(items, minlength=num_items).astype(np.float64)


def _co_occurrence(train: Split, num_items: int) -> np.ndarray:
    """X'X of the binary train user-item matrix X: float32 [items, items], the co-occurrence counts.

    X is kept sparse and the product is made by blocks of items: a dense X is
    users x items (9 GB for 10M synthetic ratings: 62,500 users x 37,037 movies),
    and BLAS crashed on it. Counts are integers, exact in float32 either way.
    """
    _, users = np.unique(train.users, return_inverse=True)
    x = sparse.csr_matrix((np.ones(len(users), np.float32), (users, train.items)), shape=(users.max() + 1, num_items))
    x.data[:] = 1.0  # binary: duplicate (user, movie) pairs were summed
    by_item, columns = x.T.tocsr(), x.tocsc()
    gram = np.empty((num_items, num_items), np.float32)
    for start in range(0, num_items, _GRAM_BLOCK):
        stop = min(start + _GRAM_BLOCK, num_items)
        gram[:, start:stop] = (by_item @ columns[:, start:stop]).toarray()
    return gram


def _cosine_in_place(gram: np.ndarray) -> np.ndarray:
    """The co-occurrence vectors' cosine similarity, zero diagonal, written over `gram` (float32 [items, items])."""
    norms = np.sqrt(np.diag(gram))
    for start in range(0, len(gram), _GRAM_BLOCK):
        stop = min(start + _GRAM_BLOCK, len(gram))
        gram[start:stop] /= np.maximum(norms[start:stop, None] * norms[None, :], 1e-12)
    np.fill_diagonal(gram, 0.0)
    return gram


def _ease(gram: np.ndarray) -> np.ndarray:
    """EASE's B from the co-occurrence counts: float32 [items, items], zero diagonal."""
    p = np.linalg.inv(gram.astype(np.float64) + EASE_LAMBDA * np.eye(len(gram)))
    b = (-p / np.diag(p)[None, :]).astype(np.float32)
    np.fill_diagonal(b, 0.0)
    return b


def _history_sum(matrix: np.ndarray):
    """score_fn(histories, out=None): for each history (a Ragged), the sum of `matrix`'s rows of its items,
    float32 [rows, items], written into `out` (float32 [rows, items]) when given.

    The product of a sparse 0/1 [histories, items] matrix with `matrix`, by the routine scipy's own `@` runs
    (csr_matvecs: each history's rows added in their order, as matrix[items].sum(axis=0) did in a per-history
    loop: the same float32 sums, bit for bit), but into a buffer the caller reuses: `@` returns a new
    zeroed array for every batch (0.3 GB at 37k movies), whose page faults, and with threads the TLB
    shootdowns of freeing it, were most of the time at 10M (57% system time).
    """
    rows_of = np.ascontiguousarray(matrix, np.float32).ravel()  # a view of a C-ordered float32 matrix

    def score(histories: Ragged, out: Optional[np.ndarray] = None) -> np.ndarray:
        offsets = (histories.offsets - histories.offsets[0]).astype(np.int64)
        if out is None:
            out = np.zeros((len(histories), matrix.shape[1]), np.float32)
        else:
            out.fill(0.0)
        _sparsetools.csr_matvecs(len(histories), matrix.shape[0], matrix.shape[1], offsets,
                                 histories.flat().astype(np.int64), np.ones(offsets[-1], np.float32),
                                 rows_of, out.ravel())
        return out
    return score


def compute(train: Split, evaluation: Split, num_items: int, exclude_history: bool,
            ks: Sequence[int] = TOP_KS, per_rating: Optional[Dict[str, Dict[int, np.ndarray]]] = None
            ) -> Dict[str, Dict]:
    """Every baseline's top-k accuracies: {name: {k: accuracy}}, and "notes" on skipped ones. With `per_rating`,
    it also gets {name: {k: each eval rating's hit}} (the Evaluator's paired comparison with the floor)."""
    popularity = _counts(train.items, num_items)
    tiebreak = popularity
    out: Dict[str, Dict] = {}
    notes: Dict[str, str] = {}

    def _accuracies(scores, name):
        hits = per_rating.setdefault(name, {}) if per_rating is not None else None
        return _scored(scores, evaluation, tiebreak, exclude_history, ks, hits)

    out["popularity"] = _accuracies(popularity, "popularity")
    recent = train.timestamps >= train.timestamps.max() - RECENT_DAYS * 86400
    out["recent_popularity"] = _accuracies(_counts(train.items[recent], num_items), "recent_popularity")
    gram = _co_occurrence(train, num_items)
    ease = _ease(gram) if num_items <= EASE_MAX_ITEMS else None  # before the cosine is written over gram
    out["item_knn"] = _accuracies(_history_sum(_cosine_in_place(gram)), "item_knn")
    del gram
    if ease is not None:
        out["ease"] = _accuracies(_history_sum(ease), "ease")
    else:
        notes["ease"] = f"skipped: {num_items} movies > {EASE_MAX_ITEMS} (its item-item inverse would not fit the time)"
    if notes:
        out["notes"] = notes
    return out


def accuracies_only(baselines: Mapping[str, Mapping]) -> Dict[str, Dict[int, float]]:
    """The {name: {k: accuracy}} part of `compute`'s result (without "notes")."""
    return {name: dict(values) for name, values in baselines.items() if name != "notes"}


def best_at(baselines: Mapping[str, Mapping[int, float]], k: int) -> float:
    """The best baseline's top-k accuracy (the Evaluator's default value floor)."""
    return accuracies_only(baselines)[best_name_at(baselines, k)][k]


def best_name_at(baselines: Mapping[str, Mapping[int, float]], k: int) -> str:
    """The best baseline at top-k (the first listed of equals): the Evaluator's floor baseline."""
    scored = accuracies_only(baselines)
    return max(scored, key=lambda name: scored[name][k])
