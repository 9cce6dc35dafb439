"""An approximate top-k index over the candidate embeddings (faiss IVF), excluding rated movies as serving does.

The exact path (trainer.export: serving_default) scores every catalog movie
with one matmul and takes the top k, the rated movies at -inf. This index
answers the same question approximately: an inverted file (faiss
`IndexIVFFlat`, inner product): k-means splits the catalog into `nlist`
lists around centroids; a query scans the `nprobe` lists whose centroids
score highest with it, with the exact inner product (no compression), so a
movie it finds has the exact path's score and only a movie in an unprobed
list can be missed. Why faiss and how nlist / nprobe were chosen:
docs/performance.md (exact top-K or an approximate index).

Exclusion: each query searches k + (its rated movies in the catalog) and
drops the rated ones, so at least k others remain; when the probed lists
hold fewer than that, the query is searched again over every list. So a
rated movie is never returned and k are returned whenever the catalog has k
unrated movies.

faiss is imported when an index is built, not with this module, so
`movielens-tfx recommend` without --index does not load it.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

# faiss' k-means wants at least this many training points per centroid (it warns below).
MIN_POINTS_PER_LIST = 39
# The lists probed by default. With about sqrt(movies) lists, the probes a recall needs hardly change with the
# catalog's size: bench/serving_bench.py chose 16 (the fewest with recall@100 >= 0.96 on its tuning queries) at
# 100k, 1M and 10M movies alike (docs/performance.md). On ml-100k's 1,682 movies (41 lists) 16 give the exact
# top-10 for every one of 1,000 requests (recall@100 0.999); 4 gave recall@10 0.961, 8 0.997.
DEFAULT_NPROBE = 16


def default_nlist(movies: int) -> int:
    """About sqrt(movies) lists, each with enough movies to train its centroid; 1 (an exact index) for few movies."""
    return max(1, min(int(round(math.sqrt(movies))), movies // MIN_POINTS_PER_LIST))


def default_nprobe(nlist: int) -> int:
    return min(nlist, DEFAULT_NPROBE)


class CandidateIndex:
    """Inner-product top-k over `embeddings` (float32 [movies, d]) whose results are catalog positions."""

    def __init__(self, embeddings: np.ndarray, nlist: Optional[int] = None, nprobe: Optional[int] = None,
                 seed: int = 1234):
        import faiss

        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise ValueError(f"embeddings of shape {embeddings.shape}: need [movies, d] with at least one movie")
        self.size, self.dim = embeddings.shape
        self.nlist = min(int(nlist or default_nlist(self.size)), self.size)
        if self.nlist <= 1:
            self.nlist = 1
            self.index = faiss.IndexFlatIP(self.dim)
        else:
            self.index = faiss.index_factory(self.dim, f"IVF{self.nlist},Flat", faiss.METRIC_INNER_PRODUCT)
            self.index.cp.seed = seed
            self.index.train(embeddings)
        self.index.add(embeddings)
        self.nprobe = self.set_nprobe(nprobe or default_nprobe(self.nlist))

    def set_nprobe(self, nprobe: int) -> int:
        self.nprobe = max(1, min(int(nprobe), self.nlist))
        if self.nlist > 1:
            self.index.nprobe = self.nprobe
        return self.nprobe

    @property
    def description(self) -> str:
        return "exact (flat)" if self.nlist == 1 else f"faiss IVF{self.nlist},Flat nprobe {self.nprobe}"

    @property
    def nbytes(self) -> int:
        """The index's memory: the vectors, their ids and the centroids."""
        return self.size * (self.dim * 4 + (8 if self.nlist > 1 else 0)) + (self.nlist * self.dim * 4 if self.nlist > 1 else 0)

    def search(self, queries: np.ndarray, k: int, excluded: Optional[Sequence[Sequence[int]]] = None
               ) -> List[Tuple[np.ndarray, np.ndarray]]:
        """Per query (float32 [batch, d]): (scores float32 [<= k], catalog positions int64 [<= k]), best first,
        never a position of `excluded[row]` (each row's rated movies' catalog positions)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        excluded = [set(int(p) for p in row) for row in excluded] if excluded is not None else [set()] * len(queries)
        if len(excluded) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(excluded)} exclusion lists")
        wanted = min(self.size, k + max((len(e) for e in excluded), default=0))
        scores, positions = self.index.search(queries, wanted)
        out = []
        for row in range(len(queries)):
            result = self._kept(scores[row], positions[row], excluded[row], k)
            if len(result[1]) < min(k, self.size - len(excluded[row])) and self.nprobe < self.nlist:
                result = self._exhaustive(queries[row:row + 1], wanted, excluded[row], k)
            out.append(result)
        return out

    def _exhaustive(self, query: np.ndarray, wanted: int, excluded: set, k: int) -> Tuple[np.ndarray, np.ndarray]:
        nprobe = self.nprobe
        self.set_nprobe(self.nlist)
        try:
            scores, positions = self.index.search(query, wanted)
        finally:
            self.set_nprobe(nprobe)
        return self._kept(scores[0], positions[0], excluded, k)

    @staticmethod
    def _kept(scores: np.ndarray, positions: np.ndarray, excluded: set, k: int) -> Tuple[np.ndarray, np.ndarray]:
        keep = [i for i, p in enumerate(positions.tolist()) if p >= 0 and p not in excluded][:k]
        return scores[keep].astype(np.float32), positions[keep].astype(np.int64)
