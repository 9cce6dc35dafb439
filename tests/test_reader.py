"""MovieLens reading: the three layouts, splits, and every class of bad input."""

import os
import zipfile

import numpy as np
import pytest

from movielens import reader, synthetic
from movielens.reader import DataError


def _gen(tmp_path, layout="ml-100k", **kw):
    kw.setdefault("num_users", 20)
    kw.setdefault("num_movies", 30)
    kw.setdefault("num_ratings", 300)
    return synthetic.generate(str(tmp_path / layout), layout=layout, seed=3, **kw)


@pytest.mark.parametrize("layout", synthetic.LAYOUTS)
@pytest.mark.parametrize("as_zip", [False, True])
def test_every_layout_reads_the_same_ratings(tmp_path, layout, as_zip):
    data = reader.load(_gen(tmp_path, layout, as_zip=as_zip))
    reference = reader.load(_gen(tmp_path / "ref", "ml-100k"))
    assert data.layout == layout
    assert len(data.ratings) == 300 and len(data.movies) == 30
    assert data.ratings.user_ids == reference.ratings.user_ids
    assert data.ratings.movie_ids == reference.ratings.movie_ids
    np.testing.assert_array_equal(data.ratings.timestamps, reference.ratings.timestamps)
    assert data.movies == reference.movies  # same titles and genre ids
    assert (data.users is None) == (layout == "csv")


def test_real_ml100k_counts(ml100k_path):
    data = reader.load(ml100k_path)
    assert (data.layout, len(data.ratings), len(data.movies), len(data.users)) == ("ml-100k", 100_000, 1682, 943)
    assert data.movies["1"].title == "Toy Story (1995)"
    assert [reader.GENRES[g] for g in data.movies["1"].genres] == ["Animation", "Children", "Comedy"]
    train, evaluation = reader.split_indices(data.ratings.timestamps, "random", 0.8, 42)
    assert (len(train), len(evaluation)) == (80_000, 20_000)
    train, evaluation = reader.split_indices(data.ratings.timestamps, "temporal", 0.8, 42)
    assert (len(train), len(evaluation)) == (80_000, 20_000)
    assert data.ratings.timestamps[train].max() <= data.ratings.timestamps[evaluation].min()


def test_random_split_is_seeded_and_disjoint():
    timestamps = np.arange(1000)
    a = reader.split_indices(timestamps, "random", 0.8, seed=42)
    b = reader.split_indices(timestamps, "random", 0.8, seed=42)
    c = reader.split_indices(timestamps, "random", 0.8, seed=7)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    assert len(a[0]) == 800 and len(set(a[0]) & set(a[1])) == 0 and len(a[0]) + len(a[1]) == 1000


def test_temporal_split_puts_no_eval_rating_before_a_train_rating():
    timestamps = np.random.RandomState(0).randint(0, 50, size=1000)  # many ties
    train, evaluation = reader.split_indices(timestamps, "temporal", 0.7, seed=0)
    assert len(train) == 700
    assert timestamps[train].max() <= timestamps[evaluation].min()


def test_empty_split_is_an_error():
    with pytest.raises(DataError, match="empty eval split"):
        reader.split_indices(np.arange(3), "random", 0.9, seed=0)


def _append(path, text: bytes):
    with open(path, "ab") as f:
        f.write(text)


@pytest.mark.parametrize(
    "layout, file, line, reason",
    [
        ("ml-100k", "u.data", b"1\t2\t3\n", "expected 4 fields"),
        ("ml-100k", "u.data", b"x1\t2\t3\t880000000\n", "user id 'x1' is not an integer"),
        ("ml-100k", "u.data", b"1\t2\t3\tyesterday\n", "timestamp 'yesterday' is not an integer"),
        ("ml-100k", "u.data", b"1\t9999\t3\t880000000\n", "unknown movie id 9999"),
        ("ml-100k", "u.data", b"999\t2\t3\t880000000\n", "unknown user id 999"),
        ("ml-100k", "u.data", b"1\t2\tgood\t880000000\n", "rating 'good' is not a number"),
        ("ml-100k", "u.data", b"1\t2\t3\t88\xff0000\n", "undecodable bytes"),
        ("ml-1m", "ratings.dat", b"1::2::3\n", "expected 4 fields"),
        ("csv", "ratings.csv", b'1,2,"3.0,880000000\n', "malformed CSV"),
        ("csv", "movies.csv", b"31,Caf\xe9 (1999),Comedy\n", "undecodable bytes"),
    ],
)
def test_bad_row_stops_with_file_line_and_reason(tmp_path, layout, file, line, reason):
    path = _gen(tmp_path, layout)
    with open(os.path.join(path, file), "rb") as f:
        line_number = f.read().count(b"\n") + 1
    _append(os.path.join(path, file), line)
    with pytest.raises(DataError) as error:
        reader.load(path)
    message = str(error.value)
    assert f"{file}:{line_number}: " in message and reason in message
    assert "--max-bad-rows" in message


def test_bad_rows_are_quarantined_and_counted_when_tolerated(tmp_path):
    path = _gen(tmp_path)
    _append(os.path.join(path, "u.data"), b"1\t9999\t3\t880000000\nbroken\n")
    data = reader.load(path, max_bad_rows=2)
    assert len(data.ratings) == 300 and len(data.bad_rows) == 2
    out = tmp_path / "q.tsv"
    with open(out, "w") as stream:
        reader.write_quarantine(data.bad_rows, stream)
    rows = out.read_text().splitlines()
    assert rows[0] == "file\tline\treason\trow" and len(rows) == 3
    assert "unknown movie id 9999" in rows[1] and "\t301\t" in rows[1]
    with pytest.raises(DataError, match="more than --max-bad-rows 1"):
        reader.load(path, max_bad_rows=1)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        reader.load(str(tmp_path / "nowhere"))
    path = _gen(tmp_path)
    os.remove(os.path.join(path, "u.item"))
    with pytest.raises(DataError, match=r"u\.item: missing"):
        reader.load(path)
    path = _gen(tmp_path / "b")
    open(os.path.join(path, "u.data"), "w").close()
    with pytest.raises(DataError, match=r"u\.data: empty"):
        reader.load(path)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match="not a MovieLens dataset"):
        reader.load(str(tmp_path / "c"))


def test_unsafe_zip_archives_are_refused(tmp_path, monkeypatch):
    traversal = tmp_path / "evil.zip"
    with zipfile.ZipFile(traversal, "w") as zf:
        zf.writestr("../../etc/u.data", "1\t1\t1\t1\n")
    with pytest.raises(DataError, match="path traversal"):
        reader.load(str(traversal))
    archive = synthetic.generate(str(tmp_path / "ok"), num_users=5, num_movies=5, num_ratings=50, as_zip=True)
    monkeypatch.setattr(reader, "MAX_ZIP_MEMBER_BYTES", 100)
    with pytest.raises(DataError, match="unpacks to .* bytes"):
        reader.load(archive)
