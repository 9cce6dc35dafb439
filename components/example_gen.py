"""MovieLensExampleGen: a TFX FileBasedExampleGen for the MovieLens layouts.

Two instances run in the pipeline, both reading the same files:

* ``kind="ratings"``: one example per rating, in the splits ``train`` and
  ``eval`` (``random``: seeded 80/20; ``temporal``: one global time cutoff;
  ``span``: a span layout (movielens.spans). The run for span N writes span N
  as ``eval`` (the ratings it is gated on). Where the training window comes
  from is `span_window`: ``resolver`` (local runs) writes only that split, and
  later runs resolve the spans before theirs from ML Metadata (pipeline.py);
  ``example_gen`` (the compiled Vertex / Kubeflow spec, whose span is a
  runtime parameter) also writes the ``window_spans`` spans before N as
  ``train`` and span N - 1 as ``previous``, the baseline of the drift check.
  Either way a rating's history is built from every earlier span);
* ``kind="catalog"``: one example per catalog movie, in the split ``catalog``
  (every movie of the movies file, rated or not).

Spans, versions, input fingerprints (so caching and change detection), output
file format and payload format all come from TFX's ExampleGen framework: only
reading, splitting and writing the splits (without TFX's reshuffle) are ours
(`Executor.Do`, `generate_examples`). Rows are validated before Beam starts; bad rows stop the component with file, line and reason, or
are quarantined (up to ``max_bad_rows``) to ``quarantine.tsv`` in the output
artifact, whose custom properties count them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from ml_metadata.proto import metadata_store_pb2
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from core.errors import check_choice
from movielens import examples as ml_examples
from movielens import files, reader, spans

KIND_RATINGS = "ratings"
KIND_CATALOG = "catalog"
QUARANTINE_FILE = "quarantine.tsv"
ENCODE_CHUNK_ROWS = 200_000


def rating_splits(split_method: str, span_window: str = spans.WINDOW_BY_RESOLVER) -> Tuple[str, ...]:
    """The splits the ratings ExampleGen writes."""
    if split_method != spans.SPAN_SPLIT:
        return ("train", "eval")
    return ("eval",) if span_window == spans.WINDOW_BY_RESOLVER else ("train", "eval", "previous")


def custom_config(kind: str, split_method: str, train_fraction: float, seed: int, max_bad_rows: int,
                  max_history: int, window_spans: int, span_window: str) -> example_gen_pb2.CustomConfig:
    """The executor's parameters, in ExampleGen's own `custom_config` (a Struct packed in an Any)."""
    settings = struct_pb2.Struct()
    settings.update({"kind": kind, "split_method": split_method, "train_fraction": train_fraction,
                     "seed": seed, "max_bad_rows": max_bad_rows, "max_history": max_history,
                     "window_spans": window_spans, "span_window": span_window})
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(settings)
    return config


def read_settings(exec_properties: Dict[str, Any]) -> Dict[str, Any]:
    """custom_config's settings, as the executor receives them (JSON)."""
    config = example_gen_pb2.CustomConfig()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.CUSTOM_CONFIG_KEY], config)
    settings = struct_pb2.Struct()
    config.custom_config.Unpack(settings)
    out = json_format.MessageToDict(settings)
    for name in ("seed", "max_bad_rows", "max_history", "window_spans"):  # Struct numbers are doubles
        out[name] = int(out[name])
    return out


def settings_of(example_gen: "MovieLensExampleGen") -> Dict[str, Any]:
    """The settings (read_settings) a MovieLensExampleGen's executor will run with."""
    return read_settings(example_gen.exec_properties)


def recorded_settings(execution: metadata_store_pb2.Execution) -> Optional[Dict[str, Any]]:
    """The settings (read_settings) an ExampleGen execution ran with, as ML Metadata recorded them
    (its exec property custom_config); None when it has none."""
    stored = execution.custom_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    if stored is None:
        return None
    return read_settings({standard_component_specs.CUSTOM_CONFIG_KEY: stored.string_value})


def input_location(data_path: str, split_method: str = "random") -> Tuple[str, str]:
    """(input_base, file pattern) for a MovieLens directory or .zip archive, or a span layout."""
    data_path = files.absolute(data_path)
    if split_method == spans.SPAN_SPLIT:
        return data_path.rstrip("/"), spans.SPAN_PATTERN
    if files.isdir(data_path) or not data_path.endswith(".zip"):
        return data_path.rstrip("/"), "*"
    return files.split(data_path)


def _data_path(input_base: str, pattern: str) -> str:
    return input_base if pattern == "*" else files.join(input_base, pattern)


def load_and_split(input_base: str, pattern: str, settings: Dict[str, Any],
                   span: int) -> Tuple[reader.MovieLensData, Dict[str, np.ndarray]]:
    """The validated data this run reads, and the row indices (ascending) of each rating split.

    A span layout reads every span up to `span` (the earlier ones are the
    ratings' history); flat data is read whole. Both loads are cached (one
    entry), so Beam's in-process workers share the executor's parse.
    """
    if settings["split_method"] == spans.SPAN_SPLIT:
        data, span_index = spans.load_cached(input_base, span, settings["max_bad_rows"])
        if settings["kind"] == KIND_CATALOG:
            return data, {}
        if settings["span_window"] == spans.WINDOW_BY_RESOLVER:
            return data, {"eval": np.flatnonzero(span_index == span)}
        return data, spans.window_splits(span_index, span, settings["window_spans"], input_base)
    data = reader.load_cached(_data_path(input_base, pattern), settings["max_bad_rows"])
    if settings["kind"] == KIND_CATALOG:
        return data, {}
    train, evaluation = reader.split_indices(data.ratings.timestamps, settings["split_method"],
                                             settings["train_fraction"], settings["seed"])
    return data, {"train": train, "eval": evaluation}


class _EncodeRatings(beam.DoFn):
    """(split, shard) -> (shard, the serialized examples of that chunk of the split): shard i holds the
    split's rows from i * ENCODE_CHUNK_ROWS.

    Carries only where the data is and how to split it: each worker reads and
    splits the files itself, once, in `setup` (`load_and_split` is cached:
    in-process workers share the executor's parse), instead of receiving every
    rating inside the pickled pipeline (which took 8 s of compression per 1M
    ratings locally and would not fit a Dataflow job). Encoding by chunk bounds
    memory by a chunk, not a split (8.7 GB peak for 8M ratings in one go).
    """

    def __init__(self, input_base: str, pattern: str, settings: Dict[str, Any], span: int):
        self._where = (input_base, pattern, settings, span)
        self._encoder: Optional[ml_examples.RatingEncoder] = None
        self._splits: Dict[str, np.ndarray] = {}

    def setup(self) -> None:
        data, self._splits = load_and_split(*self._where)
        self._encoder = ml_examples.RatingEncoder(data, self._splits["eval"], self._where[2]["max_history"])

    def process(self, chunk: Tuple[str, int]):
        split, shard = chunk
        start = shard * ENCODE_CHUNK_ROWS
        yield shard, list(self._encoder.encode(self._splits[split][start:start + ENCODE_CHUNK_ROWS]))


def shard_count(rows: int) -> int:
    """How many shards (files) a split of `rows` examples is written as: one per ENCODE_CHUNK_ROWS, and one
    (empty) for an empty split."""
    return max(1, -(-rows // ENCODE_CHUNK_ROWS))


class _WriteShard(beam.DoFn):
    """(shard, serialized examples) -> that shard's gzipped TFRecord file, `{prefix}-{shard:05d}-of-{count:05d}.gz`
    (Beam's shard names: sorted by name, the files are in split order)."""

    def __init__(self, prefix: str, count: int):
        self._prefix, self._count = prefix, count

    def process(self, shard: Tuple[int, List[bytes]]):
        index, examples = shard
        path = f"{self._prefix}-{index:05d}-of-{self._count:05d}.gz"
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for example in examples:
                writer.write(example)
        yield path


def generate_examples(
    pipeline: beam.Pipeline, input_base: str, pattern: str, settings: Dict[str, Any], span: int = 0,
) -> Tuple[reader.MovieLensData, Dict[str, beam.PCollection], Dict[str, int]]:
    """The data read, the shards of every output split, and each split's size.

    A split's shards are (i, the serialized examples of shard i), i < shard_count(size): a rating split
    is encoded and written by chunks of ENCODE_CHUNK_ROWS ratings, each its own file, so that readers
    (StatisticsGen, Transform, the Evaluator) can split it over Beam workers: a gzip file cannot be split.
    settings: see custom_config; span: the span TFX's driver resolved (span layouts only).
    """
    data, splits = load_and_split(input_base, pattern, settings, span)
    if settings["kind"] == KIND_CATALOG:
        catalog = ml_examples.catalog_examples(data.movies)
        shards = [(i, catalog[i * ENCODE_CHUNK_ROWS:(i + 1) * ENCODE_CHUNK_ROWS]) for i in range(shard_count(len(catalog)))]
        return data, {"catalog": pipeline | "Catalog" >> beam.Create(shards)}, {"catalog": len(catalog)}

    encode = _EncodeRatings(input_base, pattern, settings, span)
    result = {}
    for name, rows in splits.items():
        result[name] = (
            pipeline
            | f"Chunks[{name}]" >> beam.Create([(name, shard) for shard in range(shard_count(len(rows)))])
            | f"ToExamples[{name}]" >> beam.ParDo(encode)
        )
    return data, result, {name: len(rows) for name, rows in splits.items()}


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads and validates MovieLens once, then writes every output split.

    TFX's ExampleGen Do would reshuffle every record before writing (in the
    local runner that was 50 s of 61 s for 1M ratings). The Trainer shuffles
    with its own seed, so the splits are written in split order (by shards of
    ENCODE_CHUNK_ROWS ratings, one file each, in name order), and the same
    data and seed give the same examples in the same order (not the same
    bytes: tfx_bsl's encoder serializes each example's feature map in
    protobuf's randomized map order, so two runs' files differ byte-wise).
    """

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        input_config = example_gen_pb2.Input()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY], input_config)
        input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        settings = read_settings(exec_properties)
        span = int(exec_properties.get(example_gen_utils.SPAN_PROPERTY_NAME) or 0)

        outputs = output_dict[standard_component_specs.EXAMPLES_KEY]
        artifact = artifact_utils.get_single_instance(outputs)
        artifact.split_names = artifact_utils.encode_split_names([split.name for split in input_config.splits])
        with self._make_beam_pipeline() as pipeline:
            data, splits, sizes = generate_examples(pipeline, input_base, input_config.splits[0].pattern, settings, span)
            for split, shards in splits.items():
                split_uri = artifact_utils.get_split_uri(outputs, split)
                tf.io.gfile.makedirs(split_uri)
                prefix = files.join(split_uri, write_split.DEFAULT_FILE_NAME)
                _ = shards | f"WriteSplit[{split}]" >> beam.ParDo(_WriteShard(prefix, shard_count(sizes[split])))
        examples_utils.set_payload_format(artifact, example_gen_pb2.FORMAT_TF_EXAMPLE)
        examples_utils.set_file_format(artifact, write_split.to_file_format_str(example_gen_pb2.FORMAT_TFRECORDS_GZIP))
        artifact.set_string_custom_property("movielens_layout", data.layout)
        artifact.set_int_custom_property("num_quarantined_rows", len(data.bad_rows))
        artifact.set_int_custom_property("num_users", len(set(data.ratings.user_ids)))
        artifact.set_int_custom_property("num_movies", len(data.movies))
        for split, size in sizes.items():
            artifact.set_int_custom_property(f"num_examples_{split}", size)
        if settings["split_method"] == spans.SPAN_SPLIT and settings["kind"] == KIND_RATINGS:
            # The span is also TFX's span property, from the driver.
            artifact.set_int_custom_property("eval_span", span)
            if settings["span_window"] == spans.WINDOW_IN_EXAMPLE_GEN:  # the window this run read
                artifact.set_int_custom_property("first_train_span", spans.first_train_span(
                    spans.available(input_base), span, settings["window_spans"]))
        if data.bad_rows:
            with tf.io.gfile.GFile(files.join(artifact.uri, QUARANTINE_FILE), "w") as stream:
                reader.write_quarantine(data.bad_rows, stream)


class MovieLensExampleGen(FileBasedExampleGen):
    """ExampleGen for a MovieLens directory or .zip (ml-100k, ml-1m or CSV layout), or a span layout.

    A FileBasedExampleGen: TFX's FileBasedDriver resolves the span, version
    and input fingerprint from `input_base` and the input config (so caching
    and change detection are TFX's own, locally and in the compiled Vertex /
    Kubeflow spec); our executor reads, splits and writes. With
    split_method="span", `range_config` picks the span (a RangeConfig, or a
    RuntimeParameter holding one as JSON in a compiled spec); without it the
    driver takes the latest span present.
    """

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        data_path: str,
        kind: str = KIND_RATINGS,
        split_method: str = "random",
        train_fraction: float = 0.8,
        seed: int = 42,
        max_bad_rows: int = 0,
        max_history: int = 50,
        window_spans: int = 4,
        span_window: str = spans.WINDOW_BY_RESOLVER,
        range_config=None,
    ):
        check_choice("kind", kind, (KIND_RATINGS, KIND_CATALOG))
        check_choice("span_window", span_window, spans.SPAN_WINDOWS)
        spans.check_split(split_method, train_fraction, window_spans)
        input_base, pattern = input_location(data_path, split_method)
        names = ["catalog"] if kind == KIND_CATALOG else list(rating_splits(split_method, span_window))
        super().__init__(
            input_base=input_base,
            # Every output split reads the same files; the executor splits them.
            input_config=example_gen_pb2.Input(
                splits=[example_gen_pb2.Input.Split(name=n, pattern=pattern) for n in names]
            ),
            output_config=example_gen_pb2.Output(),
            custom_config=custom_config(kind, split_method, train_fraction, seed, max_bad_rows, max_history,
                                        window_spans, span_window),
            range_config=range_config,
        )
