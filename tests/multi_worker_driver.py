"""One Trainer worker for tests/test_multi_worker.py: run_fn on prepared inputs, in its own process.

    python tests/multi_worker_driver.py SPEC.json RESULT.json

SPEC.json: the Trainer's inputs (transform_output, train_files, eval_files, custom_config with the
catalog pattern) and outputs (serving_model_dir, model_run_dir). The cluster is the process's
TF_CONFIG (none: one worker), as on Vertex AI. After run_fn the driver checks what TFX's Trainer
executor checks on every worker: serving_model_dir exists. RESULT.json gets the wall time, that
check, and, for a worker that is not the chief, what it had written into its temporary directories
before run_fn deleted them (trainer.distribute.output_dirs, wrapped here) and whether they are gone.
"""

import core  # noqa: F401  (first: Keras 2 before TensorFlow loads)

# isort: split
import contextlib
import json
import os
import socket
import sys
import time
import types


def main(spec_path: str, result_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    from trainer import distribute, task

    seen = {}
    original = distribute.output_dirs

    @contextlib.contextmanager
    def watched(cluster, serving_model_dir, model_run_dir):
        with original(cluster, serving_model_dir, model_run_dir) as dirs:
            seen["dirs"] = list(dirs)
            yield dirs
            seen["files"] = sorted(os.path.relpath(os.path.join(root, name), os.path.dirname(dirs[0]))
                                   for d in dirs for root, _, names in os.walk(d) for name in names)

    distribute.output_dirs = watched
    fn_args = types.SimpleNamespace(**{"base_model": None, **spec})
    started = time.time()
    task.run_fn(fn_args)
    result = {
        "seconds": time.time() - started,
        "serving_model_dir_exists": os.path.exists(os.path.join(spec["serving_model_dir"], "saved_model.pb")),
        "worker_dirs": seen.get("dirs"),
        "worker_files": seen.get("files"),
        "worker_dirs_left": [d for d in seen.get("dirs") or [] if os.path.exists(d)],
        # The network interfaces this process could reach anything through.
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
    }
    with open(result_path, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
