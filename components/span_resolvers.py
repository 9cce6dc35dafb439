"""How a local span run finds earlier spans' artifacts in ML Metadata (span_window "resolver").

The run for span N ingests only span N (components.example_gen). It finds

* its training window, spans first..N-1 of RatingsExampleGen's Examples:
  `training_window`, TFX's SpanRangeStrategy with a StaticRange, keeping the
  latest ingestion of each span (`LatestPerSpanRangeStrategy`: SpanRangeStrategy
  returns every artifact in range, so a span ingested twice, say with another
  history length, would be trained on twice);
* the drift baseline, span N - 1's statistics: `previous_span_statistics`;
* Transform's analyzer cache from the previous span's run (`latest_analyzer_cache`):
  TFT keys it by input file pattern, so the spans this window shares with the
  previous one are not analysed again. Every run of a span gets the same cache
  (a rerun after a kill is then served from TFX's cache).

Before the run, the spans of its window that no run ingested yet, or that were
ingested with other ExampleGen settings, are ingested first, each by its own
run (pipeline.local_runner): `spans_needing_ingestion` plans which, by the same
rule as the resolvers (the latest ingestion of a span counts: `latest_per_span`).

Why not TFX's newer resolver functions (canned_resolver_functions.static_range)
or the artifacts' `span` property: in TFX 1.16 ExampleGen's driver records the
span only as the custom property "span" (what SpanRangeStrategy reads); the
`span` and `version` properties stay unset, so the resolver functions see
every artifact as span 0, and so does StatisticsGen, which copies
`examples.span` to its statistics. A statistics artifact's span is therefore
read from the examples it was computed from (`statistics_span`).

A static range rather than a RollingRange: the run knows its span, and
rerunning an older span after newer ones landed must still train on the spans
before it, where a rolling range would take the newest. Both resolvers query
every run of the pipeline (a plain Channel naming the producer), not only the
current run, as an upstream node's output channel would.
"""

from __future__ import annotations

from typing import Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx import v1 as tfx
from tfx.dsl.input_resolution.strategies.span_range_strategy import SpanRangeStrategy
from tfx.types import standard_artifacts

from components import example_gen

EXAMPLES_KEY = "examples"
STATISTICS_KEY = "statistics"
SPAN_PROPERTY = "span"  # ExampleGen's custom property (example_gen utils.SPAN_PROPERTY_NAME)


def span_of(artifact: metadata_store_pb2.Artifact) -> Optional[int]:
    """The span ExampleGen recorded on an Examples artifact (custom property; older TFX wrote a string)."""
    value = artifact.custom_properties.get(SPAN_PROPERTY)
    if value is None:
        return None
    return int(value.string_value) if value.WhichOneof("value") == "string_value" else int(value.int_value)


def latest_per_span(artifacts, span_of_artifact) -> Dict[int, object]:
    """{span: the latest (highest id) of `artifacts` with that span}: which ingestion of a span counts, for
    the resolvers and for the local runner's check of what to ingest (TFX Artifacts or ML Metadata protos,
    both have .id); artifacts whose span is None are left out."""
    latest: Dict[int, object] = {}
    for artifact in sorted(artifacts, key=lambda a: a.id):
        span = span_of_artifact(artifact)
        if span is not None:
            latest[span] = artifact
    return latest


def statistics_spans(store, statistics_ids: List[int]) -> Dict[int, Optional[int]]:
    """{statistics artifact id: the span of the examples it was computed from} (lineage in ML Metadata)."""
    producers = {e.artifact_id: e.execution_id for e in store.get_events_by_artifact_ids(statistics_ids)
                 if e.type == metadata_store_pb2.Event.OUTPUT}
    inputs: Dict[int, int] = {}
    for event in store.get_events_by_execution_ids(sorted(set(producers.values()))):
        if event.type == metadata_store_pb2.Event.INPUT:
            inputs[event.execution_id] = event.artifact_id
    examples = {a.id: a for a in store.get_artifacts_by_id(sorted(set(inputs.values())))}
    return {sid: span_of(examples[inputs[eid]]) if eid in inputs else None for sid, eid in producers.items()}


class LatestPerSpanRangeStrategy(SpanRangeStrategy):
    """SpanRangeStrategy, then the latest artifact (highest id) of each span; None unless a StaticRange
    is complete (every span from start to end), so that no run trains on part of its window."""

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        resolved = super().resolve_artifacts(store, input_dict)
        if resolved is None:
            return None
        out = {}
        for key, artifacts in resolved.items():
            latest = latest_per_span(artifacts, lambda a: span_of(a.mlmd_artifact))
            if self._range_config.HasField("static_range"):
                wanted = range(self._range_config.static_range.start_span_number,
                               self._range_config.static_range.end_span_number + 1)
                if set(latest) != set(wanted):
                    return None
            out[key] = [latest[span] for span in sorted(latest)]
        return out


def training_window(example_gen_id: str, first: int, last: int) -> tfx.dsl.Resolver:
    """A Resolver of spans first..last of `example_gen_id`'s examples, from every run (see module docstring)."""
    return tfx.dsl.Resolver(
        strategy_class=LatestPerSpanRangeStrategy,
        config={"range_config": tfx.proto.RangeConfig(
            static_range=tfx.proto.StaticRange(start_span_number=first, end_span_number=last))},
        **{EXAMPLES_KEY: tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples,
                                         producer_component_id=example_gen_id, output_key="examples")},
    ).with_id("TrainingWindowResolver")


class SpanStatisticsStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The latest ExampleStatistics computed from one span's examples (statistics_span)."""

    def __init__(self, span: int):
        self._span = span

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        candidates = input_dict[STATISTICS_KEY]
        spans = statistics_spans(store, [a.id for a in candidates])
        found = latest_per_span(candidates, lambda a: spans.get(a.id)).get(self._span)
        return {STATISTICS_KEY: [found]} if found is not None else None


def previous_span_statistics(statistics_gen_id: str, span: int) -> tfx.dsl.Resolver:
    """A Resolver of span `span`'s latest statistics, from every run of `statistics_gen_id`."""
    return tfx.dsl.Resolver(
        strategy_class=SpanStatisticsStrategy,
        config={"span": span},
        **{STATISTICS_KEY: tfx.dsl.Channel(type=tfx.types.standard_artifacts.ExampleStatistics,
                                           producer_component_id=statistics_gen_id, output_key="statistics")},
    ).with_id("PreviousSpanStatisticsResolver")


def producer_input_spans(store, artifact_ids: List[int], input_key: str = EXAMPLES_KEY) -> Dict[int, List[int]]:
    """{artifact id: the spans of the examples its producing execution read under `input_key`}
    (lineage in ML Metadata); artifacts without a producer are left out."""
    producers = {e.artifact_id: e.execution_id for e in store.get_events_by_artifact_ids(artifact_ids)
                 if e.type == metadata_store_pb2.Event.OUTPUT}
    inputs: Dict[int, List[int]] = {}
    for event in store.get_events_by_execution_ids(sorted(set(producers.values()))):
        if event.type == metadata_store_pb2.Event.INPUT and event.path.steps and event.path.steps[0].key == input_key:
            inputs.setdefault(event.execution_id, []).append(event.artifact_id)
    examples = {a.id: a for a in store.get_artifacts_by_id(sorted({i for ids in inputs.values() for i in ids}))}
    return {aid: sorted(s for s in (span_of(examples[i]) for i in inputs.get(eid, [])) if s is not None)
            for aid, eid in producers.items()}


class AnalyzerCacheBeforeSpanStrategy(tfx.dsl.experimental.ResolverStrategy):
    """The latest analyzer cache written by the run of an earlier span than `span` (its Transform's
    window ends before span - 1), or none.

    Not simply the latest cache: a rerun of span N (resumed after a kill, or the second variant of a
    job) would then get the cache span N's own first run wrote, a different input than that run had,
    and TFX's cache would miss, re-running a finished Transform. This gives every run of span N the
    same cache: the previous span's."""

    def __init__(self, span: int):
        self._span = span

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        out = {}
        for key, artifacts in input_dict.items():
            spans = producer_input_spans(store, [a.id for a in artifacts]) if artifacts else {}
            earlier = [a for a in artifacts if spans.get(a.id) and max(spans[a.id]) < self._span - 1]
            out[key] = sorted(earlier, key=lambda a: a.id)[-1:]
        return out


def latest_analyzer_cache(transform_id: str, span: int) -> tfx.dsl.Resolver:
    """A Resolver of the latest analyzer cache `transform_id` wrote in the run of a span before `span`
    (none on the first): AnalyzerCacheBeforeSpanStrategy."""
    return tfx.dsl.Resolver(
        strategy_class=AnalyzerCacheBeforeSpanStrategy,
        config={"span": span},
        analyzer_cache=tfx.dsl.Channel(type=tfx.types.standard_artifacts.TransformCache,
                                       producer_component_id=transform_id, output_key="updated_analyzer_cache"),
    ).with_id("AnalyzerCacheResolver")


# ---------------------------------------------------------------------------
# Before the run: the spans of the window to ingest first.


def _live_artifacts(store, context_name: str, type_name: str) -> List[metadata_store_pb2.Artifact]:
    """The live artifacts of type `type_name` in a node's context."""
    context = store.get_context_by_type_and_name("node", context_name)
    artifact_types = [t for t in store.get_artifact_types() if t.name == type_name]
    if context is None or not artifact_types:
        return []
    return [a for a in store.get_artifacts_by_context(context.id)
            if a.type_id == artifact_types[0].id and a.state == metadata_store_pb2.Artifact.LIVE]


def spans_needing_ingestion(store, pipeline_name: str, ratings_gen: example_gen.MovieLensExampleGen,
                            statistics_gen, first: int, last: int) -> List[int]:
    """The spans of first..last that a local span run (span_window "resolver") must ingest before it runs.

    ratings_gen, statistics_gen: the ingestion's components, as this run would build them. A span needs
    ingesting when no run of `ratings_gen` wrote its examples, or the latest run that did (the ingestion
    the window's resolver takes: latest_per_span) read it with other settings than `ratings_gen`'s
    (history length, bad-row budget, ...): the window must hold what this run would write. The last
    span also needs its statistics (the drift check's baseline).
    """
    examples = latest_per_span(
        _live_artifacts(store, f"{pipeline_name}.{ratings_gen.id}", standard_artifacts.Examples.TYPE_NAME), span_of)
    found = _live_artifacts(store, f"{pipeline_name}.{statistics_gen.id}",
                            standard_artifacts.ExampleStatistics.TYPE_NAME)
    statistics_span = statistics_spans(store, [a.id for a in found])
    statistics = latest_per_span(found, lambda a: statistics_span.get(a.id))
    wanted = example_gen.settings_of(ratings_gen)
    needed = []
    for span in range(first, last + 1):
        artifact = examples.get(span)
        stale = artifact is None or _producer_settings(store, artifact.id) != wanted
        if stale or (span == last and span not in statistics):
            needed.append(span)
    return needed


def _producer_settings(store, artifact_id: int) -> Optional[Dict]:
    """The ExampleGen settings (example_gen.recorded_settings) of the execution that wrote an artifact."""
    events = [e for e in store.get_events_by_artifact_ids([artifact_id]) if e.type == metadata_store_pb2.Event.OUTPUT]
    if not events:
        return None
    [execution] = store.get_executions_by_id([events[0].execution_id])
    return example_gen.recorded_settings(execution)
