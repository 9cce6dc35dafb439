"""The embeddings file (Vertex AI Vector Search JSON lines) and the approximate index (retrieval/), without a model.

The trained-model checks (query_embedding against serving_default, the file against the SavedModel's
catalog, the pushed version, `recommend --index`) are in tests/test_history_model.py, tests/test_recommend.py
and tests/test_acceptance_ml100k.py.
"""

import json

import numpy as np
import pytest

from retrieval import embeddings, index

# Titles a catalog may hold: quotes, backslashes, non-ASCII, a line separator, control characters, bytes that
# are not UTF-8.
TITLES = [b'Say "Cheese" \\ (1995)', "Amélie – 東京 😀 (2001)".encode(), "Line\u2028Separator\nand tab\t".encode(),
          b"\x1b[31mEscape\x07", b"Bad \xff bytes"]


def _clustered(rng, movies, dim, clusters=20, spread=0.3):
    """Unit-norm vectors around a few centres, like a trained (L2-normalised) candidate tower's."""
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(0, clusters, movies)] + spread * rng.standard_normal((movies, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_the_embeddings_file_is_ascii_json_lines_that_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    # Magnitudes from 1 to 1e-6, float32.
    vectors = (rng.standard_normal((len(TITLES), 7)) * 1e-3 ** rng.integers(0, 3, (len(TITLES), 7))).astype(np.float32)
    ids = [str(i).encode() for i in range(len(TITLES))]
    path = embeddings.write(str(tmp_path / "model"), ids, TITLES, vectors)
    assert path == str(tmp_path / "model" / "embeddings" / "candidates.json")
    assert sorted(p.name for p in (tmp_path / "model" / "embeddings").iterdir()) == ["candidates.json"]
    raw = (tmp_path / "model" / "embeddings" / "candidates.json").read_bytes()
    raw.decode("ascii")  # every other character escaped by json
    lines = raw.decode("ascii").split("\n")
    assert lines[-1] == "" and len(lines) == len(TITLES) + 1  # one line a movie, each ended by "\n"
    records = [json.loads(line) for line in lines[:-1]]
    assert [set(r) for r in records] == [{"id", "embedding", "embedding_metadata"}] * len(TITLES)
    assert [r["id"] for r in records] == [str(i) for i in range(len(TITLES))]
    assert [r["embedding_metadata"]["title"] for r in records] == [t.decode("utf-8", "replace") for t in TITLES]
    np.testing.assert_array_equal(np.array([r["embedding"] for r in records], np.float32), vectors)  # bit for bit
    back = embeddings.read(str(tmp_path / "model"))
    assert back.ids == [str(i) for i in range(len(TITLES))] and back.titles[1] == "Amélie – 東京 😀 (2001)"
    np.testing.assert_array_equal(back.embeddings, vectors)


def test_the_embeddings_file_refuses_what_vector_search_would_not_ingest(tmp_path):
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        embeddings.write(str(tmp_path), [b"1"], [b"t"], np.array([[np.nan, 1.0]], np.float32))
    with pytest.raises(ValueError, match="one row of each per movie"):
        embeddings.write(str(tmp_path), [b"1", b"2"], [b"t"], np.zeros((2, 3), np.float32))


def _exact(queries, vectors, k, excluded):
    scores = queries @ vectors.T
    for row, rated in enumerate(excluded):
        scores[row, list(rated)] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [o[np.isfinite(scores[row, o])] for row, o in enumerate(order)]


def test_the_index_never_returns_an_excluded_movie_and_returns_k_others():
    rng = np.random.default_rng(1)
    vectors = _clustered(rng, 5000, 16)
    ann = index.CandidateIndex(vectors)
    assert ann.nlist == index.default_nlist(5000) == 71 and ann.nprobe == index.default_nprobe(71) == 16
    queries = _clustered(rng, 50, 16)
    exact_top = _exact(queries, vectors, 500, [()] * 50)
    # Exclude most of each query's own exact top: the rated movies are where the query points.
    excluded = [set(top[rng.random(500) < 0.8].tolist()) for top in exact_top]
    for k in (1, 10, 100):
        results = ann.search(queries, k, excluded)
        for (scores, positions), rated in zip(results, excluded, strict=True):
            assert len(positions) == k and not set(positions.tolist()) & rated
            assert np.all(np.diff(scores) <= 0)
    # Every list probed: the exact top-k, exclusion included.
    ann.set_nprobe(ann.nlist)
    for (scores, positions), expected, row in zip(ann.search(queries, 100, excluded),
                                                  _exact(queries, vectors, 100, excluded), range(50), strict=True):
        np.testing.assert_array_equal(positions, expected)
        np.testing.assert_allclose(scores, queries[row] @ vectors[expected].T, rtol=1e-5, atol=1e-6)


def test_the_index_probes_every_list_when_the_probed_ones_leave_fewer_than_k():
    rng = np.random.default_rng(2)
    vectors = _clustered(rng, 4000, 8, clusters=64, spread=0.05)
    ann = index.CandidateIndex(vectors, nprobe=1)
    query = vectors[:1]
    # Nearly the whole catalog rated: only 3 movies remain, likely none in the probed list.
    keep = rng.choice(4000, 3, replace=False)
    rated = set(range(4000)) - set(keep.tolist())
    [(scores, positions)] = ann.search(query, 10, [rated])
    assert sorted(positions.tolist()) == sorted(keep.tolist())
    assert ann.nprobe == 1  # restored


def test_a_small_catalog_is_searched_exactly():
    rng = np.random.default_rng(3)
    vectors = _clustered(rng, 60, 8)
    ann = index.CandidateIndex(vectors)
    assert ann.nlist == 1 and ann.description == "exact (flat)"
    [(scores, positions)] = ann.search(vectors[:1], 60, [{0, 1, 2}])
    np.testing.assert_array_equal(positions, _exact(vectors[:1], vectors, 60, [{0, 1, 2}])[0])
