"""The MovieLens retrieval pipeline: `create_pipeline(config)`.

RatingsExampleGen, CatalogExampleGen -> StatisticsGen -> SchemaGen ->
ExampleValidator -> DataGate -> Transform (analysis: the transform graph) ->
Trainer (raw ratings through the transform graph, + catalog) ->
Evaluator (against the latest blessed model and the Baselines' floor) -> Pusher.
Baselines scores the baselines on RatingsExampleGen's eval split. With
warm_start in the model config, the latest blessed model is also the
Trainer's base model (trainer.warm_start).

With split "span" (continuous training) ExampleGen reads the span TFX's
driver resolves (RangeConfig), N, and writes it as eval. Its training window,
the window_spans spans before N, comes from one of two places
(config.span_window):

* "resolver" (local runs): each span is ingested once, by its own run.
  Transform, the Trainer and Baselines read spans first..N-1 as earlier runs
  wrote them, resolved from ML Metadata (components.span_resolvers:
  TFX's static span range); DistributionValidator compares span N's statistics
  with span N - 1's, also resolved. A span of the window that no run ingested
  yet is ingested first (`create_pipeline(..., ingest_only=True)`, by the
  local runner).
* "example_gen" (the compiled spec, whose span is a runtime parameter):
  ExampleGen also writes the window as train and span N - 1 as previous, and
  DistributionValidator compares eval with previous.

DriftGate stops the run on drift if configured.

Model code is named by module string (PREPROCESSING_FN, RUN_FN): the pipeline
never imports it to run it.
"""

from __future__ import annotations

import json
from typing import List, Optional, Tuple

from google.protobuf import json_format
from tfx import v1 as tfx

from components.atomic_pusher import AtomicPusher
from components.baselines import Baselines
from components.data_gate import DataGate, DriftGate
from components.distribution_validator import DistributionValidator
from components.evaluator import BaselineGatedEvaluator
from components.example_gen import KIND_CATALOG, KIND_RATINGS, MovieLensExampleGen
from components.retrieval_trainer import RetrievalTrainer, VertexRetrievalTrainer
from components.schema_gen import SchemaGen
from components.span_resolvers import latest_analyzer_cache, previous_span_statistics, training_window
from movielens import files, spans
from pipeline import evaluation
from pipeline.config import PipelineConfig

PREPROCESSING_FN = "transform.preprocessing.preprocessing_fn"
RUN_FN = "trainer.task.run_fn"
TRANSFORM_ID = "Transform"
# The compiled pipeline's RuntimeParameter holding the Trainer's custom_config (JSON).
MODEL_CONFIG_PARAMETER = "model_config"
# The compiled span-aware pipeline's RuntimeParameter: ExampleGen's RangeConfig (JSON).
RANGE_CONFIG_PARAMETER = "range_config"


def span_range_config(span: Optional[int]):
    """ExampleGen's RangeConfig for one span (None: let the driver take the latest)."""
    if span is None:
        return None
    return tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(start_span_number=span, end_span_number=span))


def _range_config(config: PipelineConfig):
    if config.split != spans.SPAN_SPLIT:
        return None
    if config.span_as_runtime_parameter:
        # A compiled spec takes the span when it is submitted (submit --span N):
        # the RangeConfig as JSON; the default (empty) takes the latest span.
        default = json_format.MessageToJson(span_range_config(config.span), indent=None) if config.span is not None else "{}"
        return tfx.dsl.experimental.RuntimeParameter(name=RANGE_CONFIG_PARAMETER, ptype=str, default=default)
    return span_range_config(config.span)


def latest_span(config: PipelineConfig) -> int:
    """The newest span of config.data_path (a span layout), as TFX's driver would pick it."""
    present = spans.available(files.absolute(config.data_path))
    if not present:
        raise spans.DataError(f"{config.data_path}: no span-N directories (split 'span' reads a span layout)")
    return present[-1]


def window_spans(config: PipelineConfig) -> Tuple[int, int]:
    """(first, last): the spans the run for config.span trains on (spans.window; DataError for the first span)."""
    return spans.window(spans.available(files.absolute(config.data_path)), config.span, config.window_spans,
                        config.data_path)


def create_components(config: PipelineConfig, ingest_only: bool = False) -> List:
    """The pipeline's components; with ingest_only, only what ingests a span (the ratings' ExampleGen
    and StatisticsGen: what a later run's resolvers read)."""
    range_config = _range_config(config)
    ratings_gen = MovieLensExampleGen(
        data_path=config.data_path,
        kind=KIND_RATINGS,
        split_method=config.split,
        train_fraction=config.train_fraction,
        seed=config.split_seed,
        max_bad_rows=config.max_bad_rows,
        max_history=config.ingested_history_length,
        window_spans=config.window_spans,
        span_window=config.span_window,
        range_config=range_config,
    ).with_id("RatingsExampleGen")
    catalog_gen = MovieLensExampleGen(
        data_path=config.data_path,
        kind=KIND_CATALOG,
        split_method=config.split,
        max_bad_rows=config.max_bad_rows,
        range_config=range_config,
    ).with_id("CatalogExampleGen")

    statistics_gen = tfx.components.StatisticsGen(examples=ratings_gen.outputs["examples"])
    if ingest_only:
        return [ratings_gen, statistics_gen]
    # What the model trains on: ExampleGen's train split, or (span_window "resolver") the eval splits
    # of the window's spans, each written by the run of its own span. Transform's analyzer cache is
    # keyed by input file pattern: it can only hit on the spans a window shares with the previous
    # run's, so it is used with the resolved window only.
    train_examples, train_split, window, cache = (ratings_gen.outputs["examples"], "train", [],
                                                  {"disable_analyzer_cache": True})
    if config.window_by_resolver:
        window = [training_window(ratings_gen.id, *window_spans(config)), latest_analyzer_cache(TRANSFORM_ID, config.span)]
        train_examples, train_split = window[0].outputs["examples"], "eval"
        cache = {"analyzer_cache": window[1].outputs["analyzer_cache"]}
    schema_gen = SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True
    )
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"]
    )
    data_gate = DataGate(anomalies=example_validator.outputs["anomalies"])
    gates = [data_gate]
    drift = []
    if config.split == spans.SPAN_SPLIT:
        if config.window_by_resolver:
            # Span N (eval) against span N - 1's statistics, from that span's own run.
            previous = previous_span_statistics(statistics_gen.id, config.span - 1)
            drift.append(previous)
            baseline_statistics, pairs = previous.outputs["statistics"], [("eval", "eval")]
        else:
            # The newest span (eval) against the one before it (previous), both in
            # this run's statistics: no resolver, so it compiles for Vertex too.
            baseline_statistics, pairs = statistics_gen.outputs["statistics"], [("eval", "previous")]
        distribution_validator = DistributionValidator(
            statistics=statistics_gen.outputs["statistics"],
            baseline_statistics=baseline_statistics,
            config=evaluation.drift_config(config),
            include_split_pairs=pairs,
        )
        drift.append(distribution_validator)
        if config.stop_on_drift:
            gates.append(DriftGate(anomalies=distribution_validator.outputs["anomalies"]))
            drift.append(gates[-1])

    transform = tfx.components.Transform(
        examples=train_examples,
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=tfx.proto.SplitsConfig(analyze=[train_split], transform=[train_split]),
        custom_config=config.transform_config.to_custom_config(),
        # StatisticsGen and ExampleValidator already guard the raw data; TFDV
        # statistics of Transform's input and output would double its time.
        disable_statistics=True,
        # The Trainer applies the Transform graph itself (the layer it exports),
        # so Transform only analyzes: no transformed copy of the ratings.
        materialize=False,
        **cache,
    ).with_id(TRANSFORM_ID)
    for gate in gates:
        transform.add_upstream_node(gate)

    baselines = Baselines(
        examples=ratings_gen.outputs["examples"], catalog=catalog_gen.outputs["examples"],
        exclude_history=config.model.exclude_history,
        train_examples=train_examples if config.window_by_resolver else None, train_split=train_split,
    )

    model_resolver = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("LatestBlessedModelResolver")

    trainer_class = VertexRetrievalTrainer if config.cloud and config.cloud.vertex_training else RetrievalTrainer
    trainer = trainer_class(
        examples=train_examples,
        catalog=catalog_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        run_fn=RUN_FN,
        train_args=tfx.proto.TrainArgs(splits=[train_split]),
        # A resolved window is several spans (each one's split eval): the Trainer measures on span N's.
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        eval_examples=ratings_gen.outputs["examples"] if config.window_by_resolver else None,
        custom_config=_trainer_custom_config(config),
        # Warm start from the latest blessed model only when asked: the main
        # job trains the baseline, then the timestamp variant, in one pipeline,
        # and the timestamp model must not start from the baseline's weights.
        base_model=model_resolver.outputs["model"] if config.model.warm_start else None,
    ).with_id("RetrievalTrainer")

    evaluator = BaselineGatedEvaluator(
        examples=ratings_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        baselines=baselines.outputs["baselines"],
        eval_config=evaluation.eval_config(config),
        floor_from_baselines=config.value_floor is None,
        example_splits=["eval"],
    ).with_id("Evaluator")

    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=files.absolute(config.model_serving_dir)
            )
        ),
    ).with_id("Pusher")
    return [
        ratings_gen, catalog_gen, statistics_gen, schema_gen, example_validator, data_gate, *drift,
        *window, transform, baselines, model_resolver, trainer, evaluator, pusher,
    ]


def _trainer_custom_config(config: PipelineConfig):
    custom_config = config.trainer_custom_config()
    if not config.model_config_as_runtime_parameter:
        return custom_config
    return tfx.dsl.experimental.RuntimeParameter(
        name=MODEL_CONFIG_PARAMETER, ptype=str, default=json.dumps(custom_config, sort_keys=True)
    )


def create_pipeline(config: PipelineConfig, ingest_only: bool = False) -> tfx.dsl.Pipeline:
    """The whole pipeline for one model variant (config.model.use_timestamps); with ingest_only
    (span_window "resolver"), only the ingestion of config.span (see create_components).

    Locally, ML Metadata lives in SQLite at config.metadata_path, or in the
    shared MySQL / MariaDB store of config.metadata_uri; on Kubeflow or Vertex
    AI (a remote output_dir) the orchestrator provides it.
    """
    if config.window_by_resolver and config.span is None:
        config = config.replace(span=latest_span(config))  # the resolvers' ranges are around it
    metadata = None
    if config.cloud is None and not files.is_remote(config.output_dir):
        # Never a password in the spec: the local runner adds it when it connects.
        metadata = config.metadata_connection_config(with_password=False)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=files.absolute(config.pipeline_root),
        components=create_components(config, ingest_only),
        enable_cache=True,
        metadata_connection_config=metadata,
        beam_pipeline_args=list(config.beam_pipeline_args),
    )
