"""preprocessing_fn through tft_beam, the retrieval model with the toggle both ways, and the export."""

import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import no_history, tft_analyze

from movielens import reader, synthetic
from trainer import export, task
from trainer.config import TOP_KS, ModelConfig
from trainer.metrics import catalog_embeddings, factorized_top_k
from transform import features as F

# The tutorial's raw features, with the shape SchemaGen infers ([1]).
RAW_SPEC = {name: spec for name, spec in F.raw_rating_spec((1,)).items() if name in (F.USER_ID, F.MOVIE_TITLE, F.TIMESTAMP)}


def analyze(rows, out_dir, custom_config=None):
    return tft_analyze(rows, out_dir, RAW_SPEC, custom_config)


def _rows(data, indices):
    r = data.ratings
    return [
        {F.USER_ID: r.user_ids[i].encode(), F.MOVIE_TITLE: data.movies[r.movie_ids[i]].title.encode(), F.TIMESTAMP: int(r.timestamps[i])}
        for i in indices
    ]


def test_preprocessing_fn_vocabularies_buckets_and_normalisation(tmp_path):
    rows = [
        {F.USER_ID: b"u1", F.MOVIE_TITLE: b"Star Wars (1977)", F.TIMESTAMP: 1000},
        {F.USER_ID: b"u1", F.MOVIE_TITLE: b"Star Trek (1979)", F.TIMESTAMP: 2000},
        {F.USER_ID: b"u2", F.MOVIE_TITLE: b"Star Wars (1977)", F.TIMESTAMP: 4000},
    ]
    out = analyze(rows, str(tmp_path / "tft"), {"num_timestamp_buckets": 10})
    assert out.vocabulary_by_name(F.USER_VOCAB) == [b"u1", b"u2"]
    assert set(out.vocabulary_by_name(F.TITLE_VOCAB)) == {b"Star Wars (1977)", b"Star Trek (1979)"}
    assert set(out.vocabulary_by_name(F.TOKEN_VOCAB)) == {b"star", b"wars", b"1977", b"trek", b"1979"}
    assert out.vocabulary_by_name(F.TOKEN_VOCAB)[0] == b"star"  # most frequent first
    assert sorted(out.vocabulary_by_name(F.TITLE_FREQUENCY_VOCAB)) == [b"1 Star Trek (1979)", b"2 Star Wars (1977)"]

    layer = out.transform_features_layer()
    got = export.transform_raw(layer, {
        F.USER_ID: tf.constant([b"u2", b"stranger"]),
        F.TIMESTAMP: tf.constant([1000, 4000], tf.int64),
    })
    assert got[F.USER_INDEX].numpy().tolist() == [1, 2]  # unknown user -> OOV bucket (vocab size)
    z = got[F.TIMESTAMP_Z].numpy()
    mean, std = np.mean([1000, 2000, 4000]), np.std([1000, 2000, 4000])
    np.testing.assert_allclose(z, [(1000 - mean) / std, (4000 - mean) / std], rtol=1e-4)
    # 10 boundaries evenly between min (1000) and max (4000): buckets are monotonic.
    ts = tf.constant(np.linspace(0, 5000, 60).astype(np.int64))
    buckets = export.transform_raw(layer, {F.USER_ID: tf.fill([60], "u1"), F.TIMESTAMP: ts})[F.TIMESTAMP_BUCKET].numpy()
    assert (np.diff(buckets) >= 0).all() and buckets[0] == 0 and buckets[-1] == 10
    assert len(set(buckets)) == 11


def test_quantile_boundaries_are_monotonic(tmp_path):
    rng = np.random.RandomState(0)
    rows = [{F.USER_ID: b"u", F.MOVIE_TITLE: b"m", F.TIMESTAMP: int(t)} for t in rng.exponential(1e5, 500)]
    out = analyze(rows, str(tmp_path / "tft"), {"timestamp_buckets": "quantiles", "num_timestamp_buckets": 20})
    layer = out.transform_features_layer()
    ts = np.sort(np.array([r[F.TIMESTAMP] for r in rows]))
    buckets = export.transform_raw(layer, {F.TIMESTAMP: tf.constant(ts), F.USER_ID: tf.fill([500], "u")})[F.TIMESTAMP_BUCKET].numpy()
    assert (np.diff(buckets) >= 0).all()
    counts = np.bincount(buckets)
    assert counts.max() < 3 * 500 / 20  # quantiles: no bucket holds much more than its share


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Synthetic ratings whose movie depends mostly on the time of day."""
    tmp = str(tmp_path_factory.mktemp("planted"))
    path = synthetic.generate(tmp, num_users=100, num_movies=120, num_ratings=8000, seed=5, time_of_day_effect=0.8, days=60)
    data = reader.load(path)
    train, evaluation = reader.split_indices(data.ratings.timestamps, "random", 0.8, 42)
    out = analyze(_rows(data, train), os.path.join(tmp, "tft"))
    catalog_ids = np.array(sorted(data.movies, key=int), dtype=object).astype(bytes)
    catalog_titles = np.array([data.movies[m.decode()].title.encode() for m in catalog_ids])
    return {"data": data, "train": _rows(data, train), "eval": _rows(data, evaluation), "tft": out,
            "catalog_ids": catalog_ids, "catalog_titles": catalog_titles, "dir": tmp}


def _dataset(rows, tft_output, batch_size):
    columns = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    layer = tft_output.transform_features_layer()
    return tf.data.Dataset.from_tensor_slices(columns).batch(batch_size).map(lambda raw: export.transform_raw(layer, raw))


def _train_and_measure(planted, config):
    tft_output = planted["tft"]
    model = task.build_model(tft_output, config)
    model.fit(_dataset(planted["train"], tft_output, config.batch_size).shuffle(64, seed=0), epochs=config.epochs, verbose=0)
    candidates = catalog_embeddings(model, tft_output.transform_features_layer(), {F.MOVIE_TITLE: planted["catalog_titles"]})
    metrics = factorized_top_k(model, candidates, _dataset(planted["eval"], tft_output, 1024), TOP_KS)
    return model, candidates, metrics


@pytest.mark.parametrize("use_timestamps", [False, True])
def test_model_trains_a_step_with_the_toggle_both_ways(planted, use_timestamps):
    config = ModelConfig(use_timestamps=use_timestamps, time_of_day=True, epochs=1, batch_size=256)
    model = task.build_model(planted["tft"], config)
    batch = next(iter(_dataset(planted["train"], planted["tft"], 256)))
    model.compute_loss(batch)  # builds the weights
    before = [w.numpy().copy() for w in model.query_tower.trainable_weights]
    loss = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(loss) and loss > 0
    names = {w.name.split("/")[1] for w in model.query_tower.trainable_weights}
    assert ("timestamp_bucket_embedding" in names) == use_timestamps
    assert ("hour_embedding" in names) == use_timestamps
    after = model.query_tower.trainable_weights
    assert any(not np.allclose(b, a.numpy()) for b, a in zip(before, after, strict=True))


def test_timestamp_model_learns_the_planted_time_of_day_preference(planted):
    config = ModelConfig(epochs=6, batch_size=256, learning_rate=0.01, optimizer="adam", embedding_dim=32, time_of_day=True)
    _, _, ids_only = _train_and_measure(planted, config)
    _, _, with_time = _train_and_measure(planted, ModelConfig(**{**config.__dict__, "use_timestamps": True}))
    assert with_time[10] > ids_only[10] + 0.05, (ids_only, with_time)


def test_exported_model_answers_known_and_unknown_users(planted, tmp_path):
    config = ModelConfig(use_timestamps=True, time_of_day=True, epochs=1, batch_size=512, export_top_k=20)
    model, candidates, _ = _train_and_measure(planted, config)
    path = str(tmp_path / "model")
    export.save(path, model, planted["tft"], candidates, planted["catalog_ids"], planted["catalog_titles"], k=20, ks=TOP_KS)
    serve = tf.saved_model.load(path).signatures[export.SERVING_SIGNATURE]
    out = serve(user_id=tf.constant(["1", "no-such-user", ""]), timestamp=tf.constant([880_000_000, 880_000_000, -5], tf.int64),
                **no_history(3))
    assert out["movie_titles"].shape == (3, 20) and out["scores"].shape == (3, 20)
    titles = set(planted["catalog_titles"].tolist())
    assert all(t in titles for t in out["movie_titles"].numpy().ravel())
    assert (np.diff(out["scores"].numpy(), axis=1) <= 0).all()  # best first
    assert np.isfinite(out["scores"].numpy()).all()
    ids = out["movie_ids"].numpy()[0]
    assert len(set(ids)) == 20  # unique catalog keys

    # 10,000 requests: known, unknown and empty users; timestamps far outside
    # the training range, negative, zero.
    rng = np.random.RandomState(0)
    users = tf.constant([str(u) if u > 0 else "" for u in rng.randint(-50, 400, size=10_000)])
    timestamps = tf.constant(rng.choice([-(10**9), -1, 0, 880_000_000, 4 * 10**9, 2**40], size=10_000), tf.int64)
    out = serve(user_id=users, timestamp=timestamps, **no_history(10_000))
    assert out["scores"].shape == (10_000, 20) and np.isfinite(out["scores"].numpy()).all()

    # A malformed request is refused with a message that names the expected type.
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError), match="expected to be a int64 tensor"):
        serve(user_id=tf.constant(["1"]), timestamp=tf.constant(["yesterday"]), **no_history(1))
