"""TF_CONFIG as the Trainer reads it (trainer.cluster): worker count, chief, Vertex AI's task names, refusals;
and how a global batch is shared out (shard_bounds)."""

import json

import pytest

from core.errors import ConfigError
from pipeline.config import CloudConfig
from trainer.cluster import Cluster, from_environment, parse, shard_bounds


def _tf_config(cluster, task_type, index, **extra):
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}, **extra})


@pytest.mark.parametrize("text", [None, "", "  ", "{}", '{"cluster": {}}', '{"task": {"type": "chief", "index": 0}}'])
def test_no_cluster_is_one_worker_and_the_chief(text):
    cluster = parse(text)
    assert (cluster.num_workers, cluster.is_chief, cluster.distributed) == (1, True, False)


def test_a_cluster_of_one_chief_is_one_worker():
    # What Vertex sets for a job of one replica: not distributed, the default strategy.
    cluster = parse(_tf_config({"chief": ["host-0:2222"]}, "chief", 0, environment="cloud"))
    assert (cluster.num_workers, cluster.is_chief, cluster.distributed) == (1, True, False)


def test_vertex_chief_and_worker_pools():
    """Vertex AI's TF_CONFIG: the first worker pool is "chief", the second "worker"."""
    pools = {"chief": ["cmle-training-workerpool0-ab-0:2222"],
             "worker": ["cmle-training-workerpool1-ab-0:2222", "cmle-training-workerpool1-ab-1:2222"]}
    chief = parse(_tf_config(pools, "chief", 0, environment="cloud", job={"worker_pool_specs": []}))
    workers = [parse(_tf_config(pools, "worker", i, environment="cloud")) for i in range(2)]
    assert (chief.num_workers, chief.is_chief, chief.distributed) == (3, True, True)
    assert [(w.num_workers, w.is_chief, w.task_type, w.task_index) for w in workers] == [(3, False, "worker", 0),
                                                                                           (3, False, "worker", 1)]
    assert chief.tf_config() == {"cluster": pools, "task": {"type": "chief", "index": 0}}


def test_vertex_cluster_spec_pool_names_and_the_legacy_master_mean_chief_and_worker():
    """CLUSTER_SPEC's "workerpool0"/"workerpool1", and AI Platform's "master", read as TensorFlow's names."""
    pools = {"workerpool0": ["a:1"], "workerpool1": ["b:1"]}
    chief, worker = parse(_tf_config(pools, "workerpool0", 0)), parse(_tf_config(pools, "workerpool1", 0))
    assert chief.cluster == {"chief": ["a:1"], "worker": ["b:1"]}
    assert (chief.task_type, chief.is_chief, worker.task_type, worker.is_chief) == ("chief", True, "worker", False)
    master = parse(_tf_config({"master": ["a:1"], "worker": ["b:1"]}, "master", 0))
    assert (master.task_type, master.is_chief, master.num_workers) == ("chief", True, 2)


def test_workers_without_a_chief_make_worker_0_the_chief():
    """As TensorFlow decides it (multi_worker_util.is_chief)."""
    pools = {"worker": ["a:1", "b:1"]}
    assert [parse(_tf_config(pools, "worker", i)).is_chief for i in range(2)] == [True, False]


@pytest.mark.parametrize("text, message", [
    ("not json", "TF_CONFIG is not JSON"),
    ("[1]", "TF_CONFIG is not a JSON object"),
    (_tf_config({"chief": ["a:1"], "ps": ["p:1"]}, "chief", 0), "the cluster has ps tasks"),
    (_tf_config({"workerpool0": ["a:1"], "workerpool3": ["e:1"]}, "workerpool0", 0), "the cluster has evaluator tasks"),
    (_tf_config({"chief": ["a:1", "b:1"]}, "chief", 0), "2 chief tasks"),
    (_tf_config({"chief": ["a:1"], "gpu": ["b:1"]}, "chief", 0), "unknown task name 'gpu'"),
    (_tf_config({"chief": ["a:1"], "worker": ["b:1"]}, "worker", 1), "task 'worker' index 1 is not in"),
    (_tf_config({"chief": ["a:1"], "worker": ["b:1"]}, "boss", 0), "task type 'boss'"),
    (_tf_config({"chief": "a:1"}, "chief", 0), "is not a list of host:port addresses"),
])
def test_a_cluster_the_trainer_cannot_train_in_is_one_clear_line(text, message):
    with pytest.raises(ConfigError, match=message) as raised:
        parse(text)
    assert "\n" not in str(raised.value)


def test_from_environment_reads_tf_config():
    environ = {"TF_CONFIG": _tf_config({"chief": ["a:1"], "worker": ["b:1"]}, "worker", 0)}
    assert from_environment(environ) == Cluster({"chief": ["a:1"], "worker": ["b:1"]}, "worker", 0)
    assert from_environment({}).num_workers == 1


@pytest.mark.parametrize("size", [0, 1, 7, 256, 1023, 1024])
@pytest.mark.parametrize("workers", [1, 2, 3, 8])
def test_shard_bounds_cut_a_global_batch_into_contiguous_even_shares_in_worker_order(size, workers):
    bounds = [shard_bounds(size, workers, i) for i in range(workers)]
    assert bounds[0][0] == 0 and bounds[-1][1] == size
    assert all(end == start for (_, end), (start, _) in zip(bounds, bounds[1:], strict=False))
    sizes = [end - start for start, end in bounds]
    assert max(sizes) - min(sizes) <= (1 if size else 0)


def test_worker_pool_specs_of_training_replicas():
    one = CloudConfig(project="p", image="i", vertex_training=True)
    assert [pool["replica_count"] for pool in one.worker_pool_specs()] == [1]
    four = CloudConfig(project="p", image="i", vertex_training=True, training_replicas=4)
    assert [pool["replica_count"] for pool in four.worker_pool_specs()] == [1, 3]
    assert four.training_custom_config()["ai_platform_training_args"]["worker_pool_specs"] == four.worker_pool_specs()
    with pytest.raises(ConfigError, match="need vertex_training"):
        CloudConfig(project="p", image="i", training_replicas=2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match="is not a positive integer"):
            CloudConfig(project="p", image="i", vertex_training=True, training_replicas=bad)
