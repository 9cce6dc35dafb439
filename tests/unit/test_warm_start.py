"""Warm start on planted vocabularies: rows move by id, new ids keep their fresh rows, mismatches are skipped."""

import json
import uuid

import numpy as np
import pytest
import tensorflow as tf

from trainer import warm_start
from trainer.config import NAMED_CONFIGS
from trainer.families.history import HistoryQueryTower, MovieCandidateTower
from trainer.families.tutorial import CandidateTower, QueryTower
from trainer.model import RetrievalModel
from transform import features as F

MOVIE_TABLE = "candidate_tower/movie_embedding/embeddings"
OLD = [b"a", b"b", b"c"]
NEW = [b"c", b"d", b"a"]  # c and a move, b is dropped, d is new


def _history_model(vocabulary, seed, **changes):
    """The default config's history towers at a tiny size, weights built (vocabulary: the movie ids)."""
    config = NAMED_CONFIGS["default"].replace(
        **{"history_length": 4, "embedding_dim": 8, "tower_layers": (6,), "seed": seed, **changes})
    tf.keras.utils.set_random_seed(seed)
    movies = MovieCandidateTower(len(vocabulary), config)
    model = RetrievalModel(HistoryQueryTower(movies, len(vocabulary), config), movies, config.temperature)
    model.query_tower(_history_batch([[0]]))
    model.candidate_tower({F.MOVIE_INDEX: tf.constant([0], tf.int64)})
    return model


def _history_batch(rows):
    return {F.HISTORY_INDEX: tf.ragged.constant(rows, dtype=tf.int64).to_sparse()}


def _values(model):
    return {name: weight.numpy().copy() for name, weight in warm_start.weight_names(model).items()}


def _plant(model):
    """Known, distinct values in every weight (each table row differs)."""
    for i, weight in enumerate(model.weights):
        weight.assign(np.arange(weight.shape.num_elements(), dtype=np.float32).reshape(weight.shape) / 100 + i)
    return _values(model)


@pytest.fixture
def base(tmp_path):
    """A planted base model with its sidecar, as the Trainer writes it next to the SavedModel."""
    model = _history_model(OLD, seed=1)
    values = _plant(model)
    path = str(tmp_path / "base_model")
    warm_start.write_sidecar(path, model, {F.MOVIE_VOCAB: OLD})
    return {"model": model, "values": values, "path": path}


def test_stable_names_do_not_depend_on_what_the_process_built_before():
    first, second = _history_model(OLD, seed=1), _history_model(OLD, seed=1)
    assert [w.name for w in first.weights] != [w.name for w in second.weights]  # Keras: dense/... then dense_1/...
    names = sorted(warm_start.weight_names(first))
    assert names == sorted(warm_start.weight_names(second))
    assert len(names) == len(first.weights)
    # The shared table is named once, after its owner; the query token by its attribute.
    assert MOVIE_TABLE in names and "query_tower/query_token" in names
    assert warm_start.vocabulary_tables(first) == {MOVIE_TABLE: F.MOVIE_VOCAB}


def test_sidecar_holds_every_weight_and_the_vocabulary(base):
    directory = f"{base['path']}/assets.extra/warm_start"
    with open(f"{directory}/manifest.json") as f:
        manifest = json.load(f)
    assert manifest["tables"] == {MOVIE_TABLE: F.MOVIE_VOCAB}
    assert manifest["vocabularies"] == {F.MOVIE_VOCAB: 3}
    assert manifest["weights"][MOVIE_TABLE] == [4, 8]  # 3 movies + the OOV row
    with open(f"{directory}/vocabularies/{F.MOVIE_VOCAB}.txt", "rb") as f:
        assert f.read() == b"a\nb\nc\n"
    weights, tables, vocabularies = warm_start.read_sidecar(base["path"])
    assert set(weights) == set(base["values"])
    for name, value in base["values"].items():
        np.testing.assert_array_equal(weights[name], value)
    assert tables == manifest["tables"] and vocabularies == {F.MOVIE_VOCAB: OLD}


def test_rows_move_by_id_new_ids_stay_fresh_and_dense_weights_are_copied(base):
    model = _history_model(NEW, seed=2)
    fresh = _values(model)
    summary = warm_start.warm_start(model, base["path"], {F.MOVIE_VOCAB: NEW})
    got, old = _values(model), base["values"]

    # Oracle, row by row: a shared id's row is the base's row of that id; a new id keeps its fresh row;
    # the OOV row (last) is the base's OOV row.
    table = got[MOVIE_TABLE]
    for row, movie in enumerate(NEW):
        expected = old[MOVIE_TABLE][OLD.index(movie)] if movie in OLD else fresh[MOVIE_TABLE][row]
        np.testing.assert_array_equal(table[row], expected)
    np.testing.assert_array_equal(table[len(NEW)], old[MOVIE_TABLE][len(OLD)])
    assert not np.array_equal(table[1], old[MOVIE_TABLE][1])  # d did not inherit b's row
    for name in set(got) - {MOVIE_TABLE}:
        np.testing.assert_array_equal(got[name], old[name], err_msg=name)

    assert summary["warm_started"] is True
    assert summary["weights_copied"] == len(got) - 1
    assert summary["tables"] == {MOVIE_TABLE: {"vocabulary": F.MOVIE_VOCAB, "shared_ids": 2, "new_ids": 1,
                                               "dropped_ids": 1}}
    assert (summary["rows_copied"], summary["new_ids"]) == (3, 1)  # a, c and the OOV row; d
    assert summary["skipped"] == {} and summary["base_unused"] == []
    json.dumps(summary)  # goes into metrics.json

    # End to end: the warm-started model embeds a and c, and a history of them, exactly as the base did.
    a_c_old, a_c_new = [OLD.index(b"a"), OLD.index(b"c")], [NEW.index(b"a"), NEW.index(b"c")]
    np.testing.assert_allclose(
        model.candidate_tower({F.MOVIE_INDEX: tf.constant(a_c_new, tf.int64)}),
        base["model"].candidate_tower({F.MOVIE_INDEX: tf.constant(a_c_old, tf.int64)}), rtol=1e-6)
    np.testing.assert_allclose(model.query_tower(_history_batch([a_c_new])),
                               base["model"].query_tower(_history_batch([a_c_old])), rtol=1e-5, atol=1e-6)


def test_weights_whose_shape_changed_keep_their_fresh_initialisation(base):
    # A longer history (position embedding [6, 8], was [4, 8]) and a wider hidden layer (10, was 6).
    model = _history_model(NEW, seed=2, history_length=6, tower_layers=(10,))
    fresh = _values(model)
    summary = warm_start.warm_start(model, base["path"], {F.MOVIE_VOCAB: NEW})
    got = _values(model)
    position = "query_tower/position_embedding/embeddings"
    hidden, output = "query_tower/projection/layer_with_weights-0", "query_tower/projection/layer_with_weights-1"
    assert summary["skipped"] == {
        position: "shape [4, 8] in the base, [6, 8] now",
        f"{hidden}/kernel": "shape [16, 6] in the base, [16, 10] now",
        f"{hidden}/bias": "shape [6] in the base, [10] now",
        f"{output}/kernel": "shape [6, 8] in the base, [10, 8] now",
    }
    for name in summary["skipped"]:
        np.testing.assert_array_equal(got[name], fresh[name], err_msg=name)
    np.testing.assert_array_equal(got[f"{output}/bias"], base["values"][f"{output}/bias"])  # [8] both times
    np.testing.assert_array_equal(got[MOVIE_TABLE][0], base["values"][MOVIE_TABLE][2])  # c still moves
    assert summary["weights_copied"] == len(got) - 1 - len(summary["skipped"])


def test_a_new_embedding_width_copies_nothing(base):
    model = _history_model(NEW, seed=2, embedding_dim=4, tower_layers=(5,))  # every shape changes
    fresh = _values(model)
    summary = warm_start.warm_start(model, base["path"], {F.MOVIE_VOCAB: NEW})
    assert summary["warm_started"] is False
    assert summary["cold_start_because"] == "no weight of the base model fits this model"
    assert summary["skipped"][MOVIE_TABLE] == "row shape [8] in the base, [4] now"
    for name, value in _values(model).items():
        np.testing.assert_array_equal(value, fresh[name])


def test_a_base_without_sidecar_or_no_base_is_a_cold_start(tmp_path):
    model = _history_model(NEW, seed=2)
    fresh = _values(model)
    old_model = str(tmp_path / "model_from_before_warm_start")
    tf.io.gfile.makedirs(old_model)
    summary = warm_start.warm_start(model, old_model, {F.MOVIE_VOCAB: NEW})
    assert summary == {"base_model": old_model, "warm_started": False, "cold_start_because":
                       "the base model has no warm-start sidecar (assets.extra/warm_start/manifest.json)"}
    assert warm_start.warm_start(model, None, {F.MOVIE_VOCAB: NEW})["cold_start_because"] == \
        "no blessed model to start from"
    for name, value in _values(model).items():
        np.testing.assert_array_equal(value, fresh[name])


def _tutorial_model(users, titles, tokens, seed):
    config = NAMED_CONFIGS["tutorial"].replace(embedding_dim=4, seed=seed)
    tf.keras.utils.set_random_seed(seed)
    model = RetrievalModel(QueryTower(len(users), 10, config), CandidateTower(len(titles), len(tokens), config))
    model.query_tower({F.USER_INDEX: tf.constant([0], tf.int64)})
    model.candidate_tower({F.TITLE_INDEX: tf.constant([0], tf.int64),
                           F.TITLE_TOKENS: tf.ragged.constant([[0, 1]], dtype=tf.int64).to_sparse()})
    return model


def test_the_tutorial_towers_key_users_titles_and_words_on_ram():
    """Every vocabulary-keyed table of the tutorial's towers, through gfile on a non-local filesystem."""
    titles, tokens = [b"Heat (1995)", b"Up (2009)"], [b"heat", b"up", b"1995"]
    base = _tutorial_model(OLD, titles, tokens, seed=1)
    old = _plant(base)
    tables = {"query_tower/user_embedding/embeddings": F.USER_VOCAB,
              "candidate_tower/title_embedding/embeddings": F.TITLE_VOCAB,
              "candidate_tower/token_embedding/embeddings": F.TOKEN_VOCAB}
    assert warm_start.vocabulary_tables(base) == tables
    root = f"ram://{uuid.uuid4().hex}/model"
    vocabularies = {F.USER_VOCAB: OLD, F.TITLE_VOCAB: titles, F.TOKEN_VOCAB: tokens}
    warm_start.write_sidecar(root, base, vocabularies)

    model = _tutorial_model(NEW, titles, tokens, seed=2)
    fresh = _values(model)
    summary = warm_start.warm_start(model, root, {**vocabularies, F.USER_VOCAB: NEW})
    users = _values(model)["query_tower/user_embedding/embeddings"]
    for row, user in enumerate(NEW):
        expected = (old if user in OLD else fresh)["query_tower/user_embedding/embeddings"][
            OLD.index(user) if user in OLD else row]
        np.testing.assert_array_equal(users[row], expected)
    assert summary["tables"]["candidate_tower/title_embedding/embeddings"] == {
        "vocabulary": F.TITLE_VOCAB, "shared_ids": 2, "new_ids": 0, "dropped_ids": 0}
    assert (summary["rows_copied"], summary["new_ids"]) == ((2 + 1) + (2 + 1) + (3 + 1), 1)
    tf.io.gfile.rmtree(root.rsplit("/", 1)[0])
