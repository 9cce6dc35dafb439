"""AtomicPusher: TFX's Pusher, but a reader never loads a partial version.

A reader is TF Serving polling the base directory. Its file-system source
(tensorflow_serving/sources/storage_path/file_system_storage_path_source.cc)
lists the base path's children, cuts each name at its first '/', and takes
every name that parses as an integer as a version. It checks nothing inside
the version: the highest new version is loaded at once. A load without
saved_model.pb fails and is retried (server defaults: 5 retries, 1 min
apart; after that the version is given up until a restart or a newer
version: core/loader_harness.cc, util/retrier.cc, model_servers/main.cc).
A saved_model.pb whose variables are missing loads "successfully" with
uninitialized variables and replaces the serving version (TensorFlow's
cc/saved_model/loader.cc; serving#1086). So saved_model.pb must become
visible last, and the rest of the version must be complete within the
retry budget.

Two publish protocols, by the base directory:

* local (no "://"): copy into a hidden `<base>/.tmp-<version>-<pid>` (a name
  that does not parse as an integer) and rename it to `<base>/<version>`;
  rename(2) within one filesystem is atomic, so the version appears complete.
* remote (any "://", e.g. gs://): on an object store a directory rename is a
  copy of each object, in lexicographic order (saved_model.pb before
  variables/), so there is no rename. Every file except saved_model.pb is
  copied into `<base>/<version>/`, the copy is checked against the model
  (names and sizes), then saved_model.pb is copied last (one object: it
  appears whole). Until then a load fails and is retried.

On failure the staging or partial version directory is removed. Versions are
Unix seconds, bumped past the newest existing version so two pushes in one
second do not collide; an existing version is never written to. What a version
is, is components.serving_versions' rule, the one `recommend` and the report
read the served versions by. Unblessed models are handled exactly as by TFX
(nothing is written).
"""

from __future__ import annotations

import os
import posixpath
import time
from typing import Dict, List, Optional

from absl import logging
from tfx.components.pusher import executor as pusher_executor
from tfx.components.pusher.component import Pusher
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components.serving_versions import SAVED_MODEL_FILE, version_names
from movielens import files


class PushError(RuntimeError):
    """The pushed copy does not match the model; nothing was published."""


def existing_versions(base_directory: str) -> List[int]:
    """The version numbers under a TF Serving model directory (components.serving_versions.version_names)."""
    if not fileio.exists(base_directory):
        return []
    return [int(name) for name in version_names(fileio.listdir(base_directory))]


def next_version(base_directory: str, now: Optional[float] = None) -> str:
    """Unix seconds, bumped past the newest existing version (two pushes in one second do not collide)."""
    now = time.time() if now is None else now
    return str(max([int(now)] + [v + 1 for v in existing_versions(base_directory)]))


def _join(directory: str, name: str) -> str:
    return posixpath.join(directory.rstrip("/"), name)


def tree(root: str) -> Dict[str, Optional[int]]:
    """{'/'-separated path relative to `root`: size in bytes, or None for a directory}."""
    root = root.rstrip("/")
    out: Dict[str, Optional[int]] = {}
    for directory, subdirs, leaves in fileio.walk(root):
        rel = directory.rstrip("/")[len(root) + 1:]
        for name in subdirs:
            out[_join(rel, name.rstrip("/")).lstrip("/")] = None
        for name in leaves:
            out[_join(rel, name).lstrip("/")] = fileio.stat(_join(directory, name)).length
    return out


def copy_file(src: str, dst: str) -> None:
    """One file copy (an object copy on gs://); tests replace it to watch the order."""
    fileio.copy(src, dst, overwrite=False)


def publish_local(model_path: str, base: str, version: str) -> str:
    """Copies into a hidden staging directory, then renames it to the version (atomic)."""
    staging = _join(base, f".tmp-{version}-{os.getpid()}")
    serving_path = _join(base, version)
    try:
        io_utils.copy_dir(model_path, staging)
        fileio.rename(staging, serving_path)  # the version appears complete, last
    except Exception:
        if fileio.exists(staging):
            fileio.rmtree(staging)  # e.g. a full disk: leave nothing half-written
        raise
    return serving_path


def publish_remote(model_path: str, base: str, version: str) -> str:
    """Copies everything but saved_model.pb, checks the copy, then copies saved_model.pb."""
    serving_path = _join(base, version)
    if fileio.exists(serving_path):
        raise PushError(f"{serving_path} already exists; an existing version is never written to")
    source = tree(model_path)
    if source.get(SAVED_MODEL_FILE) is None:
        raise PushError(f"{model_path} has no {SAVED_MODEL_FILE}: not a SavedModel")
    rest = {rel: size for rel, size in source.items() if rel != SAVED_MODEL_FILE}
    try:
        fileio.makedirs(serving_path)
        for rel in sorted(rel for rel, size in rest.items() if size is None):
            fileio.makedirs(_join(serving_path, rel))
        for rel in sorted(rel for rel, size in rest.items() if size is not None):
            copy_file(_join(model_path, rel), _join(serving_path, rel))
        copied = {rel: size for rel, size in tree(serving_path).items() if size is not None}
        expected = {rel: size for rel, size in rest.items() if size is not None}
        if copied != expected:
            raise PushError(f"the copy in {serving_path} does not match {model_path}: "
                            f"missing or wrong {sorted(set(expected.items()) ^ set(copied.items()))}")
        copy_file(_join(model_path, SAVED_MODEL_FILE), _join(serving_path, SAVED_MODEL_FILE))  # last
    except Exception:
        if fileio.exists(serving_path):
            fileio.rmtree(serving_path)  # a retried load of a partial version must find nothing
        raise
    return serving_path


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
        io_utils.copy_dir(model_path, model_push.uri)  # archived copy, as TFX does
        # A URI such as gs://bucket/dir has no atomic directory rename.
        publish = publish_remote if files.is_remote(base) else publish_local
        serving_path = publish(model_path, base, version)
        logging.info("Model written to serving path %s.", serving_path)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)


class AtomicPusher(Pusher):
    """Pusher whose serving versions are never seen partial (see module docstring)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
