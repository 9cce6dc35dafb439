"""The popularity baseline: recommend the most-rated train movies to everyone.

Top-k accuracy is the share of eval ratings whose movie is among the k movies
with the most train ratings (ties broken by movie id), the floor any
personalised model has to beat.
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, Sequence

import numpy as np

from components.movielens.reader import MovieLensData


def popularity_top_k(data: MovieLensData, train: np.ndarray, evaluation: np.ndarray, ks: Sequence[int]) -> Dict[str, float]:
    """{"top_k": accuracy} of the popularity ranking on the eval rows."""
    movie_ids = data.ratings.movie_ids
    counts = Counter(movie_ids[i] for i in train)
    ranking = sorted(counts, key=lambda movie: (-counts[movie], int(movie)))
    rank = {movie: position for position, movie in enumerate(ranking)}
    eval_ranks = np.array([rank.get(movie_ids[i], len(ranking)) for i in evaluation])
    return {f"top_{k}": float(np.mean(eval_ranks < k)) for k in ks}
