"""The TFMA metrics the Evaluator computes (run in the Evaluator): TopKAccuracy and PairedGain.

The model's `evaluate_hits` signature (trainer.export) returns, per eval
example, `hit_at_{k}` in {0, 1}. `TopKAccuracy` (registered with TFMA; the
eval config names it by this module) averages one of them into
`top_{k}_accuracy`. It reads only the prediction: no label, no per-example
calibration bookkeeping, which made TFMA's MeanPrediction the larger part of
the Evaluator's time.

`PairedGain` is the gate's comparison: the candidate's top-k accuracy minus
another recommender's on the same eval ratings, with a confidence interval
that resamples users (core.comparison). The other is either the latest
blessed model (TFMA's baseline model, whose hits are in the same extract) or
a baseline of the Baselines component (its per-rating hits, looked up by the
rating: user, movie, time). Its metric is the interval's lower bound, so
TFMA's own validator, which checks point values, gates on it with a value
threshold; the point difference, the upper bound and the number of users are
more keys of the same computation.
"""

from __future__ import annotations

import json
from typing import Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tensorflow_model_analysis.constants import FEATURES_KEY, PREDICTIONS_KEY
from tensorflow_model_analysis.metrics import metric_types

from core import comparison
from core.comparison import GATE_K
from trainer.export import hit_output
from transform import features as F

# What PairedGain compares the candidate with.
AGAINST_BLESSED, AGAINST_BASELINE = "blessed", "baseline"
# The rating features PairedGain reads: the user (resampled) and the rating's key.
PAIRED_FEATURES = (F.USER_ID, F.MOVIE_ID, F.TIMESTAMP)
# Per-rating hits of the baselines, written by the Baselines component beside baselines.json.
PER_RATING_HITS_FILE = "per_rating_hits.json"


def metric_name(k: int) -> str:
    """TFMA's name of top-k accuracy: "top_100_accuracy"."""
    return f"top_{k}_accuracy"


class TopKAccuracy(metric_types.Metric):
    """Share of eval ratings whose movie the model ranks in its top k of the catalog."""

    def __init__(self, k: int = GATE_K, name: Optional[str] = None):
        super().__init__(_top_k_accuracy, k=k, name=name or metric_name(k))


metric_types.register_metric(TopKAccuracy)


def _top_k_accuracy(
    k: int, name: str, model_names: Optional[List[str]] = None, example_weighted: bool = False
) -> metric_types.MetricComputations:
    computations = []
    for model_name in model_names or [""]:
        key = metric_types.MetricKey(name=name, model_name=model_name, example_weighted=example_weighted)
        computations.append(metric_types.MetricComputation(
            keys=[key], preprocessors=None, combiner=MeanHit(key, model_name, hit_output(k))
        ))
    return computations


class MeanHit(beam.CombineFn):
    """Mean of one {0, 1} model output; accumulator: [sum of hits, examples] (Python numbers: sums of 0 / 1
    values are exact in any order, so the mean is the same to the digit however Beam splits the work)."""

    def __init__(self, key: metric_types.MetricKey, model_name: str, output_name: str):
        self._key = key
        self._model_name = model_name
        self._output_name = output_name

    def create_accumulator(self) -> List[float]:
        return [0.0, 0]

    def add_input(self, accumulator: List[float], element: metric_types.StandardMetricInputs) -> List[float]:
        # The extract itself where it is (as the Evaluator passes it), not element.prediction (the
        # same dict, through TFMA's generic model/output lookup): this runs once per example, slice
        # and k (3M calls at 1M ratings; docs/performance.md).
        try:
            predictions = element[PREDICTIONS_KEY]
        except KeyError:
            predictions = element.prediction
        if self._model_name in predictions:  # several models (candidate, baseline)
            predictions = predictions[self._model_name]
        hits = predictions[self._output_name]
        if hits.__class__ is np.ndarray and hits.shape == (1,):
            # The Evaluator's case, one example: no NumPy reduction (a large part of this method's time).
            accumulator[0] += hits.item()
            accumulator[1] += 1
        else:
            hits = np.asarray(hits, np.float64)
            accumulator[0] += float(hits.sum())
            accumulator[1] += hits.size
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[List[float]]) -> List[float]:
        hits, examples = 0.0, 0
        for accumulator in accumulators:
            hits += accumulator[0]
            examples += accumulator[1]
        return [hits, examples]

    def extract_output(self, accumulator: List[float]) -> Dict[metric_types.MetricKey, float]:
        hits, examples = accumulator
        return {self._key: float(hits / examples) if examples else float("nan")}


# ---------------------------------------------------------------------------
# PairedGain: the gate's comparison with its interval.


def gain_name(k: int, against: str, part: str = "lower") -> str:
    """TFMA's names of a PairedGain's keys (GAIN_PARTS): "top_100_gain_over_blessed_lower" (the gated one),
    "..._gain_over_blessed" (the point difference, part ""), "..._upper", "..._users", "..._noise"."""
    return f"top_{k}_gain_over_{against}" + (f"_{part}" if part else "")


GAIN_PARTS = ("lower", "", "upper", "users", "noise")


def _as_bytes(value) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _as_text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def rating_key(user_id, movie_id, timestamp) -> Tuple[bytes, bytes, int]:
    """A rating's identity in the eval split: (user_id, movie_id, timestamp)."""
    return _as_bytes(user_id), _as_bytes(movie_id), int(timestamp)


def write_per_rating_hits(path: str, k: int, users, movies, timestamps, hits: Dict[str, np.ndarray]) -> None:
    """The baselines' per-rating hits at k, as JSON: each rating's key and, per baseline, a string of 0 / 1."""
    stored = {"k": int(k), "user_id": [_as_text(u) for u in users], "movie_id": [_as_text(m) for m in movies],
              "timestamp": [int(t) for t in timestamps],
              "hits": {name: "".join("1" if h else "0" for h in values) for name, values in hits.items()}}
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(stored, f)


def read_per_rating_hits(path: str, name: str, k: int) -> Dict[Tuple[bytes, bytes, int], int]:
    """{rating key: hit} of baseline `name` at k from write_per_rating_hits' file."""
    with tf.io.gfile.GFile(path) as f:
        stored = json.load(f)
    if stored["k"] != k or name not in stored["hits"]:
        raise ValueError(f"{path}: no per-rating hits of baseline {name!r} at k={k} "
                         f"(has {sorted(stored['hits'])} at k={stored['k']})")
    return {rating_key(u, m, t): int(h == "1") for u, m, t, h in zip(
        stored["user_id"], stored["movie_id"], stored["timestamp"], stored["hits"][name], strict=True)}


def params(metric_config) -> Dict:
    """A tfma.MetricConfig's parameters (its `config`: the inside of a JSON object)."""
    return json.loads("{" + metric_config.config + "}") if metric_config.config else {}


def set_params(metric_config, **changes) -> None:
    """Sets parameters of a tfma.MetricConfig (its `config`)."""
    metric_config.config = json.dumps({**params(metric_config), **changes}, sort_keys=True)[1:-1]


def is_paired_gain(metric_config, against: Optional[str] = None) -> bool:
    """Whether a tfma.MetricConfig is a PairedGain (against `against`, when given)."""
    return (metric_config.module == __name__ and metric_config.class_name == PairedGain.__name__
            and (against is None or params(metric_config).get("against", AGAINST_BLESSED) == against))


class PairedGain(metric_types.Metric):
    """The candidate's top-k accuracy minus the blessed model's or a baseline's, with its interval over users.

    against "blessed": TFMA's baseline model (the latest blessed one; no key
    without one). against "baseline": `baseline` of the Baselines component,
    whose per-rating hits are read from `hits_path` (set by the Evaluator at
    run time, components.evaluator).
    """

    def __init__(self, k: int = GATE_K, against: str = AGAINST_BLESSED,
                 confidence: float = comparison.DEFAULT_CONFIDENCE, baseline: str = "", hits_path: str = "",
                 training_noise: float = 0.0, name: Optional[str] = None):
        if against not in (AGAINST_BLESSED, AGAINST_BASELINE):
            raise ValueError(f"PairedGain: against {against!r} is not {AGAINST_BLESSED!r} or {AGAINST_BASELINE!r}")
        super().__init__(_paired_gain, k=k, against=against, confidence=confidence, baseline=baseline,
                         hits_path=hits_path, training_noise=training_noise, name=name or gain_name(k, against))


metric_types.register_metric(PairedGain)


def _paired_gain(k: int, against: str, confidence: float, baseline: str, hits_path: str, training_noise: float,
                 name: str, eval_config=None, model_names: Optional[List[str]] = None, example_weighted: bool = False
                 ) -> metric_types.MetricComputations:
    specs = list(eval_config.model_specs) if eval_config is not None else []
    candidates = [spec.name for spec in specs if not spec.is_baseline] or [(model_names or [""])[0]]
    blessed = [spec.name for spec in specs if spec.is_baseline]
    if against == AGAINST_BLESSED and not blessed:
        return []  # no blessed model to compare with (the first run)
    candidate = candidates[0]
    stem = name[:-len("_lower")] if name.endswith("_lower") else name
    names = {"lower": name, "": stem, **{part: f"{stem}_{part}" for part in GAIN_PARTS if part not in ("lower", "")}}
    keys = {part: metric_types.MetricKey(name=names[part], model_name=candidate, example_weighted=example_weighted)
            for part in GAIN_PARTS}
    # Two trained models differ by the training noise; a model and a baseline (no seed) by half its variance.
    noise = training_noise if against == AGAINST_BLESSED else training_noise / 2 ** 0.5
    combiner = PairedHits(keys, candidate, blessed[0] if against == AGAINST_BLESSED else None, hit_output(k),
                          hits_path if against == AGAINST_BASELINE else "", baseline, k, confidence, noise)
    # The features it reads (not in TFMA's default metric inputs); with them, the default inputs (predictions).
    preprocessor = metric_types.FeaturePreprocessor(feature_keys=list(PAIRED_FEATURES))
    return [metric_types.MetricComputation(keys=list(keys.values()), preprocessors=[preprocessor], combiner=combiner)]


def _flat(value) -> np.ndarray:
    return np.asarray(value).reshape(-1)


class PairedHits(beam.CombineFn):
    """Per user: [eval ratings, candidate hits minus the other's]; output: core.comparison.paired_bootstrap,
    widened by `noise`, the training noise of this comparison (Comparison.widened).

    The other's hits: model `other_model`'s output in the same extract, or the
    baseline's per-rating hits from `hits_path`, looked up by rating_key (read
    once per combiner instance).
    """

    def __init__(self, keys: Dict[str, metric_types.MetricKey], candidate: str, other_model: Optional[str],
                 output_name: str, hits_path: str, baseline: str, k: int, confidence: float, noise: float = 0.0):
        self._keys = keys
        self._candidate = candidate
        self._other_model = other_model
        self._output_name = output_name
        self._hits_path = hits_path
        self._baseline = baseline
        self._k = k
        self._confidence = confidence
        self._noise = noise
        self._table = None

    def _other_hits(self, predictions, features, n: int) -> np.ndarray:
        if self._other_model is not None:
            return _flat(predictions[self._other_model][self._output_name]).astype(np.float64)
        if self._table is None:
            self._table = read_per_rating_hits(self._hits_path, self._baseline, self._k)
        out = np.empty(n)
        for i, key in enumerate(zip(*(_flat(features[name]) for name in PAIRED_FEATURES), strict=True)):
            try:
                out[i] = self._table[rating_key(*key)]
            except KeyError:
                raise ValueError(f"{self._hits_path}: no hit of baseline {self._baseline!r} for the eval rating "
                                 f"{rating_key(*key)} (the Baselines artifact is not of this eval split)") from None
        return out

    def create_accumulator(self) -> Dict:
        return {}

    def add_input(self, accumulator: Dict, element: metric_types.StandardMetricInputs) -> Dict:
        try:
            predictions = element[PREDICTIONS_KEY]
        except KeyError:
            predictions = element.prediction
        features = element[FEATURES_KEY]
        mine = predictions[self._candidate] if self._candidate in predictions else predictions
        hits = _flat(mine[self._output_name]).astype(np.float64)
        diffs = hits - self._other_hits(predictions, features, hits.size)
        for user, diff in zip(_flat(features[F.USER_ID]), diffs, strict=True):
            entry = accumulator.get(user)
            if entry is None:
                accumulator[user] = [1, float(diff)]
            else:
                entry[0] += 1
                entry[1] += float(diff)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[Dict]) -> Dict:
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for accumulator in accumulators:
            for user, (n, diff) in accumulator.items():
                entry = merged.get(user)
                if entry is None:
                    merged[user] = [n, diff]
                else:
                    entry[0] += n
                    entry[1] += diff
        return merged

    def extract_output(self, accumulator: Dict) -> Dict[metric_types.MetricKey, float]:
        users = sorted(accumulator)  # a fixed order: the same interval however Beam merged
        ratings = np.array([accumulator[u][0] for u in users], np.float64)
        diffs = np.array([accumulator[u][1] for u in users], np.float64)
        result = comparison.paired_bootstrap(ratings, diffs, self._confidence).widened(self._noise)
        return {self._keys["lower"]: result.lower, self._keys[""]: result.diff, self._keys["upper"]: result.upper,
                self._keys["users"]: float(result.users), self._keys["noise"]: result.training_noise}
