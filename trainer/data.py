"""The Trainer's input pipeline: ExampleGen's rating examples and catalog, read, ordered, transformed, batched.

Ratings come in a canonical order (by user, title, timestamp) whatever the order of the files, so the same
data and seed give the same batches. Training transforms the train split once and holds it in memory
(transformed_ratings, shuffled_batches); measuring streams raw batches through the Transform layer with what
the metric's exclusions need (rating_batches, metric_batches: the raw history, rated_before and movie id).
"""

from __future__ import annotations

import ctypes
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from trainer import cluster, export
from transform import features as F

# Batch size of measuring (trainer.metrics) and of reading the catalog.
METRICS_BATCH = 4096
# The raw rating features the model reads, through the Transform layer.
RAW_RATING_SPEC = F.raw_rating_spec()
# Features whose values give every rating example a canonical position.
_ORDER_KEYS = (F.USER_ID, F.MOVIE_TITLE, F.TIMESTAMP)


# One file pattern, or several (TFX's train_files of a span run's window: one per span).
Patterns = Union[str, Sequence[str]]


def records(file_pattern: Patterns) -> tf.data.Dataset:
    """Serialized tf.Examples, string [], from gzipped TFRecords, in file order (sorted file names)."""
    patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
    files = sorted(name for pattern in patterns for name in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no example files match {', '.join(patterns)}")
    return tf.data.TFRecordDataset(files, compression_type="GZIP")


def parsed(file_pattern: Patterns, feature_spec: Dict, batch_size: int) -> tf.data.Dataset:
    """Batches of examples parsed with `feature_spec`, in file order."""
    return records(file_pattern).batch(batch_size).map(lambda batch: tf.io.parse_example(batch, feature_spec))


def _ragged(value):
    """A parsed or transformed list feature (SparseTensor [n, None]) as a RaggedTensor; others as they are."""
    return tf.RaggedTensor.from_sparse(value) if isinstance(value, tf.SparseTensor) else value


def _column(parts: List[Dict[str, tf.Tensor]], name: str):
    """One feature of every batch: a tensor [n], or a RaggedTensor [n, None] for a list feature."""
    return tf.concat([_ragged(part[name]) for part in parts], axis=0)


def _order(parts: List[Dict[str, tf.Tensor]]) -> np.ndarray:
    """canonical_order of parsed batches that carry the _ORDER_KEYS."""
    return np.lexsort([_column(parts, name).numpy() for name in reversed(_ORDER_KEYS)])


def canonical_order(file_pattern: Patterns) -> np.ndarray:
    """int64 [num_ratings]: the file-order positions of the split's ratings sorted by user, title,
    timestamp (ties in file order), so that the order does not depend on how the files were written."""
    return _order(list(parsed(file_pattern, {name: RAW_RATING_SPEC[name] for name in _ORDER_KEYS}, 100_000)))


def raw_ratings(file_pattern: Patterns) -> Dict[str, tf.Tensor]:
    """The split's raw model inputs (RAW_RATING_SPEC), each a tensor [num_ratings] (ragged
    [num_ratings, None] for the history lists), in canonical_order whatever the file order."""
    parts = list(parsed(file_pattern, RAW_RATING_SPEC, 100_000))
    order = _order(parts)  # from the batches already read: the files once
    return {name: tf.gather(_column(parts, name), order) for name in RAW_RATING_SPEC}


# The raw rated movie id, kept next to the transformed features (for the metric).
RAW_MOVIE_ID = "raw_movie_id"


def _with_raw_history(transform_layer):
    """Raw batch -> transformed features plus the raw history (the movies to exclude from the top-K)
    and the raw rated movie id."""
    def apply(batch):
        out = export.transform_raw(transform_layer, batch)
        for name in (F.HISTORY, F.RATED_BEFORE):
            movies = batch[name]
            out[name] = movies if isinstance(movies, tf.SparseTensor) else movies.to_sparse()
        out[RAW_MOVIE_ID] = batch[F.MOVIE_ID]
        return out
    return apply


def _rows(columns: Dict[str, tf.Tensor], rows: tf.Tensor) -> Dict[str, tf.Tensor]:
    """The rows `rows` of every column; ragged columns come back as SparseTensors (as parsed lists are), and
    int32 columns (int64 held narrow: _narrow) as int64, the only integer type of TFT's transformed features
    (tf.Example's)."""
    out = {}
    for name, column in columns.items():
        value = tf.gather(column, rows)
        if value.dtype == tf.int32:
            value = tf.cast(value, tf.int64)
        out[name] = value.to_sparse() if isinstance(value, tf.RaggedTensor) else value
    return out


def _row_batches(columns: Dict[str, tf.Tensor], rows: tf.data.Dataset, batch_size: int) -> tf.data.Dataset:
    return rows.batch(batch_size).map(lambda batch: _rows(columns, batch))


# What training reads: every raw input but rated_before. That list (every movie
# the user rated before, history or not) only sets the metrics' exclusions, and
# it is the longest: at 1M synthetic ratings about 80 ids a rating, 64M strings.
TRAINING_SPEC = {name: spec for name, spec in RAW_RATING_SPEC.items() if name != F.RATED_BEFORE}


def transformed_ratings(file_pattern: Patterns, transform_layer, order: Optional[np.ndarray] = None,
                        chunk_size: int = 16_384) -> Dict[str, tf.Tensor]:
    """`transform_layer` applied once to every rating of the split (TRAINING_SPEC), streamed from the
    files chunk by chunk: transformed columns (ragged [rows, None] for list features) in canonical_order
    (`order`, computed when not given). Only transformed features are held (int ids, not raw strings)."""
    return transformed_ratings_and_order(file_pattern, transform_layer, order, chunk_size)[0]


def transformed_ratings_and_order(file_pattern: Patterns, transform_layer, order: Optional[np.ndarray] = None,
                                  chunk_size: int = 16_384):
    """(transformed_ratings, canonical_order) of the split from ONE read of its files: without `order`,
    the order keys are kept from the same parsed chunks (canonical_order read the files again: 8 s of
    a Trainer at 1M ratings). The same columns and order as transformed_ratings and canonical_order.

    Memory: each transformed chunk is kept as numpy arrays (a list feature as its values and row
    lengths, not a SparseTensor's [nnz, 2] indices; int64 as int32 when it fits), and each column is
    written in canonical order into one array (_in_order), a feature at a time, its chunks released
    as they are copied. At 1M synthetic ratings this holds 1.2 GB at the peak, not 3.5 GB (the chunks,
    their concatenation and its gather, all as int64 tensors: more than 24 GB at 8M)."""
    def transform(raw):
        keys = {name: raw[name] for name in _ORDER_KEYS} if order is None else {}
        transformed = export.transform_raw(transform_layer, raw)
        return {name: _ragged(value) for name, value in transformed.items()}, keys
    parts, keys = [], []
    for transformed, chunk_keys in parsed(file_pattern, TRAINING_SPEC, chunk_size).map(
            transform, num_parallel_calls=tf.data.AUTOTUNE):
        parts.append({name: _numpy(value) for name, value in transformed.items()})
        keys.append({name: value.numpy() for name, value in chunk_keys.items()})
    if order is None:
        order = _order(keys)
    del keys
    columns = {}
    for name in list(parts[0]):
        _return_freed_memory()
        columns[name] = _in_order([part.pop(name) for part in parts], order)
    _return_freed_memory()
    return columns, order


def _return_freed_memory() -> None:
    """Gives the memory freed since back to the system (glibc's malloc_trim; nothing where there is none).
    glibc keeps freed small blocks for reuse, and the many chunk-sized blocks of the transform could not be
    reused for a column's one large array: at 1M ratings the peak was 0.2 GB higher without it."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _numpy(value):
    """A chunk's column as numpy: an array [n], or (values, row_lengths) of a RaggedTensor [n, None]; int64
    values held as int32 when they fit (_narrow)."""
    if isinstance(value, tf.RaggedTensor):
        return _narrow(value.flat_values.numpy()), value.row_lengths().numpy()
    return _narrow(value.numpy())


def _narrow(values: np.ndarray) -> np.ndarray:
    """int64 `values` as int32 when every one fits (vocabulary indices, buckets: half the memory); others as
    they are. The batches widen them back (_rows), so the model sees the transform's int64."""
    if values.dtype != np.int64 or not values.size:
        return values
    narrow = np.iinfo(np.int32)
    return values.astype(np.int32) if narrow.min <= values.min() and values.max() <= narrow.max else values


def _in_order(pieces: list, order: np.ndarray):
    """The column whose chunks (_numpy, in file order) are `pieces`, in `order`: a tensor [n], or a RaggedTensor
    [n, None] whose values are written row by row into one array (no [nnz] index). `pieces` is emptied as
    it is read, so each chunk goes once copied."""
    if not isinstance(pieces[0], tuple):
        return tf.constant(np.concatenate(pieces)[order])  # concatenate: int32 pieces beside an int64 one widen
    lengths = np.concatenate([piece_lengths for _, piece_lengths in pieces])
    splits = np.zeros(len(order) + 1, np.int64)
    np.cumsum(lengths[order], out=splits[1:])
    starts = np.empty(len(order), np.int64)
    starts[order] = splits[:-1]  # where each rating, in file order, starts in the ordered values
    values = np.empty(int(splits[-1]), np.result_type(*(piece_values.dtype for piece_values, _ in pieces)))
    first = 0  # the file-order row of the chunk's first rating
    pieces.reverse()
    while pieces:
        piece_values, piece_lengths = pieces.pop()
        rows = len(piece_lengths)
        within = np.arange(len(piece_values)) - np.repeat(np.cumsum(piece_lengths) - piece_lengths, piece_lengths)
        values[np.repeat(starts[first:first + rows], piece_lengths) + within] = piece_values
        first += rows
    return tf.RaggedTensor.from_row_splits(tf.constant(values), tf.constant(splits), validate=False)


def shuffled_batches(columns: Dict[str, tf.Tensor], batch_size: int, seed: int) -> tf.data.Dataset:
    """Batches of the rows of `columns`, each pass in a new seeded order: the same columns and seed give
    the same batches. Shuffling row numbers, not the rows, keeps one copy of the data (8M ratings:
    12 GB peak when the examples were shuffled)."""
    size = int(next(iter(columns.values())).shape[0])
    rows = tf.data.Dataset.range(size).shuffle(size, seed=seed, reshuffle_each_iteration=True)
    return _row_batches(columns, rows, batch_size).prefetch(tf.data.AUTOTUNE)


def worker_batches(columns: Dict[str, tf.Tensor], global_batch: int, seed: int, num_workers: int,
                   worker_index: int) -> tf.data.Dataset:
    """This worker's share of every global batch, repeated epoch after epoch (multi-worker training).

    Every worker draws the same seeded row order as shuffled_batches (the seed is the same on every
    worker) and cuts it into the same global batches of `global_batch` rows; worker i keeps rows
    cluster.shard_bounds(rows, num_workers, i) of each: a contiguous share, the shares of workers 0..N-1
    in worker order making up the global batch (so an all-gather of the shares in replica order is the
    global batch: what RetrievalModel's cross-worker negatives gather). Only this worker's rows are
    gathered from the in-memory columns (tf.data's AutoShardPolicy.DATA would have every worker build
    every global batch and drop the others' rows). Repeated, because Keras trains a distributed
    dataset for steps_per_epoch steps without re-creating its iterator; the shuffle still draws a new
    order each pass, and batches never cross a pass."""
    size = int(next(iter(columns.values())).shape[0])

    def share(rows):
        start, end = cluster.shard_bounds(tf.shape(rows, out_type=tf.int64)[0], num_workers, worker_index)
        return rows[start:end]

    rows = tf.data.Dataset.range(size).shuffle(size, seed=seed, reshuffle_each_iteration=True)
    shares = rows.batch(global_batch).map(share).repeat()
    return shares.map(lambda batch: _rows(columns, batch)).prefetch(tf.data.AUTOTUNE)


def sampled_ratings(file_pattern: Patterns, order: np.ndarray, max_rows: int, seed: int) -> Dict[str, tf.Tensor]:
    """Every raw input (RAW_RATING_SPEC, rated_before included) of a seeded sample of at most `max_rows`
    of the split's ratings (all when there are fewer): the sample drawn over canonical positions (`order`:
    canonical_order), the rows read in file order, streamed; only the sample is held, and only the
    sample's records are parsed (parsing all of them, rated_before's ~80 strings a rating at 1M, was
    7 s of a Trainer, now 2 s; the same rows and values)."""
    size = len(order)
    positions = np.arange(size) if size <= max_rows else np.random.default_rng(seed).permutation(size)[:max_rows]
    keep = np.zeros(size, bool)
    keep[order[positions]] = True
    parts, start = [], 0
    for serialized in records(file_pattern).batch(100_000):
        count = int(tf.shape(serialized)[0])
        rows = np.flatnonzero(keep[start:start + count])
        start += count
        batch = tf.io.parse_example(tf.gather(serialized, rows), RAW_RATING_SPEC)
        parts.append({name: _ragged(value) for name, value in batch.items()})
    return {name: tf.concat([part[name] for part in parts], axis=0) for name in RAW_RATING_SPEC}


def rating_batches(file_pattern: Patterns, transform_layer, batch_size: int, shuffle_seed=None) -> tf.data.Dataset:
    """Batches of rating features from ExampleGen's raw examples through `transform_layer` (the
    Transform layer the exported model applies to its raw inputs).

    Without `shuffle_seed` (measuring): one pass in file order, streamed; each batch also carries the
    raw history, rated_before and movie id (the metric's exclusions). With `shuffle_seed` (training):
    the transformed features alone, the split transformed ONCE and held in memory (raw_ratings,
    transformed_ratings), each pass in a new seeded order (shuffled_batches).
    """
    if shuffle_seed is not None:
        return shuffled_batches(transformed_ratings(file_pattern, transform_layer), batch_size, shuffle_seed)
    raw = parsed(file_pattern, RAW_RATING_SPEC, batch_size)
    return raw.map(_with_raw_history(transform_layer), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def metric_batches(columns: Dict[str, tf.Tensor], transform_layer) -> tf.data.Dataset:
    """Batches of raw rating `columns` through `transform_layer`, with the raw history, rated_before and
    movie id (as rating_batches without a seed), for factorized_top_k."""
    size = int(next(iter(columns.values())).shape[0])
    raw = _row_batches(columns, tf.data.Dataset.range(size), METRICS_BATCH)
    return raw.map(_with_raw_history(transform_layer), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def read_catalog(file_pattern: str) -> Dict[str, np.ndarray]:
    """The catalog: movie_id and movie_title, string arrays [num_movies]."""
    columns = {F.MOVIE_ID: [], F.MOVIE_TITLE: []}
    for batch in parsed(file_pattern, F.catalog_spec(), METRICS_BATCH):
        for key in columns:
            columns[key].append(batch[key].numpy())
    return {key: np.concatenate(value) for key, value in columns.items()}
