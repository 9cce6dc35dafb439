"""Spans: cutting flat data into span-N/ directories, reading a window back, and refusing bad spans."""

import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf

from components import example_gen
from movielens import reader, spans, synthetic
from movielens.reader import DataError

DAY = 86_400
START = 880_000_000  # synthetic.generate's first possible timestamp


def _write_100k(directory, ratings, num_movies=6, num_users=3):
    """A tiny ml-100k directory; ratings: (user, movie, timestamp) rows."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "u.data"), "w") as f:
        f.writelines(f"{u}\t{m}\t4\t{t}\n" for u, m, t in ratings)
    with open(os.path.join(directory, "u.item"), "w", encoding="latin-1") as f:
        f.writelines(f"{m}|Movie {m} (1995)|01-Jan-1995||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n"
                     for m in range(1, num_movies + 1))
    with open(os.path.join(directory, "u.user"), "w") as f:
        f.writelines(f"{u}|30|M|other|12345\n" for u in range(1, num_users + 1))
    return directory


def test_spans_are_cut_by_time_from_the_first_day_and_read_back_whole(tmp_path):
    flat = synthetic.generate(str(tmp_path / "flat"), num_users=30, num_movies=40, num_ratings=900, days=60, seed=3)
    manifest = spans.write(flat, str(tmp_path / "spans"), span_days=7)
    data = reader.load(flat)
    expected = (data.ratings.timestamps - data.ratings.timestamps.min() // DAY * DAY) // (7 * DAY)
    assert manifest.counts == {s: int(c) for s, c in enumerate(np.bincount(expected))}
    assert spans.available(str(tmp_path / "spans")) == list(range(len(manifest.counts)))
    # Same data, same spans: a second cut writes identical files.
    again = spans.write(flat, str(tmp_path / "again"), span_days=7)
    assert again.counts == manifest.counts
    for span in manifest.counts:
        with open(spans.span_dir(str(tmp_path / "spans"), span) + "/u.data") as a, \
             open(spans.span_dir(str(tmp_path / "again"), span) + "/u.data") as b:
            assert a.read() == b.read()
    last = max(manifest.counts)
    loaded, span_index = spans.load(str(tmp_path / "spans"), last)
    assert len(loaded.ratings) == len(data.ratings) and loaded.movies == data.movies and loaded.users == data.users
    assert np.array_equal(np.bincount(span_index), np.bincount(expected))
    # Every rating sits in the span its timestamp says, and none was lost or changed.
    assert np.array_equal(span_index, spans.span_of(loaded.ratings.timestamps, manifest.origin, 7))
    key = lambda d: sorted(zip(d.ratings.user_ids, d.ratings.movie_ids, d.ratings.timestamps.tolist(),
                               d.ratings.ratings.tolist(), strict=True))
    assert key(loaded) == key(data)


def test_a_new_cut_deletes_the_span_folders_of_an_earlier_cut(tmp_path):
    flat = synthetic.generate(str(tmp_path / "flat"), num_users=30, num_movies=40, num_ratings=900, days=60, seed=3)
    root = str(tmp_path / "spans")
    finer = spans.write(flat, root, span_days=3)
    with open(os.path.join(spans.span_dir(root, 0), "stray.txt"), "w") as f:
        f.write("a file of the earlier cut")
    coarser = spans.write(flat, root, span_days=7)
    assert len(finer.counts) > len(coarser.counts) > 1
    # The manifest and the folders agree: the spans of the 3-day cut beyond the 7-day cut's last are gone.
    assert spans.available(root) == sorted(coarser.counts) == sorted(spans.Manifest.read(root).counts)
    assert sorted(os.listdir(root)) == sorted([f"span-{s}" for s in coarser.counts] + [spans.MANIFEST])
    assert "stray.txt" not in os.listdir(spans.span_dir(root, 0))  # no file of the earlier cut stays
    loaded, span_index = spans.load(root, max(coarser.counts))
    assert np.bincount(span_index).tolist() == [coarser.counts[s] for s in sorted(coarser.counts)]


def test_window_splits_train_on_the_spans_before_and_gate_on_the_span():
    span_index = np.array([0, 0, 1, 2, 2, 3, 4, 4, 5])
    splits = spans.window_splits(span_index, 4, window_spans=2)
    assert splits["train"].tolist() == [3, 4, 5]  # spans 2 and 3
    assert splits["eval"].tolist() == [6, 7]
    assert splits["previous"].tolist() == [5]
    assert spans.window_splits(span_index, 2, window_spans=10)["train"].tolist() == [0, 1, 2]  # from the first span
    with pytest.raises(DataError, match="span 0 is the first span: there is nothing before it to train on"):
        spans.window_splits(span_index, 0, window_spans=2)


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "data"
    for span in range(4):
        _write_100k(str(root / f"span-{span}"), [(1, 1 + span, START + span * 7 * DAY + 10), (2, 2 + span, START + span * 7 * DAY + 20)])
    return str(root)


def test_a_missing_span_is_named(layout):
    os.rename(os.path.join(layout, "span-1"), os.path.join(layout, "old-span-1"))
    with pytest.raises(DataError, match=r"span-1: span 1 is missing \(spans 0..3 are needed; found 0, 2..3\)"):
        spans.load(layout, 3)
    with pytest.raises(DataError, match=r"span-7: span 7 is missing"):
        spans.load(layout, 7)


def test_a_span_without_ratings_is_named(layout):
    open(os.path.join(layout, "span-2", "u.data"), "w").close()
    with pytest.raises(DataError, match=r"span-2/u.data: empty: no data rows"):
        spans.load(layout, 3)


def test_spans_out_of_order_are_refused(layout):
    # Span 3 holds a rating from before span 2's latest one.
    _write_100k(os.path.join(layout, "span-3"), [(1, 5, START + 7 * DAY)])
    with pytest.raises(DataError, match=r"span-3/u.data:1: spans out of order: user 1's rating of movie 5 at "
                                        r"1997-11-.* is earlier than the latest rating of span 2 \(.*, .*span-2/u.data:2\)"):
        spans.load(layout, 3)


def test_a_corrupted_span_file_names_its_line(layout):
    with open(os.path.join(layout, "span-2", "u.data"), "a") as f:
        f.write("1\tnot-a-movie\t4\n")
    with pytest.raises(DataError, match=r"span-2/u.data:3: "):
        spans.load(layout, 3)


def _examples(tmp_path, root, span, window_spans, span_window=spans.WINDOW_IN_EXAMPLE_GEN):
    component = example_gen.MovieLensExampleGen(data_path=root, split_method="span", window_spans=window_spans,
                                                max_history=10, span_window=span_window)
    settings = example_gen.read_settings(component.exec_properties)  # the custom_config is already JSON
    out = {}
    with beam.Pipeline() as pipeline:
        _, splits, sizes = example_gen.generate_examples(pipeline, root, spans.SPAN_PATTERN, settings, span)
        for name, pcoll in splits.items():
            _ = (pcoll | f"InOrder[{name}]" >> beam.combiners.ToList()
                 | f"Flat[{name}]" >> beam.FlatMap(lambda shards: [e for _, examples in sorted(shards) for e in examples])
                 | f"Write[{name}]" >> beam.io.WriteToTFRecord(str(tmp_path / f"{span_window}-{name}"),
                                                               shard_name_template=""))
    for name in sizes:
        out[name] = []
        for record in tf.data.TFRecordDataset(str(tmp_path / f"{span_window}-{name}")):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            out[name].append((feature["user_id"].bytes_list.value[0].decode(),
                              feature["movie_id"].bytes_list.value[0].decode(),
                              [m.decode() for m in feature["history"].bytes_list.value]))
    return out


def test_the_run_for_a_span_carries_history_from_every_earlier_span(tmp_path):
    # User 1 rates movie 1 in span 0, movie 2 in span 1, movie 3 in span 3 and movie 4 in span 4;
    # the run for span 4 with a window of 1 trains on span 3 only, but histories reach back to span 0.
    root = tmp_path / "data"
    rows = {0: [(1, 1, START + 10), (2, 6, START + 20)], 1: [(1, 2, START + 7 * DAY + 10)], 2: [(2, 5, START + 14 * DAY)],
            3: [(1, 3, START + 21 * DAY + 10)], 4: [(1, 4, START + 28 * DAY + 10), (2, 4, START + 28 * DAY + 10)]}
    for span, ratings in rows.items():
        _write_100k(str(root / f"span-{span}"), ratings)
    out = _examples(tmp_path, str(root), span=4, window_spans=1)
    assert out["train"] == [("1", "3", ["2", "1"])]
    assert sorted(out["eval"]) == [("1", "4", ["3", "2", "1"]), ("2", "4", ["5", "6"])]
    assert out["previous"] == out["train"]
    # Ingested span by span (span_window "resolver"), each run writes only its span, with the same
    # histories: span 4's run, and span 3's run, whose examples a later window resolves.
    alone = _examples(tmp_path, str(root), span=4, window_spans=1, span_window=spans.WINDOW_BY_RESOLVER)
    assert set(alone) == {"eval"} and sorted(alone["eval"]) == sorted(out["eval"])
    earlier = _examples(tmp_path, str(root), span=3, window_spans=1, span_window=spans.WINDOW_BY_RESOLVER)
    assert earlier == {"eval": out["train"]}
