"""What cuts a replay span's fixed cost changes nothing it computes: a model kept between Evaluator runs (components.evaluator.
kept_models) or replay's frozen model (app.replay._load) is the model on disk, loaded again when its files
change; the local runner collects garbage after the components that took time, not after every resolver.
The side-by-side replay of ml-100k spans is in docs/continuous-training.md#the-fixed-cost-of-a-span."""

import core  # noqa: F401  (first: Keras 2 before TensorFlow loads)

# isort: split
import time

import tensorflow as tf
from tensorflow_model_analysis.utils import model_util

from app import replay
from components import evaluator
from pipeline import local_runner


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

