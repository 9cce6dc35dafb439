"""Warm start: a new model starts from the weights of an earlier one, its vocabularies re-keyed by id.

The Trainer writes a sidecar next to every model it exports, inside the
SavedModel's assets.extra/ (TF Serving and the SavedModel loader ignore that
directory; the Pusher copies it along):

    <serving_model_dir>/assets.extra/warm_start/
        weights.npz            every model weight, float32 numpy arrays keyed by the
                               weight's stable name (weight_names)
        vocabularies/<name>.txt   each vocabulary indexing a table, as Transform wrote
                               it: one id per line, line i = row i
        manifest.json          written last: which weight is indexed by which
                               vocabulary, the weights' shapes, the vocabulary sizes

A later run calls warm_start(model, base_model_dir, new_vocabularies) on its
freshly built model. For each weight:
  * vocabulary-keyed (the towers' VOCABULARY_TABLES, trainer.families; rows [len(vocabulary) + 1,
    ...], the last row the OOV bucket): the row of every id in both vocabularies
    moves to the id's new row, the OOV row to the new OOV row; ids new to the
    vocabulary keep their fresh initialisation;
  * any other weight of the same name and shape in the base is copied whole;
  * a weight the base lacks, or whose shape (for a table: row shape) changed,
    keeps its fresh initialisation, and the summary says why.
Only weights move: the optimizer (Adam's moments) starts afresh.

Paths go through tf.io.gfile, so the base model may be on gs://.
"""

from __future__ import annotations

import collections
import io
import json
import logging
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

SIDECAR_DIR = "assets.extra/warm_start"
WEIGHTS_FILE = "weights.npz"
VOCABULARY_DIR = "vocabularies"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


def sidecar_dir(serving_model_dir: str) -> str:
    return f"{serving_model_dir.rstrip('/')}/{SIDECAR_DIR}"


def weight_names(model: tf.Module) -> Dict[str, tf.Variable]:
    """Every weight of `model` by its stable name: the attribute path from the model, e.g.
    "candidate_tower/movie_embedding/embeddings", "query_tower/projection/layer_with_weights-0/kernel".

    Keras' own names ("dense_3/kernel:0") depend on how many layers the process
    built before, and a shared table is named after the tower that called it
    first; the attribute path (the shortest one, breadth first, as a
    checkpoint names it) depends only on the model's code.
    """
    wanted = {id(weight) for weight in model.weights}
    view = tf.train.TrackableView(model)
    paths = {id(model): ""}
    queue = collections.deque([model])
    names: Dict[str, tf.Variable] = {}
    while queue and len(names) < len(wanted):
        parent = queue.popleft()
        for attribute, child in view.children(parent).items():
            if id(child) in paths:
                continue
            paths[id(child)] = f"{paths[id(parent)]}/{attribute}".lstrip("/")
            queue.append(child)
            if id(child) in wanted:
                names[paths[id(child)]] = child
    if len(names) != len(wanted):
        raise ValueError(f"{len(wanted) - len(names)} of the model's weights are not reachable from it by attribute")
    return names


def vocabulary_tables(model: tf.keras.Model) -> Dict[str, str]:
    """{stable weight name: the vocabulary indexing its rows}, from each layer's VOCABULARY_TABLES (trainer.families)."""
    by_id = {}
    for module in (model, *model.submodules):
        for attribute, vocabulary in getattr(type(module), "VOCABULARY_TABLES", {}).items():
            if hasattr(module, attribute):  # a table the model's config leaves out is absent
                by_id[id(getattr(module, attribute).embeddings)] = vocabulary
    return {name: by_id[id(weight)] for name, weight in weight_names(model).items() if id(weight) in by_id}


def _check_table(name: str, shape: Sequence[int], vocabulary: Sequence[bytes], vocabulary_name: str) -> None:
    if shape[0] != len(vocabulary) + 1:
        raise ValueError(f"{name} has {shape[0]} rows; vocabulary {vocabulary_name} has {len(vocabulary)} ids "
                         "(expected one row per id plus the OOV row)")


def write_sidecar(serving_model_dir: str, model: tf.keras.Model, vocabularies: Mapping[str, Sequence[bytes]]) -> str:
    """Writes the warm-start sidecar of `model` into serving_model_dir/assets.extra/warm_start; returns that path.

    vocabularies: {name: ids (bytes), in row order}, at least every vocabulary
    of vocabulary_tables(model) (Transform's vocabulary_by_name). The manifest
    is written last, so a sidecar with a manifest is complete.
    """
    directory = sidecar_dir(serving_model_dir)
    weights = {name: weight.numpy() for name, weight in weight_names(model).items()}
    tables = vocabulary_tables(model)
    for name, vocabulary in tables.items():
        _check_table(name, weights[name].shape, vocabularies[vocabulary], vocabulary)
    tf.io.gfile.makedirs(f"{directory}/{VOCABULARY_DIR}")
    buffer = io.BytesIO()  # in memory, then through gfile (the directory may be gs://)
    np.savez(buffer, **weights)
    with tf.io.gfile.GFile(f"{directory}/{WEIGHTS_FILE}", "wb") as f:
        f.write(buffer.getvalue())
    used = sorted(set(tables.values()))
    for vocabulary in used:
        with tf.io.gfile.GFile(f"{directory}/{VOCABULARY_DIR}/{vocabulary}.txt", "wb") as f:
            f.write(b"".join(token + b"\n" for token in vocabularies[vocabulary]))
    manifest = {
        "format_version": FORMAT_VERSION,
        "weights": {name: list(value.shape) for name, value in weights.items()},
        "tables": tables,
        "vocabularies": {vocabulary: len(vocabularies[vocabulary]) for vocabulary in used},
    }
    with tf.io.gfile.GFile(f"{directory}/{MANIFEST_FILE}", "w") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    return directory


def read_sidecar(base_model_dir: str) -> Optional[Tuple[Dict[str, np.ndarray], Dict[str, str], Dict[str, List[bytes]]]]:
    """(weights by name, {table name: vocabulary}, {vocabulary: ids}) of a base model; None if it has no sidecar."""
    directory = sidecar_dir(base_model_dir)
    if not tf.io.gfile.exists(f"{directory}/{MANIFEST_FILE}"):
        return None
    with tf.io.gfile.GFile(f"{directory}/{MANIFEST_FILE}") as f:
        manifest = json.load(f)
    if manifest["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{directory}: warm-start sidecar format {manifest['format_version']}, "
                         f"this code reads {FORMAT_VERSION}")
    with tf.io.gfile.GFile(f"{directory}/{WEIGHTS_FILE}", "rb") as f:
        with np.load(io.BytesIO(f.read()), allow_pickle=False) as stored:
            weights = {name: stored[name] for name in stored.files}
    vocabularies = {}
    for vocabulary in manifest["vocabularies"]:
        with tf.io.gfile.GFile(f"{directory}/{VOCABULARY_DIR}/{vocabulary}.txt", "rb") as f:
            vocabularies[vocabulary] = f.read().split(b"\n")[:-1]  # every id ends with "\n"
    return weights, manifest["tables"], vocabularies


def row_mapping(old_vocabulary: Sequence[bytes], new_vocabulary: Sequence[bytes]) -> Tuple[np.ndarray, np.ndarray]:
    """(old_rows, new_rows), int64 [shared ids + 1]: the id in row old_rows[i] of a table indexed by
    old_vocabulary is in row new_rows[i] of a table indexed by new_vocabulary; the last pair is the OOV
    row (len(old_vocabulary) -> len(new_vocabulary))."""
    old_index = {token: row for row, token in enumerate(old_vocabulary)}
    pairs = [(old_index[token], row) for row, token in enumerate(new_vocabulary) if token in old_index]
    pairs.append((len(old_vocabulary), len(new_vocabulary)))
    rows = np.array(pairs, np.int64)  # [shared ids + 1, 2]
    return rows[:, 0], rows[:, 1]


def warm_start(model: tf.keras.Model, base_model_dir: Optional[str],
               new_vocabularies: Mapping[str, Sequence[bytes]]) -> Dict:
    """Copies into `model` (built: its weights exist) what it can use of the base model's weights.

    base_model_dir: the base's serving model directory (the Trainer's
    fn_args.base_model), or None. new_vocabularies: {name: ids (bytes), in
    row order} of this model, at least those of vocabulary_tables(model).
    Returns the summary (JSON-ready):
      warm_started      whether anything was copied; if not, cold_start_because
      weights_copied    weights copied whole
      tables            per vocabulary-keyed weight: vocabulary, shared_ids (rows
                        copied, plus the OOV row), new_ids (fresh rows), dropped_ids
                        (in the base's vocabulary only)
      rows_copied, new_ids   summed over the tables
      skipped           {weight: why it kept its fresh initialisation}
      base_unused       the base's weights this model does not have
    Never raises for a base without a sidecar (a model from before warm start):
    the model stays as built.
    """
    summary: Dict = {"base_model": base_model_dir}
    if base_model_dir is None:
        return _cold(summary, "no blessed model to start from")
    if not model.weights:
        raise ValueError("warm_start needs a built model: call it on a batch first")
    sidecar = read_sidecar(base_model_dir)
    if sidecar is None:
        return _cold(summary, f"the base model has no warm-start sidecar ({SIDECAR_DIR}/{MANIFEST_FILE})")
    base, base_tables, base_vocabularies = sidecar
    weights = weight_names(model)
    tables = vocabulary_tables(model)
    copied, table_counts, skipped, updates = [], {}, {}, {}
    for name, weight in weights.items():
        shape = tuple(weight.shape)
        if name not in base:
            skipped[name] = "not in the base model"
            continue
        base_shape = base[name].shape
        vocabulary = tables.get(name)
        if vocabulary != base_tables.get(name):
            skipped[name] = (f"rows indexed by {base_tables.get(name) or 'no vocabulary'} in the base, "
                             f"{vocabulary or 'no vocabulary'} now")
        elif vocabulary is None:
            if base_shape != shape:
                skipped[name] = f"shape {list(base_shape)} in the base, {list(shape)} now"
            else:
                updates[name] = base[name]
                copied.append(name)
        elif base_shape[1:] != shape[1:]:
            skipped[name] = f"row shape {list(base_shape[1:])} in the base, {list(shape[1:])} now"
        else:
            new_vocabulary = new_vocabularies[vocabulary]
            _check_table(name, shape, new_vocabulary, vocabulary)
            old_rows, new_rows = row_mapping(base_vocabularies[vocabulary], new_vocabulary)
            value = weight.numpy()
            value[new_rows] = base[name][old_rows]
            updates[name] = value
            shared = len(new_rows) - 1  # the last pair is the OOV row
            table_counts[name] = {"vocabulary": vocabulary, "shared_ids": shared,
                                  "new_ids": len(new_vocabulary) - shared,
                                  "dropped_ids": len(base_vocabularies[vocabulary]) - shared}
    if not updates:
        return _cold(dict(summary, skipped=skipped), "no weight of the base model fits this model")
    for name, value in updates.items():
        weights[name].assign(value)
    summary.update(
        warm_started=True,
        weights_copied=len(copied),
        tables=table_counts,
        rows_copied=sum(t["shared_ids"] + 1 for t in table_counts.values()),
        new_ids=sum(t["new_ids"] for t in table_counts.values()),
        skipped=skipped,
        base_unused=sorted(set(base) - set(weights)),
    )
    logging.info("warm start from %s: %d weights copied, %d table rows copied, %d new ids, %d weights skipped %s",
                 base_model_dir, len(copied), summary["rows_copied"], summary["new_ids"], len(skipped), skipped)
    return summary


def _cold(summary: Dict, reason: str) -> Dict:
    logging.warning("no warm start from %s: %s; training from a fresh initialisation", summary["base_model"], reason)
    return dict(summary, warm_started=False, cold_start_because=reason)
