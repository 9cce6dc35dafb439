"""A local stand-in for the Kubeflow Pipelines v2 launcher, for tests.

`run(job, root, target, parameter_values, store)` plays what the KFP v2
backend (`target="kubeflow"`) or Vertex AI Pipelines (`target="vertex"`) does
with the PipelineJob JSON that `movielens-tfx compile` writes:

* tasks run in DAG order (topological on `dependentTasks` and input producers);
* for each container task it builds the ExecutorInput JSON that the launcher
  substitutes for `{{$}}`: `inputs.artifacts` (name, uri, type and metadata of
  the upstream outputs), `inputs.parameterValues` (plain JSON values, what the
  open-source KFP 2.x driver fills) and, for `vertex` only, also the legacy
  `inputs.parameters` (Value protos; TFX's own container test data
  carries both, and TFX <= 1.14 read only the legacy field, so Vertex fills
  it), `outputs.artifacts` with fresh uris under `root`, `outputs.outputFile`;
* it runs `lifecycle.preCacheCheck` (the ExampleGen driver) first if there is
  one, then the container's command/args with this interpreter for `python`;
* it reads the ExecutorOutput the container wrote to `outputFile` back:
  output artifacts' uri and metadata (e.g. `blessed`); this pipeline has no
  output parameters, so `parameterValues` of the ExecutorOutput are not wired;
* `resolver` tasks are system tasks: the harness answers their
  `outputArtifactQueries` itself from `store`, the artifacts of every earlier
  task and run (a stand-in for ML Metadata; latest match wins);
* `cachingOptions.enableCache`: a task whose component, parameters and input
  artifact names equal an earlier execution's reuses its outputs, as KFP does.

What it does not do is listed in the report of tests/test_spec_runs.py and
in `run`'s docstring: no images, no GCS, no MLMD server, no real KFP driver.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
from typing import Dict, List, Optional

_IDS = itertools.count(1)


class Store:
    """Every output artifact so far (a tiny ML Metadata) and the execution cache."""

    def __init__(self):
        self.artifacts: List[Dict] = []  # RuntimeArtifact JSON, oldest first
        self.cache: Dict[str, Dict[str, List[Dict]]] = {}


def topological(tasks: Dict[str, Dict]) -> List[str]:
    """Task names so that every task comes after its dependencies and input producers."""
    def deps(task):
        out = set(task.get("dependentTasks", []))
        for spec in task.get("inputs", {}).get("artifacts", {}).values():
            if "taskOutputArtifact" in spec:
                out.add(spec["taskOutputArtifact"]["producerTask"])
        return out
    order, done = [], set()
    pending = sorted(tasks)
    while pending:
        ready = [n for n in pending if deps(tasks[n]) <= done]
        if not ready:
            raise ValueError(f"cycle among {pending}")
        order += ready
        done |= set(ready)
        pending = [n for n in pending if n not in done]
    return order


def _plain(value: Dict):
    """A legacy Value proto JSON ({"intValue": "3"}) as a plain JSON value."""
    (kind, v), = value.items()
    return {"intValue": int, "doubleValue": float, "stringValue": str}[kind](v)


def _legacy(value) -> Dict:
    """A plain value as a legacy Value proto JSON."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return {"stringValue": value if isinstance(value, str) else json.dumps(value)}
    return {"intValue": str(value)} if isinstance(value, int) else {"doubleValue": value}


def _parameter(spec: Dict, root_values: Dict):
    if "componentInputParameter" in spec:
        return root_values[spec["componentInputParameter"]]
    runtime = spec["runtimeValue"]
    return runtime["constant"] if "constant" in runtime else _plain(runtime["constantValue"])


def _resolve(query: str, inputs: Dict, store: Store) -> List[Dict]:
    """The latest artifact in `store` matching a resolver filter (the subset TFX emits)."""
    def placeholder(m):  # {{$.inputs.artifacts['input'].metadata['current_model_id']}}
        key, field = m.group(1), m.group(2)
        artifacts = inputs.get(key, {}).get("artifacts", [])
        return str(artifacts[0]["metadata"].get(field, "")) if artifacts else "<none>"
    query = re.sub(r"\{\{\$\.inputs\.artifacts\['(\w+)'\]\.metadata\['(\w+)'\]\}\}", placeholder, query)
    matches = []
    for artifact in store.artifacts:
        ok = True
        for clause in query.split(" AND "):
            field, _, want = clause.partition("=")
            want = want.strip('"')
            if field == "schema_title":
                ok &= artifact["type"]["instanceSchema"].startswith(f"title: {want}\n")
            elif field == "name":
                ok &= artifact["name"] == want
            elif field.startswith("metadata.") and field.endswith(".number_value"):
                ok &= artifact.get("metadata", {}).get(field.split(".")[1]) == float(want)
            elif field != "state":  # state=LIVE: every artifact here is live
                raise NotImplementedError(f"resolver filter clause {clause!r}")
        if ok:
            matches.append(artifact)
    return matches[-1:]


def run(job: Dict, root: str, target: str, parameter_values: Dict, store: Optional[Store] = None,
        python: str = sys.executable, env: Optional[Dict] = None, stop_after: Optional[str] = None,
        pre_cache_check: bool = True, log=print) -> Dict[str, Dict[str, List[Dict]]]:
    """Runs one PipelineJob locally; returns each task's output artifacts {task: {key: [RuntimeArtifact]}}.

    `parameter_values` are the run's root parameters as plain JSON values
    (`runtimeConfig.parameterValues`); missing ones take their `defaultValue`.
    `pre_cache_check=False` skips `lifecycle.preCacheCheck` hooks (Vertex runs
    them; the open-source KFP backend may not).
    Raises subprocess.CalledProcessError (with the container's output) when a
    container fails. Not done: images and their entrypoints (the venv plays
    the image), GCS, MLMD lineage/contexts, the real driver's type checks,
    retries, conditions, exit handlers, placeholders other than `{{$}}`.
    """
    if target not in ("kubeflow", "vertex"):
        raise ValueError(target)
    store = store or Store()
    spec = job["pipelineSpec"]
    run_id = f"run-{next(_IDS)}"
    defaults = {k: p.get("defaultValue") for k, p in spec["root"].get("inputDefinitions", {}).get("parameters", {}).items()}
    root_values = {**defaults, **parameter_values}
    tasks = spec["root"]["dag"]["tasks"]
    outputs: Dict[str, Dict[str, List[Dict]]] = {}
    for name in topological(tasks):
        task = tasks[name]
        component = spec["components"][task["componentRef"]["name"]]
        executor = spec["deploymentSpec"]["executors"][component["executorLabel"]]
        inputs = {}
        for key, source in task.get("inputs", {}).get("artifacts", {}).items():
            producer = source["taskOutputArtifact"]
            inputs[key] = {"artifacts": outputs[producer["producerTask"]][producer["outputArtifactKey"]]}
        if "resolver" in executor:
            queries = executor["resolver"]["outputArtifactQueries"]
            outputs[name] = {key: _resolve(q["filter"], inputs, store) for key, q in queries.items()}
            log(f"[{run_id}] {name}: resolved {[a['name'] for v in outputs[name].values() for a in v]}")
            continue
        values = {k: _parameter(s, root_values) for k, s in task.get("inputs", {}).get("parameters", {}).items()}
        task_dir = os.path.join(root, job["pipelineSpec"]["pipelineInfo"]["name"], run_id, name)
        out_artifacts = {}
        for key, definition in component.get("outputDefinitions", {}).get("artifacts", {}).items():
            out_artifacts[key] = {"artifacts": [{
                "name": f"local/artifacts/{next(_IDS)}", "uri": os.path.join(task_dir, key),
                "type": definition["artifactType"], "metadata": {}}]}
        executor_input = {
            "inputs": {"artifacts": inputs, "parameterValues": values},
            "outputs": {"artifacts": out_artifacts, "outputFile": os.path.join(task_dir, "executor_output.json"),
                        "parameters": {k: {"outputFile": os.path.join(task_dir, "parameters", k)}
                                       for k in component.get("outputDefinitions", {}).get("parameters", {})}},
        }
        if target == "vertex":
            executor_input["inputs"]["parameters"] = {k: _legacy(v) for k, v in values.items()}
        cache_key = json.dumps([task["componentRef"]["name"], values,
                                {k: [a["name"] for a in v["artifacts"]] for k, v in inputs.items()}], sort_keys=True)
        container = executor["container"]
        steps = [container["lifecycle"]["preCacheCheck"]] if pre_cache_check and "lifecycle" in container else []
        steps.append(container)
        # The preCacheCheck (ExampleGen driver) runs before the cache lookup, as on Vertex.
        for step in steps:
            if step is container and task.get("cachingOptions", {}).get("enableCache") and cache_key in store.cache:
                outputs[name] = store.cache[cache_key]
                log(f"[{run_id}] {name}: cached")
                break
            command = [python if c == "python" else c for c in step["command"]]
            args = [json.dumps(executor_input) if a == "{{$}}" else a for a in step["args"]]
            unknown = [a for a in args if "{{$" in a and a != json.dumps(executor_input)]
            if unknown:
                raise NotImplementedError(f"{name}: placeholders {unknown}")
            log(f"[{run_id}] {name}: {' '.join(command[1:])}")
            os.makedirs(task_dir, exist_ok=True)
            result = subprocess.run(command + args, capture_output=True, text=True, env=env)
            with open(os.path.join(task_dir, "log.txt"), "a") as f:
                f.write(result.stdout + result.stderr)
            if result.returncode:
                raise subprocess.CalledProcessError(result.returncode, f"{name}: {command[2]}", result.stdout, result.stderr)
        else:
            with open(executor_input["outputs"]["outputFile"]) as f:
                executor_output = json.load(f)
            # The launcher keeps each output artifact's identity and takes the
            # container's uri and metadata (custom properties) for it.
            for key, listed in executor_output.get("artifacts", {}).items():
                for mine, theirs in zip(out_artifacts[key]["artifacts"], listed["artifacts"], strict=True):
                    mine["uri"] = theirs.get("uri", mine["uri"])
                    mine["metadata"] = theirs.get("metadata", {})
            outputs[name] = {k: v["artifacts"] for k, v in out_artifacts.items()}
            store.artifacts += [a for v in out_artifacts.values() for a in v["artifacts"]]
            store.cache[cache_key] = outputs[name]
        if name == stop_after:
            break
    return outputs
