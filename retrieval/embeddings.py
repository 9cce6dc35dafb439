"""The catalog's candidate embeddings as a file a vector index ingests: Vertex AI Vector Search's JSON lines.

trainer.export writes it into the exported model directory, so the Pusher
publishes it inside each served version, with the same protocol as the
SavedModel (components.atomic_pusher: saved_model.pb still last):

  <version>/embeddings/candidates.json

one JSON object a line, one line a catalog movie, in catalog order:

  {"id": "50", "embedding": [0.0123, -0.456, ...], "embedding_metadata": {"title": "Star Wars (1977)"}}

* `id`: the movie id (a string), `embedding`: its candidate embedding,
  float32 [d], the same row of the SavedModel's `catalog_embeddings` variable
  that serving_default scores; each number is the shortest decimal that reads
  back as the same float32. A query's score is its dot product with the
  `query_embedding` signature's output (index distance DOT_PRODUCT_DISTANCE,
  no normalisation: with the timestamp variant's affinity dims, d is the
  embedding size plus affinity_dim on both sides).
* `embedding_metadata`: the title (not filterable; returned with the
  neighbours). Titles that are not UTF-8 are decoded with U+FFFD.
* The file is ASCII: json escapes every other character (\\uXXXX), so no
  reader splits a line at U+2028 or a stray byte.

The directory holds only this file: Vertex AI reads every .json/.csv/.avro
file directly under the directory its index's contentsDeltaUri names and
refuses other subdirectories (docs/vertex-kubeflow.md). Files go through
tf.io.gfile (local paths and gs:// alike), imported when one is read or
written: the format itself is plain Python and numpy.
"""

from __future__ import annotations

import dataclasses
import io
import json
import posixpath
from typing import Iterable, Iterator, List, Sequence, Union

import numpy as np

# The SavedModel's signature giving the query vectors these embeddings are scored against (trainer.export).
QUERY_SIGNATURE = "query_embedding"
QUERY_OUTPUT = "query_embedding"
EMBEDDINGS_DIR = "embeddings"
CANDIDATES_FILE = "candidates.json"


@dataclasses.dataclass
class Candidates:
    """The catalog as the embeddings file holds it, in catalog order."""

    ids: List[str]
    titles: List[str]
    embeddings: np.ndarray  # float32 [movies, d]


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def embeddings_dir(model_dir: str) -> str:
    """The directory to point a Vertex AI Vector Search index's contentsDeltaUri at."""
    return posixpath.join(model_dir.rstrip("/"), EMBEDDINGS_DIR)


def candidates_path(model_dir: str) -> str:
    return posixpath.join(embeddings_dir(model_dir), CANDIDATES_FILE)


def _text(value: Union[bytes, str]) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def lines(ids: Sequence, titles: Sequence, embeddings: np.ndarray) -> Iterator[str]:
    """The JSON lines (without "\\n") of the catalog: ids and titles bytes or str, embeddings [movies, d]."""
    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.ndim != 2 or not len(ids) == len(titles) == embeddings.shape[0]:
        raise ValueError(f"{len(ids)} ids, {len(titles)} titles and embeddings of shape {embeddings.shape}: "
                         "one row of each per movie")
    for movie, title, row in zip(ids, titles, embeddings, strict=True):
        # str(np.float32) is the shortest decimal that reads back as the same float32.
        vector = [float(str(x)) for x in row]
        yield json.dumps({"id": _text(movie), "embedding": vector, "embedding_metadata": {"title": _text(title)}},
                         ensure_ascii=True, allow_nan=False)


def write(model_dir: str, ids: Sequence, titles: Sequence, embeddings: np.ndarray) -> str:
    """Writes <model_dir>/embeddings/candidates.json; returns its path."""
    buffer = io.StringIO()
    for line in lines(ids, titles, embeddings):
        buffer.write(line)
        buffer.write("\n")
    gfile = _gfile()
    gfile.makedirs(embeddings_dir(model_dir))
    path = candidates_path(model_dir)
    with gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue().encode("ascii"))
    return path


def parse(text_lines: Iterable[Union[str, bytes]]) -> Candidates:
    ids, titles, rows = [], [], []
    for number, line in enumerate(text_lines, start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record, dict) or "id" not in record or "embedding" not in record:
            raise ValueError(f"line {number}: not a datapoint with an id and an embedding")
        ids.append(str(record["id"]))
        titles.append(str(record.get("embedding_metadata", {}).get("title", "")))
        rows.append(record["embedding"])
    embeddings = np.array(rows, np.float32) if rows else np.zeros((0, 0), np.float32)
    if embeddings.ndim != 2:
        raise ValueError("the embeddings do not all have the same length")
    return Candidates(ids, titles, embeddings)


def read(model_dir: str) -> Candidates:
    """The catalog of a model directory (a served version) from its embeddings file."""
    with _gfile().GFile(candidates_path(model_dir), "rb") as f:
        return parse(f.read().split(b"\n"))
