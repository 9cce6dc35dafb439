"""Which training cluster the Trainer runs in, from TF_CONFIG: how many workers, which one this is, the chief.

Dependency-free (no TensorFlow): the unit tests parse TF_CONFIG without a cluster.

Vertex AI Training sets TF_CONFIG on every replica of a custom job's worker pools; its cluster names
the pools as TensorFlow does: the first pool (1 replica) is "chief", the second "worker", the third
"ps" and the fourth "evaluator" (AI Platform Training's legacy name of the chief: "master"). Its
CLUSTER_SPEC names them "workerpool0".."workerpool3"; a TF_CONFIG written with those names is read the
same way. The training workers are the chief (or master) and the workers. Parameter servers and an
evaluator are refused: this Trainer trains with MultiWorkerMirroredStrategy (every worker holds every
weight) and measures after training, in the chief.

One worker (no TF_CONFIG, an empty one, or a cluster of one task) is not a cluster: run_fn then trains
exactly as it always did, with TensorFlow's default strategy.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, List, Mapping, Optional

from core.errors import ConfigError

TF_CONFIG_ENV = "TF_CONFIG"
CHIEF, WORKER = "chief", "worker"
# Task names as they may appear, -> TensorFlow's (what MultiWorkerMirroredStrategy accepts).
TASK_NAMES = {"chief": CHIEF, "master": CHIEF, "worker": WORKER, "workerpool0": CHIEF, "workerpool1": WORKER,
              "ps": "ps", "workerpool2": "ps", "evaluator": "evaluator", "workerpool3": "evaluator"}
TRAINING_TASKS = (CHIEF, WORKER)


@dataclasses.dataclass(frozen=True)
class Cluster:
    """The training cluster as this process sees it.

    cluster: {"chief": [address], "worker": [addresses]} (TensorFlow's task names; empty for one worker);
    task_type / task_index: this process's task; num_workers: chief + workers (1 without a cluster).
    """

    cluster: Dict[str, List[str]]
    task_type: Optional[str]
    task_index: int

    @property
    def num_workers(self) -> int:
        return sum(len(self.cluster.get(name, [])) for name in TRAINING_TASKS) or 1

    @property
    def is_chief(self) -> bool:
        """The chief; without a "chief" task (workers only), worker 0, as TensorFlow decides it
        (multi_worker_util.is_chief)."""
        if self.task_type is None or self.task_type == CHIEF:
            return True
        return CHIEF not in self.cluster and self.task_type == WORKER and self.task_index == 0

    @property
    def distributed(self) -> bool:
        return self.num_workers > 1

    def tf_config(self) -> Dict:
        """The cluster as a TF_CONFIG dict with TensorFlow's task names."""
        return {"cluster": self.cluster, "task": {"type": self.task_type, "index": self.task_index}}


def parse(text: Optional[str]) -> Cluster:
    """The Cluster a TF_CONFIG value describes (None or "": one worker); ConfigError, one line, for a
    TF_CONFIG this Trainer cannot train in."""
    if not text or not text.strip():
        return Cluster({}, None, 0)
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{TF_CONFIG_ENV} is not JSON: {e}") from None
    if not isinstance(config, Mapping):
        raise ConfigError(f"{TF_CONFIG_ENV} is not a JSON object: {text[:100]!r}")
    raw_cluster = config.get("cluster") or {}
    if not isinstance(raw_cluster, Mapping):
        raise ConfigError(f"{TF_CONFIG_ENV}: cluster is not an object of task name -> addresses")
    cluster: Dict[str, List[str]] = {}
    for name, addresses in raw_cluster.items():
        if name not in TASK_NAMES:
            raise ConfigError(f"{TF_CONFIG_ENV}: unknown task name {name!r} in cluster "
                              f"(known: {', '.join(sorted(TASK_NAMES))})")
        if not isinstance(addresses, list) or not all(isinstance(a, str) and a for a in addresses):
            raise ConfigError(f"{TF_CONFIG_ENV}: cluster[{name!r}] is not a list of host:port addresses")
        cluster.setdefault(TASK_NAMES[name], []).extend(addresses)
    refused = sorted(set(cluster) - set(TRAINING_TASKS))
    if refused:
        raise ConfigError(f"{TF_CONFIG_ENV}: the cluster has {' and '.join(refused)} tasks; this Trainer trains with "
                          "MultiWorkerMirroredStrategy: a chief and workers only (Vertex: worker pools 0 and 1)")
    if len(cluster.get(CHIEF, [])) > 1:
        raise ConfigError(f"{TF_CONFIG_ENV}: {len(cluster[CHIEF])} chief tasks; a cluster has one "
                          "(Vertex: the first worker pool, replica_count 1)")
    task = config.get("task") or {}
    if not cluster:
        return Cluster({}, None, 0)
    raw_type = task.get("type")
    if raw_type not in TASK_NAMES:
        raise ConfigError(f"{TF_CONFIG_ENV}: task type {raw_type!r} is not one of the cluster's tasks")
    task_type = TASK_NAMES[raw_type]
    index = task.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster.get(task_type, [])):
        raise ConfigError(f"{TF_CONFIG_ENV}: task {raw_type!r} index {index!r} is not in the cluster's "
                          f"{len(cluster.get(task_type, []))} {raw_type} tasks")
    return Cluster(cluster, task_type, index)


def from_environment(environ: Optional[Mapping[str, str]] = None) -> Cluster:
    """The Cluster of this process's TF_CONFIG (os.environ by default)."""
    import os

    return parse((os.environ if environ is None else environ).get(TF_CONFIG_ENV))


def shard_bounds(size, num_workers: int, index: int):
    """[start, end): worker `index`'s contiguous share of a global batch of `size` rows, the shares of
    workers 0..num_workers-1 in order and as even as can be (sizes differ by at most one row). `size`
    may be an int or an integer tensor (trainer.data slices each global batch with it)."""
    return (index * size) // num_workers, ((index + 1) * size) // num_workers
