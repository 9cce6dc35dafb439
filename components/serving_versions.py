"""The versions of a TF Serving model directory, as the AtomicPusher and the readers see them.

One rule for what a version is and their order (`version_names`): the
AtomicPusher numbers a new version past the newest (atomic_pusher.existing_versions,
listing through TFX's fileio like the rest of the component); `recommend` and
the report take the newest complete one (`served_versions`, `latest_pushed_model`).
Like TF Serving (see components.atomic_pusher), a version is a child whose name
is all digits; complete means saved_model.pb, variables/variables.index and a
variables/variables.data-* shard are there.

Light on purpose: no TensorFlow or TFX for a local directory (movielens.files
sends only a URI such as gs://... to tf.io.gfile), so the command line can say
"no pushed model" before it loads anything.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

from movielens import files

SAVED_MODEL_FILE = "saved_model.pb"


def version_names(entries: Iterable[str]) -> List[str]:
    """The versions among the entries of a TF Serving model directory, oldest first.

    Object-store listings (gs://) name directories with a trailing "/";
    names that are not all digits (staging directories) are not versions.
    """
    names = (name.rstrip("/") for name in entries)
    return sorted((name for name in names if name.isdigit()), key=int)


def _is_file(path: str) -> bool:
    return files.exists(path) and not files.isdir(path)


def version_problem(version_dir: str) -> Optional[str]:
    """Why a served version cannot be loaded as it is (a missing file), or None when it is complete."""
    variables = files.join(version_dir, "variables")
    if not _is_file(files.join(version_dir, SAVED_MODEL_FILE)):
        return f"no {SAVED_MODEL_FILE}"
    if not _is_file(files.join(variables, "variables.index")):
        return "no variables/variables.index"
    if not any(name.startswith("variables.data-") for name in files.listdir(variables)):
        return "no variables/variables.data-*"
    return None


def served_versions(base_directory: str) -> List[Tuple[str, Optional[str]]]:
    """[(version directory, problem or None: version_problem)], newest first; [] when nothing was pushed."""
    names = version_names(files.listdir(base_directory)) if files.isdir(base_directory) else []
    paths = [files.join(base_directory, name) for name in reversed(names)]
    return [(path, version_problem(path)) for path in paths]


def latest_pushed_model(base_directory: str) -> Optional[str]:
    """The newest complete version directory under a TF Serving model directory, or None."""
    return next((path for path, problem in served_versions(base_directory) if problem is None), None)
