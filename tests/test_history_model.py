"""The history-aware model: exclusion against an oracle, what it learns, and its serving edge cases."""

import types

import numpy as np
import pytest
import tensorflow as tf
from helpers import tft_analyze

from movielens import history, reader
from retrieval import embeddings, index
from trainer import export, task
from trainer.config import NAMED_CONFIGS, TOP_KS
from trainer.data import RAW_MOVIE_ID
from trainer.metrics import catalog_embeddings, factorized_top_k
from transform import features as F

RAW_SPEC = F.raw_rating_spec((1,))
N = 20  # history length in these tests


def test_exclusion_metric_matches_an_in_top_k_oracle():
    rng = np.random.default_rng(0)
    num_movies, dim, batch = 30, 4, 64
    candidates = rng.normal(size=(num_movies, dim)).astype(np.float32)
    ids = np.array([str(i).encode() for i in range(num_movies)])
    queries = rng.normal(size=(batch, dim)).astype(np.float32)
    targets = rng.integers(0, num_movies, size=batch)
    histories = [rng.choice(np.delete(np.arange(num_movies), t), size=rng.integers(0, 8), replace=False) for t in targets]
    model = types.SimpleNamespace(query_tower=lambda b: b["q"], candidate_tower=lambda b: b["c"])
    # Half of each history arrives as history, the rest as rated_before (eval examples carry both).
    first = tf.ragged.constant([[ids[i] for i in h[:2]] for h in histories], dtype=tf.string).to_sparse()
    rest = tf.ragged.constant([[ids[i] for i in h[2:]] for h in histories], dtype=tf.string).to_sparse()
    dataset = [{"q": tf.constant(queries), "c": tf.constant(candidates[targets]), F.HISTORY: first,
                F.RATED_BEFORE: rest, RAW_MOVIE_ID: tf.constant(ids[targets])}]
    got = factorized_top_k(model, tf.constant(candidates), dataset, (1, 5, 10), catalog_ids=ids)
    # Oracle: tf.math.in_top_k over the full scores, the history's movies removed.
    scores = queries @ candidates.T
    for row, h in enumerate(histories):
        scores[row, h] = -1e9  # in_top_k counts a row holding -inf as a miss
    for k in (1, 5, 10):
        expected = tf.math.in_top_k(tf.constant(targets), tf.constant(scores), k).numpy().mean()
        assert got[k] == pytest.approx(expected), k
    # Without exclusion the history's movies compete: never better than with it.
    plain = factorized_top_k(model, tf.constant(candidates), dataset, (1, 5, 10))
    assert all(plain[k] <= got[k] for k in (1, 5, 10))


def _rows(data, rows, histories, rated=None):
    """Raw feature rows as ExampleGen writes them (rated_before: eval rows only)."""
    out = []
    for i in rows:
        h = histories.of(i)
        before = rated.of(i) if rated is not None else np.zeros(0, np.int64)
        out.append({
            F.USER_ID: data.user_ids[i].encode(), F.MOVIE_ID: data.movie_ids[i].encode(),
            F.MOVIE_TITLE: data.movies[data.movie_ids[i]].encode(), F.TIMESTAMP: int(data.timestamps[i]),
            F.HISTORY: np.array([data.movie_ids[j].encode() for j in h], dtype=object),
            F.HISTORY_TIMESTAMPS: np.array(data.timestamps[h], np.int64),
            F.RATED_BEFORE: np.array([data.movie_ids[j].encode() for j in before], dtype=object),
        })
    return out


class _Planted:
    """MovieLens-like data whose next movie follows from the previous one: users walk a chain of movies
    (m -> m + 1, with a random jump now and then), so a popularity list is flat and only the history helps."""

    def __init__(self, num_users=300, num_movies=80, per_user=30, seed=8):
        rng = np.random.default_rng(seed)
        self.movies = {str(m): f"Movie {m} ({1950 + m % 50})" for m in range(1, num_movies + 1)}
        users, movies, times = [], [], []
        for user in range(1, num_users + 1):
            current, when = rng.integers(1, num_movies + 1), 880_000_000 + rng.integers(0, 86400 * 50)
            for _ in range(per_user):
                users.append(str(user))
                movies.append(str(current))
                times.append(when)
                current = current % num_movies + 1 if rng.random() < 0.85 else rng.integers(1, num_movies + 1)
                when += rng.integers(600, 86400 * 3)
        self.user_ids, self.movie_ids, self.timestamps = users, movies, np.array(times, np.int64)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A history model trained on planted chains (temporal split), exported."""
    tmp = tmp_path_factory.mktemp("history")
    data = _Planted()
    train, evaluation = reader.split_indices(data.timestamps, "temporal", 0.8, 0)
    is_eval = np.zeros(len(data.timestamps), bool)
    is_eval[evaluation] = True
    codes = {u: i for i, u in enumerate(dict.fromkeys(data.user_ids))}
    user_codes = np.array([codes[u] for u in data.user_ids])
    histories = history.build(user_codes, data.timestamps, is_eval, N)
    rated = history.build(user_codes, data.timestamps, is_eval, F.MAX_RATED_BEFORE)
    train_rows, eval_rows = _rows(data, train, histories), _rows(data, evaluation, histories, rated)
    tft_output = tft_analyze(train_rows, str(tmp / "tft"), RAW_SPEC)
    config = NAMED_CONFIGS["default"].replace(history_length=N, epochs=10, embedding_dim=32, batch_size=256,
                                              learning_rate=0.01, use_timestamps=True, export_top_k=20)
    layer = tft_output.transform_features_layer()

    def batches(rows, batch_size):
        """tf.data batches of transformed features, with the raw history and movie id (as trainer.data.rating_batches)."""
        raw = {name: tf.constant([row[name] for row in rows]) for name in (F.USER_ID, F.MOVIE_ID, F.MOVIE_TITLE)}
        raw[F.TIMESTAMP] = tf.constant([row[F.TIMESTAMP] for row in rows], tf.int64)
        for name, dtype in ((F.HISTORY, tf.string), (F.HISTORY_TIMESTAMPS, tf.int64), (F.RATED_BEFORE, tf.string)):
            raw[name] = tf.ragged.constant([list(row[name]) for row in rows], dtype=dtype, ragged_rank=1)

        def transformed(batch):
            out = export.transform_raw(layer, batch)
            out[F.HISTORY] = batch[F.HISTORY].to_sparse()
            out[F.RATED_BEFORE] = batch[F.RATED_BEFORE].to_sparse()
            out[RAW_MOVIE_ID] = batch[F.MOVIE_ID]
            return out
        return tf.data.Dataset.from_tensor_slices(raw).batch(batch_size).map(transformed)

    model = task.build_model(tft_output, config)
    order = np.random.default_rng(0).permutation(len(train_rows))
    model.fit(batches([train_rows[i] for i in order], 256), epochs=config.epochs, verbose=0)
    catalog_ids = np.array(sorted(data.movies, key=int), dtype=object).astype(bytes)
    catalog = {F.MOVIE_ID: catalog_ids, F.MOVIE_TITLE: np.array([data.movies[m.decode()].encode() for m in catalog_ids])}
    candidates = catalog_embeddings(model, layer, catalog)
    metrics = factorized_top_k(model, candidates, batches(eval_rows, 1024), TOP_KS, catalog_ids=catalog_ids)
    path = str(tmp / "model")
    export.save(path, model, tft_output, candidates, catalog_ids, catalog[F.MOVIE_TITLE], k=20, ks=TOP_KS,
                family="history", exclude_history=True)
    loaded = tf.saved_model.load(path)
    return {"data": data, "train": train, "eval_rows": eval_rows, "metrics": metrics, "model": loaded,
            "catalog_ids": catalog_ids, "max_train_time": int(data.timestamps[train].max()), "path": path,
            "config": config}


def _request(rows):
    width = max(1, max(len(r[F.HISTORY]) for r in rows))
    pad = lambda values, fill: list(values) + [fill] * (width - len(values))  # noqa: E731
    return {
        "user_id": tf.constant([r[F.USER_ID] for r in rows]),
        "timestamp": tf.constant([r[F.TIMESTAMP] for r in rows], tf.int64),
        "history": tf.constant([pad(r[F.HISTORY], b"") for r in rows]),
        "history_timestamps": tf.constant([pad(r[F.HISTORY_TIMESTAMPS], 0) for r in rows], tf.int64),
    }


def test_history_model_learns_what_comes_next_on_the_future(trained):
    data, train = trained["data"], trained["train"]
    counts = {}
    for i in train:
        counts[data.movie_ids[i]] = counts.get(data.movie_ids[i], 0) + 1
    top10 = set(sorted(counts, key=lambda m: -counts[m])[:10])
    popularity_top10 = np.mean([r[F.MOVIE_ID].decode() in top10 for r in trained["eval_rows"]])
    # 85% of the time the next movie is the last one + 1: the history says which.
    assert trained["metrics"][10] > popularity_top10 + 0.3, (trained["metrics"], popularity_top10)


def test_evaluate_hits_agrees_with_the_trainer_metric(trained):
    evaluate = trained["model"].signatures[export.EVAL_SIGNATURE]
    examples = []
    for row in trained["eval_rows"]:
        e = tf.train.Example()
        f = e.features.feature
        for name in (F.USER_ID, F.MOVIE_ID, F.MOVIE_TITLE):
            f[name].bytes_list.value.append(row[name])
        f[F.TIMESTAMP].int64_list.value.append(row[F.TIMESTAMP])
        f[F.HISTORY].bytes_list.value.extend(list(row[F.HISTORY]))
        f[F.HISTORY_TIMESTAMPS].int64_list.value.extend(row[F.HISTORY_TIMESTAMPS].tolist())
        f[F.RATED_BEFORE].bytes_list.value.extend(list(row[F.RATED_BEFORE]))
        examples.append(e.SerializeToString())
    hits = evaluate(examples=tf.constant(examples))
    for k in TOP_KS:
        assert hits[export.hit_output(k)].numpy().mean() == pytest.approx(trained["metrics"][k], abs=0.002), k


def test_serving_excludes_the_history_and_answers_every_edge_case(trained):
    serve = trained["model"].signatures[export.SERVING_SIGNATURE]
    rows = [r for r in trained["eval_rows"] if len(r[F.HISTORY]) >= 5][:50]
    out = serve(**_request(rows))
    for row, ids in zip(rows, out["movie_ids"].numpy(), strict=True):
        assert not set(ids) & set(row[F.HISTORY])  # never recommends what the user already rated
    assert np.isfinite(out["scores"].numpy()).all()

    one = rows[0]
    base = _request([one])
    empty = serve(user_id=base["user_id"], timestamp=base["timestamp"], history=tf.fill([1, 0], ""),
                  history_timestamps=tf.zeros([1, 0], tf.int64))
    assert empty["movie_ids"].shape == (1, 20) and np.isfinite(empty["scores"].numpy()).all()
    half = trained["catalog_ids"][: len(trained["catalog_ids"]) // 2]
    many = np.resize(half, 10_000)  # 10,000 ids, duplicates included, half the catalog
    big = serve(user_id=base["user_id"], timestamp=base["timestamp"], history=tf.constant([many]),
                history_timestamps=tf.fill([1, 10_000], tf.constant(one[F.TIMESTAMP] - 3600, tf.int64)))
    assert np.isfinite(big["scores"].numpy()).all()
    assert not set(big["movie_ids"].numpy()[0]) & set(half)
    unknown = serve(user_id=base["user_id"], timestamp=base["timestamp"],
                    history=tf.constant([[b"no-such-movie", b"", *one[F.HISTORY][:3]]]),
                    history_timestamps=tf.constant([[0, 0, *one[F.HISTORY_TIMESTAMPS][:3]]], tf.int64))
    with_known = serve(user_id=base["user_id"], timestamp=base["timestamp"], history=tf.constant([one[F.HISTORY][:3]]),
                       history_timestamps=tf.constant([one[F.HISTORY_TIMESTAMPS][:3]], tf.int64))
    np.testing.assert_allclose(unknown["scores"].numpy(), with_known["scores"].numpy(), rtol=1e-5)  # unknown ids ignored
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError), match="expected to be a string tensor"):
        serve(user_id=base["user_id"], timestamp=base["timestamp"], history=tf.constant([[50, 172]]),
              history_timestamps=tf.constant([[0, 0]], tf.int64))


def test_query_embedding_times_the_catalog_gives_serving_defaults_top_k(trained):
    """The timestamp variant with the hour's affinity: the query vector carries the affinity dims, and so do the
    candidates in the embeddings file; <query, candidate> is the served score."""
    model, config = trained["model"], trained["config"]
    assert "hour_affinity" in config.time_features
    rows = [r for r in trained["eval_rows"] if len(r[F.HISTORY]) >= 3][:64] + [
        {**trained["eval_rows"][0], F.HISTORY: np.array([], object), F.HISTORY_TIMESTAMPS: np.array([], np.int64)}]
    request = _request(rows)
    query = model.signatures[export.QUERY_SIGNATURE](**request)[export.QUERY_OUTPUT].numpy()
    assert query.dtype == np.float32 and query.shape == (len(rows), config.embedding_dim + config.affinity_dim)
    catalog = embeddings.read(trained["path"])
    assert catalog.embeddings.shape == (len(trained["catalog_ids"]), config.embedding_dim + config.affinity_dim)
    np.testing.assert_array_equal(catalog.embeddings, model.candidates.numpy())
    scores = query @ catalog.embeddings.T
    for row, r in enumerate(rows):
        scores[row, [catalog.ids.index(m.decode()) for m in r[F.HISTORY]]] = -np.inf
    served = model.signatures[export.SERVING_SIGNATURE](**request)
    top = np.argsort(-scores, axis=1, kind="stable")[:, :20]
    assert [[catalog.ids[p] for p in row] for row in top] == [[m.decode() for m in row] for row in served["movie_ids"].numpy()]
    np.testing.assert_allclose(np.take_along_axis(scores, top, axis=1), served["scores"].numpy(), rtol=1e-5, atol=1e-6)
    # The approximate index over the file, every list probed, gives the same top 20 with the same exclusion.
    ann = index.CandidateIndex(catalog.embeddings, nlist=2)
    ann.set_nprobe(2)
    excluded = [[catalog.ids.index(m.decode()) for m in r[F.HISTORY]] for r in rows]
    assert [positions.tolist() for _, positions in ann.search(query, 20, excluded)] == top.tolist()


def test_time_features_are_bounded_after_the_training_range(trained):
    serve = trained["model"].signatures[export.SERVING_SIGNATURE]
    rows = [r for r in trained["eval_rows"] if len(r[F.HISTORY]) >= 3][:50]
    last = trained["max_train_time"]
    later = last + 520 * 7 * 86400  # 10 years later, same weekday and hour

    def at(t):
        request = _request(rows)
        request["timestamp"] = tf.fill([len(rows)], tf.constant(t, tf.int64))
        request["history_timestamps"] = tf.fill(tf.shape(request["history_timestamps"]), tf.constant(t - 10**9, tf.int64))
        return serve(**request)

    np.testing.assert_allclose(at(later)["scores"].numpy(), at(last)["scores"].numpy(), rtol=1e-5, atol=1e-6)
    now = at(int(__import__("time").time()))
    top10 = {tuple(ids[:10]) for ids in now["movie_ids"].numpy()}
    assert len(top10) > 10  # 50 known users at "now" do not all get the same list
