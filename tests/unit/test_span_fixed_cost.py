"""What cuts a replay span's fixed cost changes nothing it computes: in-process Beam tuned (pipeline.beam_local)
gives the same results, side inputs included; a model kept between Evaluator runs (components.evaluator.
kept_models) or replay's frozen model (app.replay._load) is the model on disk, loaded again when its files
change; the local runner collects garbage after the components that took time, not after every resolver.
The side-by-side replay of ml-100k spans is in docs/continuous-training.md#the-fixed-cost-of-a-span."""

import core  # noqa: F401  (first: Keras 2 before TensorFlow loads)

# isort: split
import inspect
import time

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import core as beam_core
from tensorflow_model_analysis.utils import model_util

from app import replay
from components import evaluator
from pipeline import beam_local, local_runner
from pipeline.config import PipelineConfig

IN_PROCESS = list(PipelineConfig(data_path="d", output_dir="o").beam_pipeline_args)


@pytest.fixture
def untuned():
    beam_local.untune()
    yield
    beam_local.untune()


def _side_input_pipeline():
    """Three stages reading the same side inputs (dict, list, singleton) over several bundles: what the
    state cache would have kept between bundles."""
    results = []
    with beam.Pipeline(argv=IN_PROCESS) as pipeline:
        table = pipeline | "Table" >> beam.Create([(str(i), i * i) for i in range(200)])
        total = pipeline | "Numbers" >> beam.Create(range(200)) | beam.CombineGlobally(sum)
        keys = pipeline | "Keys" >> beam.Create([str(i) for i in range(0, 200, 3)], reshuffle=True)
        looked_up = keys | "Lookup" >> beam.Map(
            lambda key, squares, total, names: (key, squares[key] + total + len(names)),
            squares=beam.pvalue.AsDict(table), total=beam.pvalue.AsSingleton(total),
            names=beam.pvalue.AsList(keys))
        again = looked_up | "Again" >> beam.Map(lambda kv, squares: kv[1] - squares[kv[0]],
                                                squares=beam.pvalue.AsDict(table))
        expected = [(str(i), i * i + 19900 + 67) for i in range(0, 200, 3)]
        assert_that(looked_up, equal_to(expected), label="CheckLookup")
        assert_that(again, equal_to([19900 + 67] * 67), label="CheckAgain")
        results.append(expected)
    return results


def test_tuned_in_process_beam_gives_the_same_results_without_the_state_cache(untuned):
    assert worker_handlers.STATE_CACHE_SIZE_MB > 0
    before = _side_input_pipeline()
    beam_local.tune()
    assert beam_local.tuned() and worker_handlers.STATE_CACHE_SIZE_MB == 0
    assert _side_input_pipeline() == before
    beam_local.untune()
    assert not beam_local.tuned() and worker_handlers.STATE_CACHE_SIZE_MB > 0


class _DoFn(beam.DoFn):
    def process(self, element, side=beam.DoFn.SideInputParam, *args, **kwargs):
        yield element


def _plain(a, b=2, *rest, c: int = 3, **more) -> int:
    return a


def test_remembered_signatures_are_inspects(untuned):
    original = beam_core.get_signature
    beam_local.tune()
    get_signature = beam_core.get_signature
    assert get_signature is not original and beam_local._ORIGINAL["get_signature"] is original
    first, second = _DoFn(), _DoFn()
    for func in (_plain, first.process, second.process, _DoFn.process, str.upper, "x".upper, _DoFn, len,
                 lambda x, y=1: x):
        assert get_signature(func) == beam_local._ORIGINAL["get_signature"](func), func
        assert get_signature(func) == get_signature(func)
    # A bound method's signature has no self, whatever the instance; the function's has it.
    assert list(get_signature(first.process).parameters)[0] == "element"
    assert list(get_signature(_DoFn.process).parameters)[0] == "self"
    assert get_signature(_plain) == inspect.signature(_plain)
    beam_local.untune()
    assert beam_core.get_signature is original


def _save(path: str, scale: float) -> str:
    module = tf.Module()
    module.scale = tf.Variable(scale)
    module.call = tf.function(lambda x: x * module.scale, input_signature=[tf.TensorSpec([], tf.float32)])
    tf.saved_model.save(module, path, signatures={"serving_default": module.call})
    return path


def _evaluate(model) -> float:
    return float(model.signatures["serving_default"](tf.constant(2.0))["output_0"])


def _construct(path: str):
    """What TFX's Evaluator asks TFMA for: the construct function of one model (kwargs, as TFMA calls it)."""
    return model_util.model_construct_fn(eval_saved_model_path=path, tags=[tf.saved_model.SERVING],
                                         model_type="tf_generic")


def test_the_evaluator_keeps_the_models_of_its_last_run_and_reloads_a_changed_one(tmp_path):
    deployed, candidate = _save(str(tmp_path / "deployed"), 3.0), _save(str(tmp_path / "candidate"), 5.0)
    with evaluator.kept_models():  # span N: the candidate against the deployed model
        first = {path: _construct(path)() for path in (deployed, candidate)}
    assert [_evaluate(first[deployed]), _evaluate(first[candidate])] == [6.0, 10.0]
    assert model_util.model_construct_fn is not None and len(evaluator._KEPT) == 2

    with evaluator.kept_models() as reused:  # span N + 1, candidate blessed: it is the deployed model now
        newer = _save(str(tmp_path / "newer"), 7.0)
        second = {path: _construct(path)() for path in (candidate, newer)}
        second[candidate] = _construct(candidate)()  # a second DoFn of the same run: counted once
        assert reused == [candidate]
    assert second[candidate] is first[candidate]  # not loaded again
    assert _evaluate(second[newer]) == 14.0
    # The deployed model of span N was not used by span N + 1: let go.
    assert {key[0] for key in evaluator._KEPT} == {candidate, newer}

    # A model rewritten in place (other files) is loaded again, not served from what was kept.
    time.sleep(0.01)
    _save(candidate, 11.0)
    with evaluator.kept_models() as reused:
        rewritten = _construct(candidate)()
        assert reused == []
    assert rewritten is not first[candidate] and _evaluate(rewritten) == 22.0

    # Keras / TFLite / TFJS models keep TFMA's own loading; positional calls too.
    with evaluator.kept_models():
        assert not isinstance(model_util.model_construct_fn(eval_saved_model_path=candidate, tags=["serve"],
                                                            model_type="tf_keras"), evaluator._KeptModel)
    assert model_util.model_construct_fn.__name__ == "model_construct_fn"  # restored
    with evaluator.kept_models():
        pass
    assert evaluator._KEPT == {}  # a run that loaded nothing keeps nothing


def test_the_replays_frozen_model_is_loaded_once_and_again_when_its_files_change(tmp_path):
    path = _save(str(tmp_path / "frozen"), 3.0)
    model = replay._load(path)
    assert replay._load(path) is model and _evaluate(model) == 6.0
    time.sleep(0.01)
    _save(path, 4.0)
    assert _evaluate(replay._load(path)) == 8.0
    other = _save(str(tmp_path / "other"), 1.0)
    assert _evaluate(replay._load(other)) == 2.0 and len(replay._loaded) == 1


def test_memory_is_released_after_the_components_that_took_time_only(monkeypatch):
    released, timings = [], []
    monkeypatch.setattr(local_runner, "release_memory", lambda: released.append(True))
    durations = iter([0.0, local_runner.RELEASE_MEMORY_MIN_SECONDS + 0.05, 0.0])

    class _Info:
        execution_id = None

    class _Node:
        def __init__(self, name):
            self.node_info = type("NodeInfo", (), {"id": name})()

    def fake_launch(self):
        time.sleep(next(durations))
        return _Info()

    monkeypatch.setattr(local_runner.launcher.Launcher, "launch", fake_launch)
    with local_runner._reporting_launches(lambda line: None, timings):
        for name in ("Resolver", "Transform", "DataGate"):
            launcher = object.__new__(local_runner.launcher.Launcher)
            launcher._pipeline_node = _Node(name)
            local_runner.launcher.Launcher.launch(launcher)
    assert [t["component"] for t in timings] == ["Resolver", "Transform", "DataGate"]
    assert released == [True]  # after Transform only

