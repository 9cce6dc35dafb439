"""Runs the pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner.

`run_pipeline(config, progress)` runs one variant and reports each component
as it starts and finishes (with elapsed time, and whether the result came from
the cache).
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from typing import Callable, Dict, Iterator, List, Optional

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.orchestration.portable import launcher

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

Progress = Callable[[str], None]



@contextlib.contextmanager
def _reporting_launches(progress: Progress, timings: List[Dict]) -> Iterator[None]:
    """Reports every component launch of the LocalDagRunner as it starts and ends."""
    original = launcher.Launcher.launch

    def launch(self):
        node = self._pipeline_node.node_info.id
        started = time.time()
        progress(f"{node:<28} running")
        try:
            info = original(self)
        except BaseException:
            progress(f"{node:<28} FAILED  {time.time() - started:6.1f}s")
            raise
        seconds = time.time() - started
        state = "done"
        if info is not None and getattr(info, "execution_id", None) is not None:
            with self._mlmd_connection as m:
                [execution] = m.store.get_executions_by_id([info.execution_id])
            if execution.last_known_state == metadata_store_pb2.Execution.CACHED:
                state = "cached"
        peak_rss_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        timings.append({"component": node, "seconds": round(seconds, 2), "state": state, "peak_rss_mb": peak_rss_mb})
        progress(f"{node:<28} {state:<7} {seconds:6.1f}s")
        return info

    launcher.Launcher.launch = launch
    try:
        yield
    finally:
        launcher.Launcher.launch = original


def run_pipeline(config: PipelineConfig, progress: Optional[Progress] = None) -> List[Dict]:
    """Runs the pipeline for `config` to completion; returns per-component timings."""
    os.makedirs(config.output_dir, exist_ok=True)
    timings: List[Dict] = []
    with _reporting_launches(progress or (lambda line: None), timings):
        tfx.orchestration.LocalDagRunner().run(create_pipeline(config))
    return timings
