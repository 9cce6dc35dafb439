"""The Vertex AI / Kubeflow pipeline spec, compiled offline, and `submit`'s arguments."""

import json

import pytest
from kfp import components

from components.example_gen import read_settings
from trainer.config import NAMED_CONFIGS, TENSORBOARD_RUN_KEY

IMAGE = "us-docker.pkg.dev/p/r/movielens-tfx:1"


@pytest.fixture(scope="module")
def specs(tmp_path_factory, cli):
    tmp = tmp_path_factory.mktemp("compile")
    common = ["--image", IMAGE, "--data", "gs://bucket/data/ml-100k.zip", "--root", "gs://bucket/root"]
    out = {}
    for target, extra in (("kubeflow", []), ("vertex", ["--project", "my-proj", "--region", "europe-west4", "--vertex-training"])):
        path = tmp / f"{target}.json"
        result = cli("compile", "--target", target, "--output", str(path), *common, *extra)
        assert result.returncode == 0, result.stderr[-3000:]
        out[target] = (str(path), json.load(open(path)))
    return out


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_spec_has_every_component_and_the_dag(specs, target):
    _, job = specs[target]
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert {"RatingsExampleGen", "CatalogExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "DataGate",
            "Transform", "RetrievalTrainer", "Evaluator", "Pusher"} <= set(tasks)
    resolvers = [name for name in tasks if name.startswith("LatestBlessedModelResolver")]
    assert resolvers, "the latest-blessed-model resolver tasks"
    edges = {name: set(task.get("dependentTasks", [])) for name, task in tasks.items()}
    assert "RatingsExampleGen" in edges["StatisticsGen"]
    assert {"StatisticsGen"} <= edges["SchemaGen"] and {"SchemaGen", "StatisticsGen"} <= edges["ExampleValidator"]
    assert "ExampleValidator" in edges["DataGate"] and "DataGate" in edges["Transform"]
    assert {"Transform", "CatalogExampleGen"} <= edges["RetrievalTrainer"]
    assert "RetrievalTrainer" in edges["Evaluator"] and any(r in edges["Evaluator"] for r in resolvers)
    assert {"Evaluator", "RetrievalTrainer"} <= edges["Pusher"]
    images = {e["container"]["image"] for e in job["pipelineSpec"]["deploymentSpec"]["executors"].values() if "container" in e}
    assert images == {IMAGE}
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root/pipeline"
    # kfp's own loader reads the pipeline spec.
    assert components.load_component_from_text(json.dumps(job["pipelineSpec"])).name == "movielens-tfx"


@pytest.mark.parametrize("target", ["kubeflow", "vertex"])
def test_model_config_is_a_runtime_parameter(specs, target):
    path, job = specs[target]
    parameters = job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
    model_config = json.loads(parameters["model_config"]["defaultValue"])
    assert model_config["use_timestamps"] is False and model_config["epochs"] == NAMED_CONFIGS["default"].epochs
    assert ("ai_platform_training_args" in model_config) == (target == "vertex")


def test_vertex_spec_runs_beam_on_dataflow_and_trains_on_vertex(specs):
    _, job = specs["vertex"]
    text = json.dumps(job)
    for arg in ("--runner=DataflowRunner", "--project=my-proj", "--region=europe-west4",
                "--temp_location=gs://bucket/root/pipeline/tmp", f"--sdk_container_image={IMAGE}"):
        assert arg in text, arg
    model_config = json.loads(job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]["model_config"]["defaultValue"])
    pool = model_config["ai_platform_training_args"]["worker_pool_specs"][0]
    assert pool["container_spec"]["image_uri"] == IMAGE and model_config["ai_platform_vertex_region"] == "europe-west4"
    assert "VertexTrainingExecutor" in text
    kubeflow = json.dumps(specs["kubeflow"][1])
    assert "DataflowRunner" not in kubeflow and "VertexTrainingExecutor" not in kubeflow


def test_submit_dry_run_sets_use_timestamps_per_variant(specs, cli):
    path, _ = specs["vertex"]
    result = cli("submit", "--spec", path, "--project", "my-proj", "--region", "europe-west4", "--dry-run")
    assert result.returncode == 0, result.stderr[-2000:]
    decoder, text, jobs = json.JSONDecoder(), result.stdout, []
    while text.strip():
        job, end = decoder.raw_decode(text.strip())
        jobs.append(job)
        text = text.strip()[end:]
    assert [j["job"]["display_name"] for j in jobs] == ["movielens-tfx-baseline", "movielens-tfx-timestamp"]
    flags = [json.loads(j["job"]["parameter_values"]["model_config"])["use_timestamps"] for j in jobs]
    assert flags == [False, True]
    # Each variant's Trainer names its TensorBoard run after it, as in a local run.
    runs = [json.loads(j["job"]["parameter_values"]["model_config"])[TENSORBOARD_RUN_KEY] for j in jobs]
    assert runs == ["baseline", "timestamp"]
    assert jobs[0]["init"] == {"project": "my-proj", "location": "europe-west4"}
    assert jobs[0]["job"]["pipeline_root"] == "gs://bucket/root/pipeline"


def test_submit_and_compile_argument_errors(tmp_path, cli):
    result = cli("submit", "--spec", str(tmp_path / "missing.json"), "--project", "p", "--dry-run")
    assert result.returncode == 2 and "error: submit:" in result.stderr and "Traceback" not in result.stderr
    result = cli("compile", "--target", "vertex", "--image", IMAGE, "--data", "gs://b/d", "--root", "gs://b/r",
                 "--output", str(tmp_path / "p.json"))
    assert result.returncode == 2 and "--target vertex needs --project" in result.stderr


def test_compile_writes_the_model_and_ingestion_options_into_the_spec(tmp_path, cli):
    path = tmp_path / "spec.json"
    result = cli("compile", "--target", "kubeflow", "--output", str(path), "--image", IMAGE, "--data", "gs://b/d",
                 "--root", "gs://b/r", "--set", "epochs=5", "--max-bad-rows", "3", "--train-fraction", "0.7")
    assert result.returncode == 0, result.stderr[-3000:]
    job = json.load(open(path))
    model_config = json.loads(job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]["model_config"]["defaultValue"])
    assert model_config["epochs"] == 5 and model_config["history_length"] == NAMED_CONFIGS["default"].history_length
    ratings_gen = job["pipelineSpec"]["root"]["dag"]["tasks"]["RatingsExampleGen"]
    settings = read_settings({"custom_config": ratings_gen["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constant"]})
    assert (settings["max_bad_rows"], settings["train_fraction"], settings["split_method"]) == (3, 0.7, "temporal")


def _training_pools(job):
    model_config = json.loads(job["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]["model_config"]["defaultValue"])
    return model_config["ai_platform_training_args"]["worker_pool_specs"]


def test_vertex_training_replicas_compile_to_a_chief_pool_and_a_worker_pool(specs, tmp_path, cli):
    # Without --replicas: one pool of one replica (one machine, no TF_CONFIG cluster to speak of).
    [single] = _training_pools(specs["vertex"][1])
    assert single["replica_count"] == 1
    path = tmp_path / "replicas.json"
    result = cli("compile", "--target", "vertex", "--output", str(path), "--image", IMAGE, "--data", "gs://b/d",
                 "--root", "gs://b/r", "--project", "my-proj", "--vertex-training", "--replicas", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    chief, workers = _training_pools(json.load(open(path)))
    # Vertex's first pool is the chief (TF_CONFIG "chief"), the second the workers ("worker").
    assert (chief["replica_count"], workers["replica_count"]) == (1, 2)
    for pool in (chief, workers):
        assert pool["container_spec"]["image_uri"] == IMAGE
        assert pool["machine_spec"] == single["machine_spec"]
    assert "VertexTrainingExecutor" in json.dumps(json.load(open(path)))


@pytest.mark.parametrize("extra, message", [
    (["--project", "my-proj", "--replicas", "2"], "error: --replicas 2 needs --vertex-training and --project"),
    (["--project", "my-proj", "--vertex-training", "--replicas", "0"],
     "error: training_replicas (--replicas): 0 is not a positive integer"),
])
def test_replicas_argument_errors(tmp_path, cli, extra, message):
    path = tmp_path / "p.json"
    result = cli("compile", "--target", "vertex", "--image", IMAGE, "--data", "gs://b/d", "--root", "gs://b/r",
                 "--output", str(path), *extra)
    # One line, no traceback.
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr[-2000:]
    assert result.stderr.count("\n") == 1
    assert not path.exists()
