"""The span runs' resolvers on planted artifacts: the training window (SpanRangeStrategy's static range,
the latest ingestion of each span, nothing unless the whole range is there) and the analyzer cache."""

from tfx import v1 as tfx
from tfx.types import standard_artifacts

from components.span_resolvers import LatestIfAnyStrategy, LatestPerSpanRangeStrategy, span_of


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


def test_the_analyzer_cache_is_the_latest_or_none_on_a_first_run():
    caches = [standard_artifacts.TransformCache() for _ in range(3)]
    for artifact_id, artifact in zip((4, 9, 6), caches, strict=True):
        artifact.id = artifact_id
    assert [a.id for a in LatestIfAnyStrategy().resolve_artifacts(None, {"cache": caches})["cache"]] == [9]
    assert LatestIfAnyStrategy().resolve_artifacts(None, {"cache": []}) == {"cache": []}
