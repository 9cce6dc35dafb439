"""AtomicPusher: TFX's Pusher, but a new serving version appears all at once.

TFX's filesystem Pusher copies the model file by file into
`<base>/<version>/` (saved_model.pb last), so a reader listing the serving
directory can meet a half-written version. This executor copies into a hidden
`<base>/.tmp-<version>-<pid>` and renames it to `<base>/<version>` when it is
complete; model servers ignore the hidden name. Versions are Unix seconds,
bumped past the newest existing version so two pushes in one second do not
collide. Unblessed models are handled exactly as by TFX (nothing is written).
"""

from __future__ import annotations

import os
import time
from typing import List, Optional

from absl import logging
from tfx.components.pusher import executor as pusher_executor
from tfx.components.pusher.component import Pusher
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils


def existing_versions(base_directory: str) -> List[int]:
    """The version numbers under a TF Serving model directory.

    Object-store listings (gs://) name directories with a trailing "/";
    names that are not all digits (staging directories) are not versions.
    """
    if not fileio.exists(base_directory):
        return []
    names = (name.rstrip("/") for name in fileio.listdir(base_directory))
    return sorted(int(name) for name in names if name.isdigit())


def next_version(base_directory: str, now: Optional[float] = None) -> str:
    """Unix seconds, bumped past the newest existing version (two pushes in one second do not collide)."""
    now = time.time() if now is None else now
    return str(max([int(now)] + [v + 1 for v in existing_versions(base_directory)]))


class Executor(pusher_executor.Executor):
    def Do(self, input_dict, output_dict, exec_properties) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        if destination.WhichOneof("destination") != "filesystem":
            raise NotImplementedError("AtomicPusher pushes to a filesystem destination only")
        base = destination.filesystem.base_directory
        fileio.makedirs(base)
        model_path = self.GetModelPath(input_dict)
        version = next_version(base)
        staging = os.path.join(base, f".tmp-{version}-{os.getpid()}")
        serving_path = os.path.join(base, version)
        io_utils.copy_dir(model_path, model_push.uri)  # archived copy, as TFX does
        try:
            io_utils.copy_dir(model_path, staging)
            fileio.rename(staging, serving_path)  # the version appears complete, last
        except Exception:
            if fileio.exists(staging):
                fileio.rmtree(staging)  # e.g. a full disk: leave nothing half-written
            raise
        logging.info("Model written to serving path %s.", serving_path)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)


class AtomicPusher(Pusher):
    """Pusher whose serving versions appear atomically (see module docstring)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
