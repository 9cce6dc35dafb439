"""Runs the pipeline on this machine: LocalDagRunner, ML Metadata, Beam DirectRunner.

`run_pipeline(config, progress)` runs one variant and reports each component
as it starts and finishes (with elapsed time, and whether the result came from
the cache). ML Metadata is SQLite in the output directory, or a shared
MySQL / MariaDB store (config.metadata_uri): that one is checked first, so a
wrong password or an unreachable server is one line naming the host, and its
password is kept out of every log record.

Each run records the config it ran with (PipelineConfig.to_dict, as JSON) in
ML Metadata, as the custom property RUN_CONFIG_PROPERTY of its pipeline_run
context: TFX's record of one run, which every execution of the run belongs
to. A run's settings are the run's, not one component's (each component's own
share is already in its execution's properties, the Trainer's custom_config
for the model); KFP and Vertex AI likewise keep a run's parameters with the
run. From a served model, its Pusher execution leads to that context
(app.results.pushing_run_config: what `recommend` reads).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import logging
import os
import resource
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.dsl.compiler.constants import PIPELINE_RUN_CONTEXT_TYPE_NAME
from tfx.orchestration.pipeline import RunOptions
from tfx.orchestration.portable import launcher

from components.span_resolvers import spans_needing_ingestion
from core.errors import UserError
from movielens import files, spans
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_components, create_pipeline, latest_span, window_spans

Progress = Callable[[str], None]
# The custom property of a run's pipeline_run context (PIPELINE_RUN_CONTEXT_TYPE_NAME) that holds the
# config it ran with, PipelineConfig.to_dict as JSON (see the module docstring).
RUN_CONFIG_PROPERTY = "pipeline_config"


class MetadataUnavailable(UserError):
    """The shared ML Metadata store cannot be reached or refuses the login."""


def check_metadata(config: PipelineConfig) -> None:
    """Connects to a MySQL / MariaDB metadata store once (ML Metadata creates its
    schema on first use); raises MetadataUnavailable with one readable line.

    ML Metadata's own error says only "mysql_real_connect failed", so the login
    is tried with PyMySQL first, whose error says why (refused, access denied,
    unknown host).
    """
    mysql = config.metadata_mysql
    if mysql is None:
        return
    import pymysql

    def fail(reason) -> MetadataUnavailable:
        text = " ".join(str(reason).split())
        if mysql.password:
            text = text.replace(mysql.password, "***")
        return MetadataUnavailable(f"cannot connect to ML Metadata at {mysql.location}: {text}")

    try:
        pymysql.connect(host=mysql.host, port=mysql.port, user=mysql.user, password=mysql.password,
                        connect_timeout=10).close()
    except pymysql.err.MySQLError as e:
        raise fail(e.args[1] if len(e.args) > 1 else e) from None
    try:
        mlmd.MetadataStore(config.metadata_connection_config())
    except Exception as e:  # noqa: BLE001 - ML Metadata raises RuntimeError or its StatusErrors
        raise fail(e) from None


class _LocalDagRunner(tfx.orchestration.LocalDagRunner):
    """LocalDagRunner that adds the metadata store's password to the compiled
    pipeline in memory, just before it runs: the pipeline and its spec never hold it."""

    def __init__(self, password: str = ""):
        super().__init__()
        self._password = password
        self.run_id: Optional[str] = None  # the last run's, once it ran (its pipeline_run context's name)

    def run_with_ir(self, pipeline, run_options=None):
        if self._password:
            from tfx.orchestration.local import runner_utils

            deployment = runner_utils.extract_local_deployment_config(pipeline)
            holder = deployment.metadata_connection_config  # as LocalDagRunner reads it
            getattr(holder, holder.WhichOneof("connection_config")).mysql.password = self._password
            pipeline.deployment_config.Pack(deployment)
        result = super().run_with_ir(pipeline, run_options=run_options)
        # LocalDagRunner set the run id in the pipeline (in place) before running it.
        self.run_id = pipeline.runtime_spec.pipeline_run_id.field_value.string_value or None
        return result


def record_run_config(config: PipelineConfig, run_id: Optional[str]) -> None:
    """Records `config` on the pipeline_run context of run `run_id` (RUN_CONFIG_PROPERTY); nothing when no
    component of the run registered it."""
    if not run_id:
        return
    store = mlmd.MetadataStore(config.metadata_connection_config())
    context = store.get_context_by_type_and_name(PIPELINE_RUN_CONTEXT_TYPE_NAME, run_id)
    if context is None:
        return
    context.custom_properties[RUN_CONFIG_PROPERTY].string_value = json.dumps(config.to_dict(), sort_keys=True)
    store.put_contexts([context])


def _run(config: PipelineConfig, password: str, ingest_only: bool = False, run_options=None) -> None:
    """One run of the pipeline of `config` by the LocalDagRunner, which records its config."""
    runner = _LocalDagRunner(password)
    runner.run(create_pipeline(config, ingest_only=ingest_only), run_options=run_options)
    record_run_config(config, runner.run_id)


@contextlib.contextmanager
def _secret_kept_out_of_logs(secret: str) -> Iterator[None]:
    """Replaces `secret` in every Python log record while it is active (TFX logs
    the connection config, password included, when LocalDagRunner starts)."""
    if not secret:
        yield
        return
    original = logging.getLogRecordFactory()

    def factory(*args, **kwargs):
        record = original(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record stays as it is
            return record
        if secret in message:
            record.msg, record.args = message.replace(secret, "***"), ()
        return record

    logging.setLogRecordFactory(factory)
    try:
        yield
    finally:
        logging.setLogRecordFactory(original)



_IMPORTS_FROZEN = False


def freeze_imports() -> None:
    """gc.freeze, once per process: what is alive before the first pipeline runs is long-lived."""
    global _IMPORTS_FROZEN
    if not _IMPORTS_FROZEN:
        gc.collect()
        gc.freeze()
        _IMPORTS_FROZEN = True


def release_memory() -> None:
    """Hands back to the OS what the last component left behind, before the next starts.

    In a compiled spec every component is its own container; here they share
    one process, and without this the peak grew from component to component
    (docs/performance.md: 8.8 GB at 1M ratings, 5.1 GB with this). Keras models are reference
    cycles (collected only by a full collection), and glibc keeps freed heap
    pages unless asked (malloc_trim). What was alive before the first run
    (the imported modules, a costly full collection) is
    frozen out of the collector's reach once, before the first component
    (freeze_imports): what is left to collect is what the components made.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its children that have ended (Beam's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# release_memory runs after a component that took at least this long. A full collection costs 50 to 100 ms
# once the libraries are loaded, and what a resolver, a validator or a gate of a tenth of a second leaves
# behind is small: after every one of a replay span's 17 launches it was about 1 s of a 20 s span.
RELEASE_MEMORY_MIN_SECONDS = 1.0


@contextlib.contextmanager
def _reporting_launches(progress: Progress, timings: List[Dict]) -> Iterator[None]:
    """Reports every component launch of the LocalDagRunner as it starts and ends (release_memory after
    each that took RELEASE_MEMORY_MIN_SECONDS or more)."""
    original = launcher.Launcher.launch
    freeze_imports()

    def launch(self):
        node = self._pipeline_node.node_info.id
        started = time.time()
        cpu_started = _cpu_seconds()
        progress(f"{node:<28} running")
        try:
            info = original(self)
        except BaseException:
            progress(f"{node:<28} FAILED  {time.time() - started:6.1f}s")
            raise
        if time.time() - started >= RELEASE_MEMORY_MIN_SECONDS:
            release_memory()
        seconds = time.time() - started
        state = "done"
        if info is not None and getattr(info, "execution_id", None) is not None:
            with self._mlmd_connection as m:
                [execution] = m.store.get_executions_by_id([info.execution_id])
            if execution.last_known_state == metadata_store_pb2.Execution.CACHED:
                state = "cached"
        peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        timings.append({"component": node, "seconds": round(seconds, 2), "state": state, "peak_rss_mb": peak_rss_mb,
                        "cpu_seconds": round(_cpu_seconds() - cpu_started, 2)})
        progress(f"{node:<28} {state:<7} {seconds:6.1f}s")
        return info

    launcher.Launcher.launch = launch
    try:
        yield
    finally:
        launcher.Launcher.launch = original


def spans_to_ingest(config: PipelineConfig, first: int, last: int) -> List[int]:
    """The spans of first..last that a local span run (span_window "resolver") must ingest before it runs
    (span_resolvers.spans_needing_ingestion, for this config's ML Metadata and ingestion components):
    every span when ML Metadata does not exist yet."""
    if config.metadata_mysql is None and not os.path.exists(config.metadata_path):
        return list(range(first, last + 1))
    store = mlmd.MetadataStore(config.metadata_connection_config())
    ratings_gen, statistics_gen = create_components(config, ingest_only=True)
    return spans_needing_ingestion(store, config.pipeline_name, ratings_gen, statistics_gen, first, last)


# The custom property an execution marked FAILED by `fail_abandoned_executions` gets: why.
ABANDONED_PROPERTY = "abandoned"
_ACTIVE = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)


def fail_abandoned_executions(config: PipelineConfig) -> List[str]:
    """Marks FAILED the executions of this pipeline that a killed run left NEW or RUNNING in ML Metadata;
    returns "<node> (execution <id>)" for each.

    TFX leaves them so: a process killed inside a component cannot publish its failure, and the next
    run registers new executions without looking at old ones. Called with the output directory's lock
    held (app.lock: the CLI, run_job, replay), so no other run is live on this output and an execution
    still active there lost its process. ML Metadata in SQLite in the output directory is this output's
    alone: every active execution of the pipeline is abandoned. A shared MySQL store may hold live
    executions of runs on other outputs: only those whose executor directory is under this output's
    pipeline root (`<root>/<node>/.system/executor_execution/<id>`, made by TFX's launcher) are marked.
    """
    if config.metadata_mysql is None and not os.path.exists(config.metadata_path):
        return []
    store = mlmd.MetadataStore(config.metadata_connection_config())
    pipeline = store.get_context_by_type_and_name("pipeline", config.pipeline_name)
    if pipeline is None:
        return []
    active = sorted((e for e in store.get_executions_by_context(pipeline.id) if e.last_known_state in _ACTIVE),
                    key=lambda e: e.id)
    node_type = store.get_context_type("node") if active else None
    prefix = f"{config.pipeline_name}."
    marked = []
    for execution in active:
        nodes = [c.name[len(prefix):] for c in store.get_contexts_by_execution(execution.id)
                 if c.type_id == node_type.id and c.name.startswith(prefix)]
        node = nodes[0] if nodes else "?"
        executor_dir = files.join(config.pipeline_root, node, ".system", "executor_execution", str(execution.id))
        if config.metadata_mysql is not None and not files.isdir(executor_dir):
            continue
        state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        execution.last_known_state = metadata_store_pb2.Execution.FAILED
        execution.custom_properties[ABANDONED_PROPERTY].string_value = (
            f"left {state} by a run that was killed; marked FAILED by the next run on {config.output_dir} "
            f"(pid {os.getpid()}, {time.strftime('%Y-%m-%d %H:%M:%S')})")
        store.put_executions([execution])
        marked.append(f"{node} (execution {execution.id})")
    return marked


def run_pipeline(config: PipelineConfig, progress: Optional[Progress] = None,
                 to_nodes: Optional[Sequence[str]] = None) -> List[Dict]:
    """Runs the pipeline for `config` to completion (or only up to `to_nodes`,
    e.g. the ingestion part); returns per-component timings.

    A span run first validates its span layout up to its span (spans.validate:
    a missing, empty, duplicated or out-of-order span is one line before
    anything runs). A local span run (span_window "resolver") then ingests the
    spans of its window that need it (spans_to_ingest), each as its own run of
    the ingestion part: what the scheduler would have run when that span landed.
    """
    check_metadata(config)
    if config.split == spans.SPAN_SPLIT:  # the whole layout, before any component runs (no TFX traceback later)
        spans.validate(files.absolute(config.data_path), config.span, config.max_bad_rows)
    os.makedirs(config.output_dir, exist_ok=True)
    say = progress or (lambda line: None)
    abandoned = fail_abandoned_executions(config)
    if abandoned:
        say(f"--- marked FAILED in ML Metadata, left running by a killed run: {', '.join(abandoned)}")
    timings: List[Dict] = []
    run_options = RunOptions(to_nodes=list(to_nodes)) if to_nodes else None
    mysql = config.metadata_mysql
    password = mysql.password if mysql else ""
    with _reporting_launches(say, timings), _secret_kept_out_of_logs(password):
        if config.window_by_resolver and not to_nodes:
            config = config.replace(span=latest_span(config) if config.span is None else config.span)
            for span in spans_to_ingest(config, *window_spans(config)):
                say(f"--- ingesting span {span} (in the training window of span {config.span})")
                _run(config.replace(span=span), password, ingest_only=True)
        _run(config, password, run_options=run_options)
    return timings
