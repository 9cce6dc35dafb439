"""The TFMA combiner behind TopKAccuracy, and the report's table."""

import numpy as np
import pytest
from tensorflow_model_analysis.metrics import metric_types

from app import report
from trainer import tfma_metric
from trainer.export import hit_output


def _inputs(hits, model_name=None):
    prediction = {hit_output(100): np.array(hits, np.float32)}
    if model_name:
        prediction = {model_name: prediction, "baseline": {hit_output(100): np.zeros(len(hits))}}
    return metric_types.StandardMetricInputs(prediction=prediction)


@pytest.mark.parametrize("model_name", ["", "candidate"])
def test_mean_hit_averages_one_output_across_batches_and_merges(model_name):
    key = metric_types.MetricKey(name=tfma_metric.metric_name(100), model_name=model_name)
    combiner = tfma_metric.MeanHit(key, model_name, hit_output(100))
    a = combiner.add_input(combiner.create_accumulator(), _inputs([1, 0, 1], model_name))
    b = combiner.add_input(combiner.create_accumulator(), _inputs([0, 0], model_name))
    assert combiner.extract_output(combiner.merge_accumulators([a, b])) == {key: pytest.approx(2 / 5)}
    assert np.isnan(combiner.extract_output(combiner.create_accumulator())[key])


def test_mean_hit_one_example_at_a_time_as_the_evaluator_passes_them():
    # After TFMA's per-example split each input is a [1] array; the mean is the same to the digit.
    key = metric_types.MetricKey(name=tfma_metric.metric_name(100), model_name="candidate")
    combiner = tfma_metric.MeanHit(key, "candidate", hit_output(100))
    hits = np.random.default_rng(0).integers(0, 2, 1001).astype(np.float32)
    parts = [combiner.create_accumulator() for _ in range(3)]
    for i in range(hits.size):
        parts[i % 3] = combiner.add_input(parts[i % 3], _inputs(hits[i:i + 1], "candidate"))
    [mean] = combiner.extract_output(combiner.merge_accumulators(parts)).values()
    assert mean == float(np.float64(hits.sum()) / np.float64(hits.size))


def test_top_k_accuracy_computes_one_key_per_model():
    computations = tfma_metric.TopKAccuracy(k=10).computations(model_names=["candidate", "baseline"])
    keys = [c.keys[0] for c in computations]
    assert [(k.name, k.model_name) for k in keys] == [("top_10_accuracy", "candidate"), ("top_10_accuracy", "baseline")]


def _result():
    return {
        "gate": {"k": 100, "value_floor": 0.3, "value_floor_from": "best baseline", "min_improvement": 0.0,
                 "confidence": 0.95},
        "baselines": {"popularity": {1: 0.01, 100: 0.3}},
        "models": {
            "baseline": {"eval": {1: 0.02, 100: 0.41}, "blessed": True, "pushed_to": "serving/m/17"},
            "timestamp": {"eval": {1: 0.03, 100: 0.40}, "blessed": False, "pushed_to": None,
                          "floor_baseline": "popularity",
                          "comparisons": {"blessed_model": {"words": "not distinguishable: -0.0100 [-0.0300, +0.0100]"},
                                          "floor_baseline": {"words": "better: +0.1000 [+0.0800, +0.1200]"}},
                          "not_blessed_because": ["the gain over the latest blessed model is not clearly above 0.0000: "
                                                  "its interval's lower bound is -0.0300"]},
        },
    }


def test_table_rows_baselines_then_models_and_the_gate_decisions():
    lines = report.table(_result()).splitlines()
    assert lines[0].split() == ["model", "top_1", "top_100", "blessed", "pushed", "to"]
    assert lines[2].split() == ["popularity", "0.0100", "0.3000", "-", "-"]
    assert lines[3].split() == ["baseline", "0.0200", "0.4100", "yes", "serving/m/17"]
    assert lines[4].split() == ["timestamp", "0.0300", "0.4000", "no", "-"]
    assert lines[5] == ("gate: eval top-100 accuracy >= 0.3000 (value floor: best baseline) with the 95% interval "
                        "of the gain over it above 0, and the 95% interval of the gain over the latest blessed model "
                        "above 0.0 (users resampled)")
    assert lines[6:] == ["baseline: blessed and pushed",
                         "timestamp vs the latest blessed model: not distinguishable: -0.0100 [-0.0300, +0.0100]",
                         "timestamp vs popularity: better: +0.1000 [+0.0800, +0.1200]",
                         "timestamp: not blessed: the gain over the latest blessed model is not clearly above 0.0000: "
                         "its interval's lower bound is -0.0300"]
    assert "| popularity | 0.0100 | 0.3000 | - | - |" in report.markdown({**_result(), "dataset": {
        "path": "d", "layout": "ml-100k", "ratings": 10, "movies": 3, "train": 8, "eval": 2}, "split": "temporal",
        "config": "default"})


def test_the_gate_judges_the_overall_slice_on_intervals_and_takes_the_baselines_floor():
    from components.evaluator import raise_value_floor, set_comparisons
    from pipeline.config import PipelineConfig
    from pipeline.evaluation import SLICE_FEATURES, eval_config

    config = eval_config(PipelineConfig(data_path="d", min_improvement=0.01, confidence=0.9, training_noise=0.0))
    assert [list(spec.feature_keys) for spec in config.slicing_specs] == [[], *([key] for key in SLICE_FEATURES)]
    metrics = config.metrics_specs[0].metrics
    gated = {m.class_name + ":" + tfma_metric.params(m).get("against", ""): m for m in metrics if m.per_slice_thresholds}
    assert sorted(gated) == ["PairedGain:baseline", "PairedGain:blessed", "TopKAccuracy:"]
    for metric in gated.values():
        assert not metric.HasField("threshold")  # no threshold on the slices
        [per_slice] = metric.per_slice_thresholds
        assert [list(spec.feature_keys) for spec in per_slice.slicing_specs] == [[]]  # the overall slice only
        assert not per_slice.threshold.HasField("change_threshold")  # point changes are not the rule
    bound = lambda name: gated[name].per_slice_thresholds[0].threshold.value_threshold.lower_bound.value  # noqa: E731
    assert bound("PairedGain:blessed") == pytest.approx(0.01) and bound("PairedGain:blessed") > 0.01
    assert bound("PairedGain:baseline") == pytest.approx(0.0, abs=1e-8) and bound("PairedGain:baseline") > 0.0
    assert {tfma_metric.params(m)["confidence"] for m in gated.values() if m.class_name == "PairedGain"} == {0.9}
    assert raise_value_floor(config, 0.53) == pytest.approx(0.53)
    assert bound("TopKAccuracy:") == pytest.approx(0.53)
    # At run time: pointed at the best baseline's hits; without a blessed model, that comparison is dropped.
    assert set_comparisons(config, False, "ease", "b/per_rating_hits.json") == 0.9
    left = [tfma_metric.params(m) for m in config.metrics_specs[0].metrics if tfma_metric.is_paired_gain(m)]
    assert left == [{"against": "baseline", "baseline": "ease", "confidence": 0.9, "hits_path": "b/per_rating_hits.json",
                     "k": 100, "training_noise": 0.0}]
    explicit = eval_config(PipelineConfig(data_path="d", value_floor=0.6))
    assert raise_value_floor(explicit, 0.0) == pytest.approx(0.6)  # --value-floor stays
    reported = [m for m in explicit.metrics_specs[0].metrics if tfma_metric.is_paired_gain(m, "baseline")]
    assert len(reported) == 1 and not reported[0].per_slice_thresholds  # reported, not gated on
