"""Multi-worker training: the strategy, where each worker writes, and the end-of-run barrier.

run_fn trains under tf.distribute.MultiWorkerMirroredStrategy when TF_CONFIG names several workers
(trainer.cluster: Vertex AI Training's worker pools, or any chief + workers); with one worker it
does not come here and trains as it always did (the default strategy).

The choices (docs/model.md, Multi-worker training):
  * ModelConfig.batch_size is the GLOBAL batch: each of N workers trains on its contiguous share
    (batch_size / N rows, trainer.data.worker_batches) of the same seeded global batches one worker
    would draw, and the in-batch negatives are the whole global batch's
    (trainer.model.global_batch_candidates). The loss is a sum over examples and the replicas'
    gradients are summed, so a step is the one-worker step on the same global batch: the learning
    rate is unchanged.
  * Saving follows TensorFlow's multi-worker rules: every worker runs the whole run_fn, saves
    included (a save may involve collectives); only the chief writes to the Trainer's outputs
    (serving_model_dir with the warm-start sidecar, model_run_dir's metrics.json and TensorBoard
    logs). The others write to a local temporary directory, deleted when run_fn ends, so nothing of
    theirs reaches the outputs (on Vertex, gs:// paths every worker sees).
  * A last collective (barrier) keeps every worker in run_fn until the chief has written: TFX's
    Trainer executor, which runs on every worker, then finds serving_model_dir on each.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from typing import Iterator, Tuple

import tensorflow as tf

from trainer.cluster import Cluster


def strategy(cluster: Cluster) -> tf.distribute.MultiWorkerMirroredStrategy:
    """MultiWorkerMirroredStrategy over `cluster` (TensorFlow's task names, whatever TF_CONFIG called
    them). Created before any other TensorFlow op of the process, as TensorFlow requires."""
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster.cluster), task_type=cluster.task_type, task_id=cluster.task_index,
        rpc_layer="grpc")
    # Collectives on CPU are ring all-reduces (NCCL on GPUs): what AUTO picks.
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
    created = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver, communication_options=options)
    logging.info("multi-worker training: %d workers, this is %s %d%s", cluster.num_workers, cluster.task_type,
                 cluster.task_index, " (chief)" if cluster.is_chief else "")
    return created


@contextlib.contextmanager
def output_dirs(cluster: Cluster, serving_model_dir: str, model_run_dir: str) -> Iterator[Tuple[str, str]]:
    """(serving_model_dir, model_run_dir) this worker writes to: the Trainer's on the chief; on another
    worker, two directories in a local temporary directory, deleted on exit (also on an error)."""
    if cluster.is_chief:
        yield serving_model_dir, model_run_dir
        return
    temporary = tempfile.mkdtemp(prefix=f"movielens-tfx-{cluster.task_type}-{cluster.task_index}-")
    try:
        yield f"{temporary}/serving_model", f"{temporary}/model_run"
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def barrier(created: tf.distribute.Strategy) -> None:
    """Returns once every worker has reached it: an all-reduce (sum) of 1 from each replica, checked."""
    total = created.reduce(tf.distribute.ReduceOp.SUM, created.run(lambda: tf.constant(1.0)), axis=None)
    if int(total.numpy()) != created.num_replicas_in_sync:
        raise RuntimeError(f"barrier: {int(total.numpy())} of {created.num_replicas_in_sync} replicas answered")
