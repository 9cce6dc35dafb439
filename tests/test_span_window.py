"""A span run's training window, both ways (PipelineConfig.span_window): resolved from ML Metadata by TFX's
SpanRangeStrategy (local runs: each span ingested once, by its own run) and built inside ExampleGen (what
the compiled Vertex / Kubeflow spec runs; tests/test_spec_runs.py runs that spec). Both train the same
model on the same ratings."""

import json

import ml_metadata as mlmd
import pytest
from ml_metadata.proto import metadata_store_pb2

from app.results import data_result, latest_inputs, user_history, variant_result
from components.span_resolvers import span_of, statistics_spans
from movielens import spans, synthetic
from movielens.reader import DataError
from pipeline.config import named_config
from pipeline.local_runner import run_pipeline, spans_to_ingest

SPAN = 3  # gated on span 3, trained on spans 1 and 2
WINDOW = 2


def _config(data, out, span_window, **changes):
    return named_config("default", data_path=data, output_dir=out, split="span", window_spans=WINDOW, span=SPAN,
                        span_window=span_window, value_floor=0.0, **changes).with_model(epochs=1, batch_size=256)


def _store(config):
    return mlmd.MetadataStore(config.metadata_connection_config(read_only=True))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("window")
    flat = synthetic.generate(str(tmp / "flat"), num_users=80, num_movies=300, num_ratings=4000, days=27, seed=5)
    data = str(tmp / "spans")
    spans.write(flat, data, span_days=7)
    out = {}
    for mode in ("resolver", "example_gen"):
        config = _config(data, str(tmp / mode), mode)
        lines = []
        timings = run_pipeline(config, progress=lines.append)
        out[mode] = {"config": config, "lines": lines, "timings": timings, "model": variant_result(config),
                     "data": data_result(config), "left_to_ingest": spans_to_ingest(config, 1, 2),
                     "transform_inputs": latest_inputs(config, "Transform")}
    # The same output, span 3 again with shorter histories: the window's spans were ingested with other
    # settings, so they are ingested again, and the window holds only the new ingestions.
    shorter = _config(data, str(tmp / "resolver"), "resolver").with_model(history_length=10)
    out["stale"] = spans_to_ingest(shorter, 1, 2)
    lines = []
    run_pipeline(shorter, progress=lines.append)
    out["shorter"] = {"config": shorter, "lines": lines}
    out["data"] = data
    return out


def _window_spans(config):
    """The spans of the examples the latest Trainer trained on, one entry per artifact."""
    return sorted(span_of(a) for a in latest_inputs(config, "RetrievalTrainer")["examples"])


def test_the_resolver_ingests_each_span_of_the_window_once_then_resolves_it(runs):
    run = runs["resolver"]
    assert [line for line in run["lines"] if line.startswith("--- ingesting")] == [
        f"--- ingesting span {s} (in the training window of span {SPAN})" for s in (1, 2)]
    assert _window_spans(run["config"]) == [1, 2]  # one artifact per span: TFX's SpanRangeStrategy
    examples = latest_inputs(run["config"], "RetrievalTrainer")["eval_examples"]
    assert [span_of(a) for a in examples] == [SPAN]
    assert json.loads(examples[0].properties["split_names"].string_value) == ["eval"]
    # Transform analysed the same window; Baselines trained on it and scored span 3.
    assert sorted(span_of(a) for a in latest_inputs(run["config"], "Transform")["examples"]) == [1, 2]
    assert sorted(span_of(a) for a in latest_inputs(run["config"], "Baselines")["train_examples"]) == [1, 2]
    # The first run has no analyzer cache to start from; it writes one (used below).
    assert not run["transform_inputs"].get("analyzer_cache")
    # Nothing left to ingest: a rerun would go straight to the span.
    assert run["left_to_ingest"] == []


def test_drift_compares_the_span_with_the_previous_spans_statistics(runs):
    config = runs["resolver"]["config"]
    inputs = latest_inputs(config, "DistributionValidator")
    store = _store(config)
    assert statistics_spans(store, [a.id for a in inputs["baseline_statistics"]]).popitem()[1] == SPAN - 1
    assert statistics_spans(store, [a.id for a in inputs["statistics"]]).popitem()[1] == SPAN


def test_both_ways_train_the_same_model_on_the_same_ratings(runs):
    resolver, example_gen = runs["resolver"], runs["example_gen"]
    assert resolver["data"]["summary"] == example_gen["data"]["summary"]
    manifest = spans.Manifest.read(runs["data"])
    assert resolver["data"]["summary"]["train"] == manifest.counts[1] + manifest.counts[2]
    assert resolver["data"]["summary"]["eval"] == manifest.counts[SPAN]
    assert resolver["data"]["baselines"] == example_gen["data"]["baselines"]
    for k, accuracy in example_gen["model"]["eval"].items():
        assert resolver["model"]["eval"][k] == pytest.approx(accuracy, abs=1e-6), k
    assert resolver["model"]["blessed"] and example_gen["model"]["blessed"]
    # `recommend` without --history reads the user's latest ratings from the same places.
    for user in ("1", "2", "3"):
        found = user_history(resolver["config"], user, before=2**40)
        assert found and found == user_history(example_gen["config"], user, before=2**40)
    # The ExampleGen way writes the window into the run's own artifact, and resolves nothing.
    nodes = {t["component"] for t in example_gen["timings"]}
    assert "TrainingWindowResolver" not in nodes and not any(
        line.startswith("--- ingesting") for line in example_gen["lines"])


def test_spans_ingested_with_other_settings_are_ingested_again_and_never_trained_on_twice(runs):
    assert runs["stale"] == [1, 2]
    shorter = runs["shorter"]
    assert sum(line.startswith("--- ingesting") for line in shorter["lines"]) == 2
    assert _window_spans(shorter["config"]) == [1, 2]
    store = _store(shorter["config"])
    trained_on = latest_inputs(shorter["config"], "RetrievalTrainer")["examples"]
    context = store.get_context_by_type_and_name("node", f"{shorter['config'].pipeline_name}.RatingsExampleGen")
    per_span = {}
    for artifact in store.get_artifacts_by_context(context.id):
        per_span.setdefault(span_of(artifact), []).append(artifact.id)
    assert len(per_span[1]) == 2 and len(per_span[2]) == 2  # both ingestions are in ML Metadata
    assert sorted(a.id for a in trained_on) == [max(per_span[1]), max(per_span[2])]  # only the latest
    # Every run of span 3 gets the same analyzer cache, the previous span's (none was run here), never the
    # cache span 3's own first run wrote: a rerun with unchanged inputs is then served from TFX's cache.
    assert not latest_inputs(shorter["config"], "Transform").get("analyzer_cache")


def test_the_first_span_has_nothing_to_train_on(runs, tmp_path):
    config = _config(runs["data"], str(tmp_path / "out"), "resolver").replace(span=0)
    with pytest.raises(DataError, match=r"span-0: span 0 is the first span: there is nothing before it to train "
                                        r"on \(the first trainable span is 1\)"):
        run_pipeline(config)
    assert not (tmp_path / "out" / "metadata.sqlite").exists() or not [
        e for e in _store(config).get_executions() if e.last_known_state == metadata_store_pb2.Execution.COMPLETE]
