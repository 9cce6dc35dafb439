"""What keeps the pipeline fast and its memory bounded (the figures are in bench/, not here)."""

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that, equal_to
from tensorflow.python.autograph.impl import conversion
from tfx.utils import dependency_utils, proto_utils

import components.example_gen as example_gen
from movielens import reader, synthetic
from pipeline.config import PipelineConfig
from transform import features as F


@pytest.mark.parametrize("workers, mode", [(1, "in_memory"), (2, "multi_processing")])
def test_local_beam_args_pick_the_runner_and_need_no_tfx_sdist(workers, mode):
    args = list(PipelineConfig(data_path="data", beam_workers=workers).beam_pipeline_args)
    assert f"--direct_running_mode={mode}" in args and f"--direct_num_workers={workers}" in args
    # Without a dependency flag TFX would copy its install and build an sdist
    # for every Beam component (and add --extra_package).
    assert dependency_utils.make_beam_dependency_flags(args) == args


def test_tf_keras_is_left_to_run_as_python_by_autograph():
    import trainer.task

    assert conversion.is_allowlisted(tf.keras.layers.Dense(1).call)
    assert not conversion.is_allowlisted(trainer.task.run_fn)


def test_example_gen_encodes_a_split_in_chunks_and_loses_no_row(tmp_path, monkeypatch):
    data = synthetic.generate(str(tmp_path / "data"), layout="ml-1m", num_users=20, num_movies=30, num_ratings=503, seed=4)
    monkeypatch.setattr(example_gen, "ENCODE_CHUNK_ROWS", 50)
    component = example_gen.MovieLensExampleGen(data_path=data)
    # As the executor receives them: protos as JSON.
    exec_properties = {key: proto_utils.proto_to_json(value) if hasattr(value, "DESCRIPTOR") else value
                       for key, value in component.exec_properties.items()}
    expected = reader.load(data)
    train, evaluation = reader.split_indices(expected.ratings.timestamps, "random", 0.8, 42)

    def keys(serialized):
        example = tf.train.Example.FromString(serialized)
        feature = example.features.feature
        return (feature["user_id"].bytes_list.value[0].decode(), feature["movie_id"].bytes_list.value[0].decode(),
                feature["timestamp"].int64_list.value[0])

    def wanted(rows):
        r = expected.ratings
        return [(r.user_ids[i], r.movie_ids[i], int(r.timestamps[i])) for i in rows]

    def in_order(shards):  # the shards' examples, by shard (the order of the files' names)
        return [keys(example) for _, examples in sorted(shards) for example in examples]

    with beam.Pipeline() as pipeline:
        _, splits, sizes = example_gen.generate_examples(pipeline, exec_properties["input_base"], "*",
                                                         example_gen.read_settings(exec_properties))
        assert sizes == {"train": len(train), "eval": len(evaluation)}
        for name, rows in (("train", train), ("eval", evaluation)):
            shards = splits[name] | f"All[{name}]" >> beam.combiners.ToList()
            assert_that(shards | f"Keys[{name}]" >> beam.Map(in_order), equal_to([wanted(rows)]), label=f"{name} in order")
            count = -(-len(rows) // 50)  # a shard, so a file, per chunk of 50: a reader can split the split
            assert_that(shards | f"Shards[{name}]" >> beam.Map(lambda s: sorted((i, len(e)) for i, e in s)),
                        equal_to([[(i, min(50, len(rows) - 50 * i)) for i in range(count)]]), label=f"{name} shards")


def test_reader_keeps_one_string_per_distinct_id(tmp_path):
    data = reader.load(synthetic.generate(str(tmp_path), layout="ml-100k", num_users=10, num_movies=20, num_ratings=400, seed=1))
    users = data.ratings.user_ids
    assert len(users) == 400 and len({id(u) for u in users}) == len(set(users)) <= 10


def _write_ratings(path, rows):
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for user, title, timestamp in rows:
            example = tf.train.Example()
            example.features.feature["user_id"].bytes_list.value.append(user.encode())
            example.features.feature["movie_id"].bytes_list.value.append(title.split()[-1].encode())
            example.features.feature["movie_title"].bytes_list.value.append(title.encode())
            example.features.feature["timestamp"].int64_list.value.append(timestamp)
            writer.write(example.SerializeToString())


def _in_two_file_orders(tmp_path, seed):
    """210 ratings written twice: a.gz in order, b.gz seeded-shuffled; returns the rows in order."""
    rows = [(str(u), f"Movie {m}", 880_000_000 + 60 * (u * 7 + m)) for u in range(30) for m in range(7)]
    shuffled = list(rows)
    np.random.default_rng(seed).shuffle(shuffled)
    _write_ratings(str(tmp_path / "a.gz"), rows)
    _write_ratings(str(tmp_path / "b.gz"), shuffled)
    return rows


def test_training_batches_do_not_depend_on_the_file_order(tmp_path):
    from trainer.data import rating_batches

    rows = _in_two_file_orders(tmp_path, seed=0)

    def batches(name):
        def identity(features):  # the raw scalars as they come, [batch]
            return {key: tf.reshape(value, [-1]) for key, value in features.items() if not isinstance(value, tf.SparseTensor)}

        data = rating_batches(str(tmp_path / name), identity, batch_size=32, shuffle_seed=7)
        scalars = (F.MOVIE_ID, F.MOVIE_TITLE, F.TIMESTAMP, F.USER_ID)
        return [[batch[key].numpy().tolist() for key in scalars] for batch in data]

    first, second = batches("a.gz"), batches("b.gz")
    assert first == second  # same rows, same seed: same batches, whatever the file order
    assert sorted(user for batch in first for user in batch[3]) == sorted(r[0].encode() for r in rows)
    assert first[0][3] != [r[0].encode() for r in rows[:32]]  # shuffled, not in file order


def test_the_train_metric_sample_is_the_same_ratings_whatever_the_file_order(tmp_path):
    from trainer import data

    rows = _in_two_file_orders(tmp_path, seed=1)

    def sample(name, max_rows):
        path = str(tmp_path / name)
        columns = data.sampled_ratings(path, data.canonical_order(path), max_rows, seed=3)
        assert set(columns) == set(data.RAW_RATING_SPEC)  # every raw input, rated_before included
        return sorted(zip(*(columns[key].numpy().tolist() for key in (F.USER_ID, F.MOVIE_TITLE, F.TIMESTAMP)), strict=True))

    first = sample("a.gz", 50)
    assert len(first) == 50 and first == sample("b.gz", 50)  # the same 50 ratings, whatever the file order
    everything = sample("a.gz", 1000)  # fewer ratings than max_rows: all of them
    assert everything == sorted((u.encode(), t.encode(), ts) for u, t, ts in rows)
    assert set(first) < set(everything) and len(set(first)) == 50  # distinct ratings, a proper sample


def test_one_read_gives_the_canonical_order_and_the_columns_in_it(tmp_path):
    from trainer import data

    _in_two_file_orders(tmp_path, seed=2)
    path = str(tmp_path / "b.gz")

    def identity(features):  # the raw scalars as they come, [batch]
        return {key: tf.reshape(value, [-1]) for key, value in features.items() if not isinstance(value, tf.SparseTensor)}

    columns, order = data.transformed_ratings_and_order(path, identity)
    assert order.tolist() == data.canonical_order(path).tolist()  # the same order as reading the files again
    again = data.transformed_ratings(path, identity, data.canonical_order(path))
    assert {key: value.numpy().tolist() for key, value in columns.items()} == {
        key: value.numpy().tolist() for key, value in again.items()}


def test_the_in_memory_list_features_are_the_rows_in_canonical_order(tmp_path):
    """The Trainer's held columns with a list feature (ragged, put in order one feature at a time, each
    feature's chunks released): every row's list is that rating's, whatever the file order and chunks."""
    from trainer import data

    rng = np.random.default_rng(4)
    rows = [(str(u), f"Movie {m}", 880_000_000 + 60 * (u * 7 + m), [f"h{u}-{k}" for k in range(rng.integers(0, 6))])
            for u in range(30) for m in range(7)]
    big = 2**40  # one history timestamp past int32: the chunk that has it, and so its column, stay int64
    times = {row[:3]: [big if (i, k) == (100, 0) else k for k in range(len(row[3]))] for i, row in enumerate(rows)}
    assert times[rows[100][:3]]
    for name, ordered in (("a.gz", rows), ("b.gz", [rows[i] for i in rng.permutation(len(rows))])):
        with tf.io.TFRecordWriter(str(tmp_path / name), options="GZIP") as writer:
            for user, title, timestamp, history in ordered:
                example = tf.train.Example()
                example.features.feature["user_id"].bytes_list.value.append(user.encode())
                example.features.feature["movie_id"].bytes_list.value.append(title.split()[-1].encode())
                example.features.feature["movie_title"].bytes_list.value.append(title.encode())
                example.features.feature["timestamp"].int64_list.value.append(timestamp)
                example.features.feature["history"].bytes_list.value.extend(h.encode() for h in history)
                example.features.feature["history_timestamps"].int64_list.value.extend(times[user, title, timestamp])
                writer.write(example.SerializeToString())

    names = (F.USER_ID, F.TIMESTAMP, F.HISTORY, F.HISTORY_TIMESTAMPS)

    def passthrough(features):  # as parsed: [batch], SparseTensor [batch, None]
        return {name: tf.reshape(features[name], [-1]) if name in (F.USER_ID, F.TIMESTAMP) else features[name]
                for name in names}

    # The oracle: sorted by user, title, timestamp (the rows are distinct, so no ties).
    expected = [[user.encode(), timestamp, [h.encode() for h in history], times[user, title, timestamp]]
                for user, title, timestamp, history in sorted(rows, key=lambda r: r[:3])]
    for name in ("a.gz", "b.gz"):
        columns, _ = data.transformed_ratings_and_order(str(tmp_path / name), passthrough, chunk_size=16)
        assert isinstance(columns[F.HISTORY], tf.RaggedTensor)
        got = [list(row) for row in zip(*(columns[name].to_list() if isinstance(columns[name], tf.RaggedTensor)
                                          else columns[name].numpy().tolist() for name in names), strict=True)]
        assert got == expected
        # Held narrow where every value fits (the timestamps), int64 where one does not; batches are int64.
        assert columns[F.TIMESTAMP].dtype == tf.int32 and columns[F.HISTORY_TIMESTAMPS].dtype == tf.int64
        batch = next(iter(data.shuffled_batches(columns, 300, seed=1)))
        assert batch[F.TIMESTAMP].dtype == tf.int64 and batch[F.HISTORY_TIMESTAMPS].dtype == tf.int64
        assert sorted(batch[F.TIMESTAMP].numpy().tolist()) == sorted(row[2] for row in rows)
    assert sum(len(r[3]) == 0 for r in rows) > 0 and max(len(r[3]) for r in rows) == 5  # empty and long lists
