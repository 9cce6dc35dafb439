"""Executions a killed run left RUNNING are marked FAILED by the next run, only this output's (planted ML
Metadata; tests/test_reliability.py kills a real run)."""

import os

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2 as pb

from pipeline.config import PipelineConfig
from pipeline.local_runner import ABANDONED_PROPERTY, fail_abandoned_executions


def _plant(connection, executions):
    """executions: [(pipeline, node, state)] -> their ids, each in its pipeline's and node's contexts."""
    store = mlmd.MetadataStore(connection)
    pipeline_type = store.put_context_type(pb.ContextType(name="pipeline"))
    node_type = store.put_context_type(pb.ContextType(name="node"))
    execution_type = store.put_execution_type(pb.ExecutionType(name="Component"))
    contexts, ids = {}, []
    for pipeline, node, state in executions:
        for type_id, name in ((pipeline_type, pipeline), (node_type, f"{pipeline}.{node}")):
            if name not in contexts:
                [contexts[name]] = store.put_contexts([pb.Context(type_id=type_id, name=name)])
        [execution] = store.put_executions([pb.Execution(type_id=execution_type, last_known_state=state)])
        store.put_attributions_and_associations(
            [], [pb.Association(context_id=contexts[name], execution_id=execution)
                 for name in (pipeline, f"{pipeline}.{node}")])
        ids.append(execution)
    return store, ids


def _sqlite(path):
    connection = pb.ConnectionConfig()
    connection.sqlite.filename_uri = path
    connection.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return connection


def test_the_next_run_marks_what_a_killed_run_left_running_and_nothing_else(tmp_path):
    config = PipelineConfig(data_path="d", output_dir=str(tmp_path / "out"))
    os.makedirs(config.output_dir)
    store, (trainer, transform, evaluator, other) = _plant(_sqlite(config.metadata_path), [
        ("movielens-tfx", "RetrievalTrainer", pb.Execution.RUNNING),
        ("movielens-tfx", "Transform", pb.Execution.COMPLETE),
        ("movielens-tfx", "Evaluator", pb.Execution.NEW),
        ("another-pipeline", "Trainer", pb.Execution.RUNNING),
    ])
    assert fail_abandoned_executions(config) == [f"RetrievalTrainer (execution {trainer})",
                                                 f"Evaluator (execution {evaluator})"]
    states = {e.id: e for e in store.get_executions()}
    assert states[trainer].last_known_state == states[evaluator].last_known_state == pb.Execution.FAILED
    assert states[trainer].custom_properties[ABANDONED_PROPERTY].string_value.startswith(
        "left RUNNING by a run that was killed; marked FAILED by the next run on ")
    assert states[evaluator].custom_properties[ABANDONED_PROPERTY].string_value.startswith("left NEW ")
    assert states[transform].last_known_state == pb.Execution.COMPLETE
    assert states[other].last_known_state == pb.Execution.RUNNING  # another pipeline's
    assert fail_abandoned_executions(config) == []  # once


def test_a_shared_store_marks_only_the_executions_that_ran_under_this_output(tmp_path, monkeypatch):
    # A MySQL store shared by runs on other outputs: an execution is this output's when TFX's launcher
    # made its executor directory under this pipeline root.
    connection = _sqlite(str(tmp_path / "shared.sqlite"))
    monkeypatch.setattr(PipelineConfig, "metadata_connection_config", lambda self, **kwargs: connection)
    config = PipelineConfig(data_path="d", output_dir=str(tmp_path / "out"), metadata_uri="mysql://u@db.internal/mlmd")
    store, (here, elsewhere) = _plant(connection, [
        ("movielens-tfx", "RetrievalTrainer", pb.Execution.RUNNING),
        ("movielens-tfx", "RetrievalTrainer", pb.Execution.RUNNING),
    ])
    os.makedirs(os.path.join(config.pipeline_root, "RetrievalTrainer", ".system", "executor_execution", str(here)))
    assert fail_abandoned_executions(config) == [f"RetrievalTrainer (execution {here})"]
    states = {e.id: e.last_known_state for e in store.get_executions()}
    assert states == {here: pb.Execution.FAILED, elsewhere: pb.Execution.RUNNING}


def test_no_store_yet_is_nothing_to_mark(tmp_path):
    assert fail_abandoned_executions(PipelineConfig(data_path="d", output_dir=str(tmp_path / "none"))) == []
