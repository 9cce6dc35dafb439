"""The compiled Kubeflow / Vertex spec runs under a local stand-in for the KFP v2 launcher.

tests/kfp_launcher.py builds each task's ExecutorInput from the spec the way
the launcher does and runs the container command with this venv. Kubeflow:
both variants end to end (baseline blessed and pushed, then a timestamp
candidate with learning rate 0 that is compared with it and not blessed).
Vertex: the two ExampleGens (the parameter contract, the ExampleGen driver),
with the Dataflow flags swapped for the local Beam runner. And the schema
2.0.0 spec compile wrote before: its ExampleGen driver fails under KFP 2.x.
"""

import json
import os
import subprocess
import sys

import kfp_launcher  # tests/kfp_launcher.py (pytest puts tests/ on sys.path)
import pytest

from movielens import synthetic
from trainer.config import METRICS_FILE

CLI = os.path.join(os.path.dirname(sys.executable), "movielens-tfx")
IMAGE = "us-docker.pkg.dev/p/r/movielens-tfx:1"
SERVING = ("serving", "movielens_retrieval")
LOCAL_BEAM = ["--runner=apache_beam.runners.portability.fn_api_runner.FnApiRunner", "--direct_running_mode=in_memory",
              "--direct_num_workers=1", "--sdk_container_image=in-process"]
# Small and quick; more than 100 movies (the model exports its top 100).
SMALL_MODEL = {"epochs": 3, "batch_size": 256}


def _env():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]),
            "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _compile(tmp, target, *extra):
    os.makedirs(tmp, exist_ok=True)
    # 400 movies: top-100 of a catalog barely larger than 100 would bless a random model.
    data = synthetic.generate(str(tmp / "data"), num_users=60, num_movies=400, num_ratings=3000, seed=1)
    path, root = tmp / f"{target}.json", str(tmp / "root")
    result = subprocess.run([CLI, "compile", "--target", target, "--image", IMAGE, "--data", data, "--root", root,
                             "--output", str(path), *extra], capture_output=True, text=True, env=_env())
    assert result.returncode == 0, result.stderr[-3000:]
    with open(path) as f:
        return json.load(f), root


def _model_config(job, **changes):
    default = json.loads(job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]["model_config"]["defaultValue"])
    return {"model_config": json.dumps({**default, **SMALL_MODEL, **changes}, sort_keys=True)}


def _run(job, target, parameters, store, **kwargs):
    try:
        return kfp_launcher.run(job, job["runtimeConfig"]["gcsOutputDirectory"], target, parameters, store,
                                env=_env(), log=lambda m: None, **kwargs)
    except subprocess.CalledProcessError as e:  # the container's traceback, not just its exit status
        pytest.fail(f"{e.cmd} failed:\n{e.stderr[-4000:]}")


def _versions(root):
    serving = os.path.join(root, *SERVING)
    return sorted(v for v in os.listdir(serving) if v.isdigit()) if os.path.isdir(serving) else []


@pytest.fixture(scope="module")
def kubeflow(tmp_path_factory):
    # The tutorial's small model and a floor of 0: a few steps on synthetic ratings are not
    # meant to beat EASE; the gate's comparison with the blessed model is what this run checks.
    job, root = _compile(tmp_path_factory.mktemp("kubeflow"), "kubeflow", "--config", "tutorial", "--value-floor", "0")
    store = kfp_launcher.Store()
    first = _run(job, "kubeflow", _model_config(job, use_timestamps=False), store)
    versions_after_first = _versions(root)
    # A candidate that cannot have learned anything: it must not beat the baseline.
    second = _run(job, "kubeflow", _model_config(job, use_timestamps=True, learning_rate=0.0), store)
    return {"job": job, "root": root, "first": first, "second": second, "versions_after_first": versions_after_first}


def test_spec_schema_2_1_passes_the_inputs_spec_to_the_container(kubeflow):
    # Without it TFX's container reads only the legacy `inputs.parameters`,
    # which KFP 2.x does not fill (KeyError: 'input_config' in the driver).
    spec = kubeflow["job"]["pipelineSpec"]
    assert spec["schemaVersion"] == "2.1.0"
    for name, executor in spec["deploymentSpec"]["executors"].items():
        if "container" in executor:
            assert "--json_serialized_inputs_spec_args" in executor["container"]["args"], name
    assert "parameterValues" in kubeflow["job"]["runtimeConfig"]


def test_baseline_is_blessed_on_the_floor_and_pushed(kubeflow):
    first, root = kubeflow["first"], kubeflow["root"]
    assert first["LatestBlessedModelResolver-model-blessing-resolver"]["model_blessing"] == []
    assert first["LatestBlessedModelResolver-model-resolver"]["model"] == []
    blessing = first["Evaluator"]["blessing"][0]["metadata"]
    assert blessing["blessed"] == 1 and "baseline_model_id" not in blessing
    assert blessing["current_model_id"] == first["RetrievalTrainer"]["model"][0]["name"]
    pushed = first["Pusher"]["pushed_model"][0]["metadata"]
    assert pushed["pushed"] == 1
    versions = kubeflow["versions_after_first"]
    assert len(versions) == 1 and pushed["pushed_destination"] == os.path.join(root, *SERVING, versions[0])
    assert os.path.exists(os.path.join(root, *SERVING, versions[0], "saved_model.pb"))


def test_candidate_is_compared_with_the_blessed_baseline_and_not_pushed(kubeflow):
    first, second = kubeflow["first"], kubeflow["second"]
    assert second["LatestBlessedModelResolver-model-blessing-resolver"]["model_blessing"] == first["Evaluator"]["blessing"]
    assert second["LatestBlessedModelResolver-model-resolver"]["model"] == first["RetrievalTrainer"]["model"]
    blessing = second["Evaluator"]["blessing"][0]["metadata"]
    assert blessing["blessed"] == 0
    assert blessing["baseline_model_id"] == first["RetrievalTrainer"]["model"][0]["name"]
    assert second["Pusher"]["pushed_model"][0]["metadata"]["pushed"] == 0
    assert _versions(kubeflow["root"]) == kubeflow["versions_after_first"]


def test_second_run_takes_upstream_from_the_cache_and_trains_with_its_model_config(kubeflow):
    first, second = kubeflow["first"], kubeflow["second"]
    for task in ("RatingsExampleGen", "CatalogExampleGen", "StatisticsGen", "SchemaGen", "Transform"):
        assert second[task] == first[task], task
    assert second["RetrievalTrainer"] != first["RetrievalTrainer"]


def test_vertex_spec_runs_its_drivers_and_first_components(tmp_path):
    job, root = _compile(tmp_path, "vertex", "--project", "my-proj", "--region", "europe-west4")
    assert job["pipelineSpec"]["schemaVersion"] == "2.1.0"
    # Dataflow cannot run here: the same executors on the local Beam runner.
    for executor in job["pipelineSpec"]["deploymentSpec"]["executors"].values():
        for step in (executor.get("container"), executor.get("container", {}).get("lifecycle", {}).get("preCacheCheck")):
            if step:
                assert "--runner=DataflowRunner" in step["args"]
                step["args"] = [a for a in step["args"] if not a.startswith("--") or a.startswith("--json_serialized")
                                or a == "--executor_class_path"] + LOCAL_BEAM
    out = _run(job, "vertex", _model_config(job), kfp_launcher.Store(), stop_after="RatingsExampleGen")
    examples = out["RatingsExampleGen"]["examples"][0]["metadata"]
    assert examples["num_examples_train"] + examples["num_examples_eval"] == 3000
    assert json.loads(examples["split_names"]) == ["train", "eval"]
    assert out["CatalogExampleGen"]["examples"][0]["metadata"]["num_examples_catalog"] == 400


def test_schema_2_0_spec_fails_under_the_kfp_2_launcher(tmp_path, monkeypatch):
    """What compile wrote before: TFX's driver reads only the legacy inputs.parameters."""
    from pipeline import kubeflow_runner
    from pipeline.config import named_config

    monkeypatch.setattr(kubeflow_runner, "USE_PIPELINE_SPEC_2_1", False)
    data = synthetic.generate(str(tmp_path / "data"), num_users=10, num_movies=10, num_ratings=50, seed=1)
    config = named_config("default", data_path=data, output_dir=str(tmp_path / "root"))
    with open(kubeflow_runner.compile_pipeline(config, IMAGE, str(tmp_path / "old.json"))) as f:
        job = json.load(f)
    assert job["pipelineSpec"]["schemaVersion"] == "2.0.0"
    with pytest.raises(subprocess.CalledProcessError) as failure:
        kfp_launcher.run(job, str(tmp_path / "root"), "kubeflow", {}, env=_env(), log=lambda m: None,
                         stop_after="CatalogExampleGen")
    assert "file_based_example_gen.driver" in failure.value.cmd and "KeyError: 'input_config'" in failure.value.stderr


def test_span_aware_spec_ingests_the_submitted_span_warm_starts_and_checks_drift(tmp_path):
    """compile --split span: the span is the runtime parameter `range_config` (submit --span N); each run's
    ExampleGen builds the window before the span, the Trainer warm-starts from the latest blessed model."""
    from movielens import spans
    from pipeline import kubeflow_runner

    flat = synthetic.generate(str(tmp_path / "flat"), num_users=60, num_movies=400, num_ratings=3000, days=21, seed=2)
    manifest = spans.write(flat, str(tmp_path / "spans"), span_days=7)
    root, path = str(tmp_path / "root"), str(tmp_path / "spans.json")
    result = subprocess.run([CLI, "compile", "--target", "kubeflow", "--image", IMAGE, "--data", str(tmp_path / "spans"),
                             "--root", root, "--output", path, "--split", "span", "--window-spans", "1",
                             "--value-floor", "0"], capture_output=True, text=True, env=_env())
    assert result.returncode == 0, result.stderr[-3000:]
    with open(path) as f:
        job = json.load(f)
    assert job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]["range_config"]["defaultValue"] == "{}"
    store = kfp_launcher.Store()
    runs = {}
    for span in (1, 2):
        arguments = kubeflow_runner.job_arguments(path, "timestamp", "p", "r", span=span)
        parameters = {**arguments["job"]["parameter_values"], **_model_config(job)}
        runs[span] = _run(job, "kubeflow", parameters, store)
    for span, out in runs.items():
        examples = out["RatingsExampleGen"]["examples"][0]["metadata"]
        assert examples["eval_span"] == span and examples["first_train_span"] == span - 1
        assert json.loads(examples["split_names"]) == ["train", "eval", "previous"]
        assert examples["num_examples_train"] == manifest.counts[span - 1]  # a window of one span
        assert examples["num_examples_eval"] == manifest.counts[span]
        assert out["DistributionValidator"]["anomalies"][0]["metadata"]["blessed"]  # compared eval with previous
    first, second = runs[1], runs[2]
    assert first["Evaluator"]["blessing"][0]["metadata"]["blessed"] == 1
    assert second["LatestBlessedModelResolver-model-resolver"]["model"] == first["RetrievalTrainer"]["model"]
    with open(os.path.join(second["RetrievalTrainer"]["model_run"][0]["uri"], METRICS_FILE)) as f:
        warm_start = json.load(f)["warm_start"]
    assert warm_start and warm_start["rows_copied"] > 0
    with pytest.raises(ValueError, match="was not compiled for spans"):
        job_plain, _ = _compile(tmp_path / "plain", "kubeflow")
        with open(tmp_path / "plain.json", "w") as f:
            json.dump(job_plain, f)
        kubeflow_runner.job_arguments(str(tmp_path / "plain.json"), "timestamp", "p", "r", span=3)
