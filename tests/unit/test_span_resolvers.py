"""The span runs' resolvers on planted artifacts: the training window (SpanRangeStrategy's static range,
the latest ingestion of each span, nothing unless the whole range is there) and the analyzer cache (the
previous span's, on every run of a span)."""

from tfx import v1 as tfx
from tfx.types import standard_artifacts

from components.span_resolvers import AnalyzerCacheBeforeSpanStrategy, LatestPerSpanRangeStrategy, span_of


def _examples(artifact_id, span, as_string=False):
    artifact = standard_artifacts.Examples()
    artifact.id = artifact_id
    if as_string:  # how older TFX recorded it
        artifact.set_string_custom_property("span", str(span))
    else:
        artifact.set_int_custom_property("span", span)
    return artifact


def _resolve(artifacts, first, last):
    strategy = LatestPerSpanRangeStrategy(range_config=tfx.proto.RangeConfig(
        static_range=tfx.proto.StaticRange(start_span_number=first, end_span_number=last)))
    resolved = strategy.resolve_artifacts(None, {"examples": artifacts})
    return None if resolved is None else [a.id for a in resolved["examples"]]


def test_the_latest_ingestion_of_each_span_in_range_ascending():
    # Span 2 ingested twice (ids 3 and 7), span 1 once; spans 0 and 3 are outside the range.
    artifacts = [_examples(1, 0), _examples(2, 1), _examples(3, 2), _examples(5, 3), _examples(7, 2, as_string=True)]
    assert _resolve(artifacts, 1, 2) == [2, 7]
    assert _resolve(artifacts, 0, 3) == [1, 2, 7, 5]
    assert [span_of(a.mlmd_artifact) for a in artifacts] == [0, 1, 2, 3, 2]


def test_nothing_unless_every_span_of_the_range_was_ingested():
    artifacts = [_examples(1, 0), _examples(2, 2)]
    assert _resolve(artifacts, 0, 2) is None  # span 1 is missing: no run trains on part of its window
    assert _resolve(artifacts, 3, 4) is None
    assert _resolve([], 0, 0) is None


def _planted_store():
    """An in-memory ML Metadata store with Transform runs for spans 1, 2 and 2 again (window 2): each reads
    the examples of its window's spans and writes an analyzer cache."""
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2 as pb

    connection = pb.ConnectionConfig()
    connection.fake_database.SetInParent()
    store = mlmd.MetadataStore(connection)
    examples_type = store.put_artifact_type(pb.ArtifactType(name="Examples"))
    cache_type = store.put_artifact_type(pb.ArtifactType(name="TransformCache"))
    transform_type = store.put_execution_type(pb.ExecutionType(name="Transform"))
    examples = {}
    for span in range(3):
        artifact = pb.Artifact(type_id=examples_type)
        artifact.custom_properties["span"].int_value = span
        [examples[span]] = store.put_artifacts([artifact])

    def transform(window):
        [execution] = store.put_executions([pb.Execution(type_id=transform_type)])
        [cache] = store.put_artifacts([pb.Artifact(type_id=cache_type)])
        events = [pb.Event(artifact_id=examples[s], execution_id=execution, type=pb.Event.INPUT,
                           path=pb.Event.Path(steps=[pb.Event.Path.Step(key="examples")])) for s in window]
        events.append(pb.Event(artifact_id=cache, execution_id=execution, type=pb.Event.OUTPUT,
                               path=pb.Event.Path(steps=[pb.Event.Path.Step(key="updated_analyzer_cache")])))
        store.put_events(events)
        return cache

    return store, [transform([0]), transform([0, 1]), transform([0, 1])]


def _caches(ids):
    out = []
    for artifact_id in ids:
        artifact = standard_artifacts.TransformCache()
        artifact.id = artifact_id
        out.append(artifact)
    return out


def test_every_run_of_a_span_gets_the_previous_spans_analyzer_cache_never_its_own():
    store, (span_1, span_2, span_2_again) = _planted_store()
    caches = _caches([span_1, span_2, span_2_again])

    def resolved(span):
        return [a.id for a in AnalyzerCacheBeforeSpanStrategy(span).resolve_artifacts(store, {"cache": caches})["cache"]]

    # Span 2's first run and its rerun (resumed after a kill, or the job's second variant) both start from
    # span 1's cache: the same inputs, so TFX's cache serves the finished Transform. The latest cache,
    # span 2's own, would be a new input and re-run it.
    assert resolved(2) == [span_1]
    assert resolved(3) == [span_2_again]  # the latest of span 2's runs
    assert resolved(1) == []  # the first run: nothing before it
    assert AnalyzerCacheBeforeSpanStrategy(2).resolve_artifacts(store, {"cache": []}) == {"cache": []}
