"""`movielens-tfx recommend` against a served model, hostile cases: k beyond the catalog or the model's top-K,
a history leaving fewer than k movies, strict JSON, incomplete newer versions, a read-only output
directory and titles holding terminal escapes. One small model, trained once for the module (the
`recommend` argument cases that need no model are in tests/hostile)."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tensorflow as tf
from helpers import tft_analyze

from app import cli
from retrieval import index
from trainer import export, task
from trainer.config import TOP_KS, ModelConfig
from trainer.metrics import catalog_embeddings
from transform import features as F

RAW_SPEC = {name: spec for name, spec in F.raw_rating_spec((1,)).items() if name in (F.USER_ID, F.MOVIE_TITLE, F.TIMESTAMP)}
NUM_MOVIES, TOP_K = 30, 20
VERSION = "1000"
# Titles a catalog may hold: terminal escapes (clear the screen, red), a bell, a bidirectional override;
# the exported catalog also holds bytes that are not UTF-8 (TFT's vocabulary itself refuses those).
HOSTILE_TITLES = {1: b"\x1b[2J\x1b[31mEvil\x07 (1995)", 2: "Bidi \u202etxt.exe (1995)".encode()}
NOT_UTF8 = {3: b"Bad \xff bytes (1995)"}


def _title(movie, exported=False):
    return (NOT_UTF8 if exported else {}).get(movie) or HOSTILE_TITLES.get(movie, f"Movie {movie} (1995)".encode())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """<out>/serving/movielens_retrieval/1000: a tutorial-tower model (exclude_history on) trained one epoch."""
    tmp = tmp_path_factory.mktemp("recommend")
    rng = np.random.default_rng(4)
    rows = [{F.USER_ID: str(rng.integers(1, 40)).encode(), F.MOVIE_TITLE: _title(int(rng.integers(1, NUM_MOVIES + 1))),
             F.TIMESTAMP: 880_000_000 + int(rng.integers(0, 10**6))} for _ in range(600)]
    tft_output = tft_analyze(rows, str(tmp / "tft"), RAW_SPEC)
    layer = tft_output.transform_features_layer()
    config = ModelConfig(epochs=1, batch_size=128, export_top_k=TOP_K)
    model = task.build_model(tft_output, config)
    columns = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    dataset = tf.data.Dataset.from_tensor_slices(columns).batch(128).map(lambda raw: export.transform_raw(layer, raw))
    model.fit(dataset, epochs=1, verbose=0)
    ids = np.array([str(m).encode() for m in range(1, NUM_MOVIES + 1)])
    titles = np.array([_title(m, exported=True) for m in range(1, NUM_MOVIES + 1)])
    candidates = catalog_embeddings(model, layer, {F.MOVIE_TITLE: titles})
    out = tmp / "out"
    export.save(str(out / "serving" / "movielens_retrieval" / VERSION), model, tft_output, candidates, ids, titles,
                k=TOP_K, ks=TOP_KS, exclude_history=True)
    return str(out)


@pytest.fixture
def output(served, tmp_path):
    """A copy of the served output this test may change."""
    copy = str(tmp_path / "out")
    shutil.copytree(served, copy)
    return copy


@pytest.fixture
def recommend(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the fallback log directory

    def run(output, *args):
        code = cli.main(["recommend", "--user", "7", "--output", output, *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err
    return run


def _reject(constant):
    raise ValueError(f"not JSON: {constant}")


def test_k_beyond_the_catalog_or_the_models_top_k_is_one_line(served, recommend):
    model = os.path.join(served, "serving", "movielens_retrieval", VERSION)
    assert recommend(served, "-k", "31", "--history", "") == (2, "", f"error: -k 31: the catalog of {model} has 30 movies\n")
    assert recommend(served, "-k", "21", "--history", "") == (
        2, "", f"error: -k 21: {model} returns at most its top 20 movies (the Trainer's export_top_k): "
               "ask for -k 20 or fewer\n")
    code, out, err = recommend(served, "-k", "20", "--history", "", "--json")
    assert (code, err) == (0, "") and len(json.loads(out)["recommendations"]) == 20


def test_a_rated_movie_is_never_returned_fewer_rows_with_a_note_and_the_json_is_strict(served, recommend):
    history = [str(m) for m in range(1, 28)]  # 27 of the 30 movies rated: 3 remain
    code, out, err = recommend(served, "-k", "10", "--history", ",".join(history), "--json")
    assert (code, err) == (0, "")
    answer = json.loads(out, parse_constant=_reject)  # no -Infinity, NaN
    ids = [r["movie_id"] for r in answer["recommendations"]]
    assert sorted(ids) == ["28", "29", "30"]
    assert all(np.isfinite(r["score"]) for r in answer["recommendations"])
    assert answer["note"] == ("only 3 of the 10 asked: every other movie of the model's top 20 is in the user's "
                              "history (27 movies)")
    code, out, _ = recommend(served, "-k", "10", "--history", ",".join(history))
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("top 3 for user 7 ") and len(lines) == 5
    assert [line.split()[0] for line in lines[1:4]] == ["1.", "2.", "3."] and "-inf" not in out
    assert lines[4] == f"note: {answer['note']}"
    # Every movie rated: an empty list, still JSON.
    code, out, _ = recommend(served, "--history", ",".join(str(m) for m in range(1, 31)), "--json")
    assert code == 0 and json.loads(out, parse_constant=_reject)["recommendations"] == []


def test_titles_with_terminal_escapes_are_printed_escaped(served, recommend):
    rated = ",".join(str(m) for m in range(4, 14))  # the top 20 is then every other movie, 1 to 3 included
    code, out, _ = recommend(served, "-k", "20", "--history", rated)
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b[2J\\x1b[31mEvil\\x07 (1995)" in out
    assert "Bidi \\u202etxt.exe (1995)" in out
    assert "Bad \ufffd bytes (1995)" in out  # not UTF-8: replaced, no traceback
    # JSON carries the title as data, escaped by JSON itself.
    code, out, _ = recommend(served, "-k", "20", "--history", rated, "--json")
    titles = [r["title"] for r in json.loads(out)["recommendations"]]
    assert "\x1b[2J\x1b[31mEvil\x07 (1995)" in titles and "\x1b" not in out


def test_int64_timestamps_at_the_limits_are_answered(served, recommend):
    for timestamp in ("9223372036854775807", "-9223372036854775808"):
        code, out, err = recommend(served, "--timestamp", timestamp, "--history", "5,6:-9223372036854775808", "--json")
        assert (code, err) == (0, ""), err
        answer = json.loads(out, parse_constant=_reject)
        assert answer["timestamp"] == int(timestamp) and len(answer["recommendations"]) == 10


@pytest.mark.parametrize("broken, problem", [
    ("empty", "no saved_model.pb"),
    ("no-variables", "no variables/variables.index"),
    ("no-saved-model", "no saved_model.pb"),
    ("no-data-shard", "no variables/variables.data-*"),
    ("corrupted", "cannot be loaded: "),
])
def test_an_incomplete_newest_version_falls_back_to_the_newest_complete_one(output, recommend, broken, problem):
    serving = os.path.join(output, "serving", "movielens_retrieval")
    good = os.path.join(serving, VERSION)
    newer = os.path.join(serving, "2000")
    if broken == "empty":
        os.makedirs(newer)
    else:
        shutil.copytree(good, newer)
        if broken == "no-variables":
            shutil.rmtree(os.path.join(newer, "variables"))
        elif broken == "no-saved-model":
            os.remove(os.path.join(newer, "saved_model.pb"))
        elif broken == "no-data-shard":
            for name in os.listdir(os.path.join(newer, "variables")):
                if name.startswith("variables.data-"):
                    os.remove(os.path.join(newer, "variables", name))
        else:
            with open(os.path.join(newer, "saved_model.pb"), "wb") as f:
                f.write(b"not a SavedModel")
    code, out, err = recommend(output, "--history", "", "--json")
    assert code == 0, err
    assert err.startswith(f"note: serving version 2000 ({problem}") and err.endswith(f") skipped: using {VERSION}\n")
    assert err.count("\n") == 1
    answer = json.loads(out)
    assert answer["model"] == good and answer["skipped_versions"][0].startswith(f"2000 ({problem}")
    # Nothing complete: one line naming each version and why.
    shutil.rmtree(good)
    code, out, err = recommend(output, "--history", "")
    assert code == 2 and out == "" and err.startswith(f"error: no complete model in {serving}: 2000 ({problem}")
    assert err.count("\n") == 1


@pytest.fixture
def read_only(output, tmp_path):
    """`output` as a read-only file system (a read-only bind mount as root; else its permissions)."""
    if os.geteuid() != 0:
        subprocess.run(["chmod", "-R", "a-w", output], check=True)
        yield output
        subprocess.run(["chmod", "-R", "u+w", output], check=True)
        return
    mount_point = str(tmp_path / "ro")
    os.makedirs(mount_point)
    for command in (["mount", "--bind", output, mount_point], ["mount", "-o", "remount,ro,bind", mount_point]):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            subprocess.run(["umount", mount_point], capture_output=True)
            pytest.skip(f"cannot mount read-only here: {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", mount_point], check=True)


def test_a_read_only_output_directory_is_served_and_the_log_goes_to_the_cache(read_only, cli, tmp_path):
    home = tmp_path / "home"
    before = sorted(os.listdir(read_only))
    result = cli("recommend", "--user", "7", "--history", "1,2", "-k", "5", "--output", read_only,
                 env={**os.environ, "HOME": str(home)}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("top 5 for user 7 ") and len(lines) == 6
    assert sorted(os.listdir(read_only)) == before  # nothing written there
    assert os.path.getsize(home / ".cache" / "movielens-tfx" / "logs" / "recommend.log") > 0


def _ids(answer):
    return [r["movie_id"] for r in answer["recommendations"]]


def test_recommend_index_never_returns_a_rated_movie_and_equals_the_exact_top_k(served, recommend, monkeypatch):
    rng = np.random.default_rng(5)
    histories = [[]] + [rng.choice(np.arange(1, NUM_MOVIES + 1), size=n, replace=False).tolist() for n in (1, 5, 12, 20)]
    for movies in histories:
        rated = ",".join(str(m) for m in movies)
        code, out, err = recommend(served, "-k", "10", "--history", rated, "--json")
        exact = json.loads(out, parse_constant=_reject)
        code, out, err = recommend(served, "-k", "10", "--history", rated, "--json", "--index")
        assert (code, err) == (0, ""), err
        approx = json.loads(out, parse_constant=_reject)
        # 30 movies: one list, an exact search; the same movies, order and scores as serving_default.
        assert approx["index"] == "exact (flat)" and _ids(approx) == _ids(exact)
        np.testing.assert_allclose([r["score"] for r in approx["recommendations"]],
                                   [r["score"] for r in exact["recommendations"]], atol=2e-4)
    # An inverted file whose one probed list of three cannot hold k unrated movies: never a rated one, still k.
    monkeypatch.setattr(index, "default_nlist", lambda movies: 3)
    monkeypatch.setattr(index, "default_nprobe", lambda nlist: 1)
    for n in (0, 5, 15, 20):
        movies = rng.choice(np.arange(1, NUM_MOVIES + 1), size=n, replace=False).tolist()
        code, out, err = recommend(served, "-k", "10", "--history", ",".join(map(str, movies)), "--json", "--index")
        answer = json.loads(out, parse_constant=_reject)
        assert code == 0 and answer["index"] == "faiss IVF3,Flat nprobe 1"
        assert len(_ids(answer)) == 10 and not set(_ids(answer)) & {str(m) for m in movies}
    # Beyond the model's top-K (20), up to the catalog; 27 rated: the 3 others, with a note.
    code, out, _ = recommend(served, "-k", "30", "--history", "", "--json", "--index")
    assert code == 0 and sorted(_ids(json.loads(out)), key=int) == [str(m) for m in range(1, 31)]
    code, out, _ = recommend(served, "-k", "10", "--history", ",".join(str(m) for m in range(1, 28)), "--index")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("top 3 for user 7 ") and ", faiss IVF3,Flat nprobe 1); " in lines[0]
    assert lines[-1] == ("note: only 3 of the 10 asked: every other movie of the catalog is in the user's history "
                         "(27 movies)")
    # Titles from the embeddings file, printed as safely as serving_default's.
    code, out, _ = recommend(served, "-k", "30", "--history", "", "--index")
    assert "\x1b" not in out and "\\x1b[2J\\x1b[31mEvil\\x07 (1995)" in out and "Bad \ufffd bytes (1995)" in out


def test_recommend_index_on_a_model_exported_before_the_embeddings_is_one_line(output, recommend):
    model = os.path.join(output, "serving", "movielens_retrieval", VERSION)
    shutil.rmtree(os.path.join(model, "embeddings"))
    assert recommend(output, "--history", "", "--index") == (
        2, "", f"error: --index: {model} has no query_embedding signature or no embeddings/candidates.json (exported "
               "before them): run the pipeline again, or ask without --index\n")


@pytest.mark.parametrize("remote", [False, True], ids=["local", "ram"])
def test_the_pushed_version_holds_the_embeddings_file_of_its_savedmodel(served, tmp_path, monkeypatch, remote):
    """Both publish protocols carry embeddings/candidates.json; on an object store saved_model.pb is still the last
    copy. The file's ids, titles and embeddings are the SavedModel's catalog variables."""
    from components import atomic_pusher

    model_path = os.path.join(served, "serving", "movielens_retrieval", VERSION)
    base = f"ram://{tmp_path.name}-push/serving" if remote else str(tmp_path / "serving")
    copies = []
    copy = atomic_pusher.copy_file
    monkeypatch.setattr(atomic_pusher, "copy_file", lambda src, dst: (copies.append(dst[len(base):]), copy(src, dst)))
    try:
        pushed = (atomic_pusher.publish_remote if remote else atomic_pusher.publish_local)(model_path, base, "2000")
        if remote:
            assert copies[-1] == "/2000/saved_model.pb" and "/2000/embeddings/candidates.json" in copies
        assert atomic_pusher.tree(pushed)["embeddings/candidates.json"] == os.path.getsize(
            os.path.join(model_path, "embeddings", "candidates.json"))
        with tf.io.gfile.GFile(f"{pushed}/embeddings/candidates.json", "rb") as f:
            text = f.read()
        lines = text.decode("ascii").splitlines()
        records = [json.loads(line, parse_constant=_reject) for line in lines]
        saved = tf.saved_model.load(model_path)
        assert len(records) == NUM_MOVIES == int(saved.movie_ids.shape[0])
        assert [r["id"] for r in records] == [m.decode() for m in saved.movie_ids.numpy()]
        assert [r["embedding_metadata"]["title"] for r in records] == [
            t.decode("utf-8", "replace") for t in saved.titles.numpy()]
        assert "\x1b[2J\x1b[31mEvil\x07 (1995)" in [r["embedding_metadata"]["title"] for r in records]
        np.testing.assert_array_equal(np.array([r["embedding"] for r in records], np.float32), saved.candidates.numpy())
    finally:
        if remote and tf.io.gfile.exists(base):
            tf.io.gfile.rmtree(base)
