"""A paired comparison of two recommenders on the same eval ratings, with a confidence interval over users.

Dependency-free but NumPy: the Evaluator's TFMA metric (trainer.tfma_metric),
the reports and the benchmarks use the same estimate and the same words.

The quantity is the difference in top-k accuracy, A minus B, over the same
eval ratings: sum over users of (hits_A - hits_B) / sum over users of ratings,
exactly the difference of the two point accuracies. One user's ratings are not
independent (the same taste, the same history), so the interval resamples
users, not ratings: a seeded percentile bootstrap over users (BOOTSTRAP_DRAWS
draws of as many users as there are, with replacement, each draw's difference
the same ratio of sums). The interval always contains the point difference (a
percentile bound on the far side of it is moved to it: it happens only when
almost every draw ties).

Training noise. Two trainings of one config with different seeds are two
different functions: on ml-100k they differ by more than the eval users can
hide (A/A runs, bench/gate_bench.py aa). Resampling users says how sure the
data are about *these two models*, not about two *configs*; so the gate widens
each interval by the training noise, a standard deviation measured by A/A runs
(`training_noise`: of the difference between two trainings), added in quadrature
to each side of the bootstrap interval (the two are independent: the eval users
and the training seeds). A comparison with a baseline, which has no seed, takes
half its variance (one trained model, not two).

Cost: O(draws x users), independent of the number of ratings once each user's
two sums are known; see bench/gate_bench.py for the figures.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Dict, Optional

import numpy as np

# The deployment gate's k (pipeline.evaluation): the Evaluator blesses on top-GATE_K accuracy, the
# baselines' floor and the paired comparisons are taken at it. Here, in core, because the gate's TFMA
# metric (trainer.tfma_metric) and the Baselines component need it as well as the pipeline and the app.
GATE_K = 100
BOOTSTRAP_DRAWS = 2000
BOOTSTRAP_SEED = 20231
METHOD = (f"paired percentile bootstrap over users, {BOOTSTRAP_DRAWS} draws, seed {BOOTSTRAP_SEED}, "
          "widened in quadrature by the training noise")
DEFAULT_CONFIDENCE = 0.95
# The gate's default training noise (PipelineConfig.training_noise): measured by A/A runs of the default
# config (docs/evaluation.md).
DEFAULT_TRAINING_NOISE = 0.0035
# Draws are made this many at a time: [chunk, users] user indices in memory.
_CHUNK = 250

BETTER, NOT_DISTINGUISHABLE, WORSE = "better", "not distinguishable", "worse"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """A minus B in top-k accuracy over the same ratings: the point difference and its interval."""

    diff: float
    lower: float
    upper: float
    confidence: float
    users: int
    ratings: int
    # The standard deviation of the difference from training alone that the interval includes (0: users only).
    training_noise: float = 0.0

    @property
    def verdict(self) -> str:
        """"better" when the whole interval is above 0, "worse" when below, else "not distinguishable"."""
        if self.lower > 0:
            return BETTER
        if self.upper < 0:
            return WORSE
        return NOT_DISTINGUISHABLE

    def words(self, digits: int = 4) -> str:
        """"better: +0.0120 [+0.0060, +0.0180]"."""
        return f"{self.verdict}: {self.diff:+.{digits}f} [{self.lower:+.{digits}f}, {self.upper:+.{digits}f}]"

    def to_json(self) -> Dict:
        return {**dataclasses.asdict(self), "verdict": self.verdict, "words": self.words()}

    @classmethod
    def from_json(cls, value: Dict) -> "Comparison":
        return cls(**{f.name: value[f.name] for f in dataclasses.fields(cls) if f.name in value})

    def widened(self, noise: float) -> "Comparison":
        """This comparison with `noise` (a standard deviation of the difference, independent of the users)
        added in quadrature to each side of the interval."""
        if noise <= 0 or math.isnan(self.diff):
            return self
        z = statistics.NormalDist().inv_cdf(0.5 + self.confidence / 2)
        lower = self.diff - math.hypot(self.diff - self.lower, z * noise)
        upper = self.diff + math.hypot(self.upper - self.diff, z * noise)
        return dataclasses.replace(self, lower=lower, upper=upper, training_noise=noise)


def check_training_noise(noise: float) -> Optional[str]:
    """None when `noise` is a usable standard deviation, else why not."""
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0.0 <= noise < 1.0:
        return f"{noise!r} is not a standard deviation of a top-k difference in [0, 1)"
    return None


def check_confidence(confidence: float) -> Optional[str]:
    """None when `confidence` is a usable level, else why not."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1.0:
        return f"{confidence!r} is not a confidence level in [0.5, 1)"
    return None


def paired_bootstrap(ratings: np.ndarray, diffs: np.ndarray, confidence: float = DEFAULT_CONFIDENCE,
                     draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED) -> Comparison:
    """The comparison from per-user sums.

    ratings: int [users], each user's eval ratings (> 0); diffs: float [users],
    each user's hits of A minus hits of B over those ratings. Seeded: the same
    sums give the same interval.
    """
    ratings = np.asarray(ratings, np.float64)
    diffs = np.asarray(diffs, np.float64)
    users = len(ratings)
    if users == 0 or ratings.sum() <= 0:
        return Comparison(float("nan"), float("nan"), float("nan"), confidence, users, 0)
    point = float(diffs.sum() / ratings.sum())
    rng = np.random.default_rng(seed)
    estimates = []
    for start in range(0, draws, _CHUNK):
        drawn = rng.integers(0, users, size=(min(_CHUNK, draws - start), users))  # users drawn with replacement
        estimates.append(diffs[drawn].sum(axis=1) / np.maximum(ratings[drawn].sum(axis=1), 1.0))
    estimates = np.concatenate(estimates)
    alpha = 1.0 - confidence
    lower, upper = np.quantile(estimates, [alpha / 2, 1.0 - alpha / 2])
    return Comparison(point, float(min(lower, point)), float(max(upper, point)), float(confidence), users,
                      int(ratings.sum()))


def from_hits(users: np.ndarray, hits_a: np.ndarray, hits_b: np.ndarray, confidence: float = DEFAULT_CONFIDENCE,
              draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED) -> Comparison:
    """The comparison from per-rating hits ({0, 1} [ratings] each) and each rating's user [ratings]."""
    _, index = np.unique(np.asarray(users), return_inverse=True)
    ratings = np.bincount(index)
    diffs = np.bincount(index, weights=np.asarray(hits_a, np.float64) - np.asarray(hits_b, np.float64))
    return paired_bootstrap(ratings, diffs, confidence, draws, seed)


def noise_of(pairs) -> float:
    """The training noise from A/A comparisons (each: a second training minus the first, same config and data,
    another seed; measured with training_noise 0). An A/A difference's mean is 0 and its variance is the
    training noise's plus the users' (the bootstrap's, read off each interval as a normal one's): the square
    root of the mean squared difference less the mean squared users' standard error, at least 0."""
    pairs = list(pairs)
    if not pairs:
        return 0.0
    z = statistics.NormalDist().inv_cdf(0.5 + pairs[0].confidence / 2)
    squares = sum(p.diff ** 2 for p in pairs) / len(pairs)
    users = sum(((p.upper - p.lower) / (2 * z)) ** 2 for p in pairs) / len(pairs)
    return math.sqrt(max(0.0, squares - users))
