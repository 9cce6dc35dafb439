"""The timeline of a continuous-training replay: timeline.json, timeline.md and timeline.png.

`movielens-tfx replay` runs the pipeline once per weekly span and records one
`SpanEntry` per span: the top-100 accuracy, on that span's ratings, of the
model serving when the span arrived (deployed), of the model trained on it
(candidate), of the first model the replay deployed, never retrained (frozen),
and of the baselines; the gate's decision, the drift findings and the times.

`write(output_dir, entries)` writes the three files, each atomically;
`read(path)` reads timeline.json back and `done_spans` tells a resumed replay
which spans it already ran. `summary(entries)` computes the figures under the
Markdown table (tests and the README use the same function). The files are
written on the machine running the replay: `output_dir` is a local directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from typing import IO, Any, Callable, Dict, Iterable, List, Mapping, Optional, Set, Tuple

from core.errors import UserError

JSON_FILE = "timeline.json"
MARKDOWN_FILE = "timeline.md"
PLOT_FILE = "timeline.png"
# timeline.json's layout; bump it when a key changes meaning or goes away.
FORMAT_VERSION = 1
# The baseline the deployed model must beat, and the component whose share of the time is reported.
POPULARITY = "popularity"
TRAINER = "RetrievalTrainer"
# timeline.png: 8 x 4.5 inches at 120 dpi, 960 x 540 pixels.
PLOT_SIZE = (8.0, 4.5)
PLOT_DPI = 120


@dataclasses.dataclass(frozen=True)
class SpanEntry:
    """What the replay recorded after one span. Accuracies: top-100 accuracy on the span's ratings.

    `deployed_top_100` is None before anything was deployed; `frozen_top_100`
    is None until the replay's first deployment; `pushed_version` is None when
    the candidate was not pushed, `serving_version` when nothing serves yet.
    """

    span: int
    train_spans: Tuple[int, int]  # the training window, first and last span
    eval_ratings: int
    candidate_top_100: float
    deployed_top_100: Optional[float]
    frozen_top_100: Optional[float]
    baselines_top_100: Dict[str, float]
    blessed: bool
    pushed_version: Optional[str]
    serving_version: Optional[str]
    drift: List[str]  # findings over the thresholds
    drift_measured: Dict[str, float]  # every distance measured, e.g. {"movie_id jensen_shannon_divergence": 0.08}
    warm_start: Optional[Dict[str, Any]]  # e.g. {"rows_copied": 1200, "new_ids": 30}
    wall_seconds: float
    component_seconds: Dict[str, float]
    # The gate's paired comparisons on the span (core.comparison.Comparison.to_json), by what the candidate was
    # compared with: "blessed_model" (the deployed model), "floor_baseline". Absent from older timelines.
    comparisons: Dict[str, Dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        window = tuple(self.train_spans)
        if len(window) != 2 or window[0] > window[1]:
            raise ValueError(f"span {self.span}: train_spans must be [first, last] with first <= last, got {self.train_spans!r}")
        object.__setattr__(self, "train_spans", window)

    @classmethod
    def keys(cls) -> List[str]:
        """The keys of an entry in timeline.json, in order."""
        return [field.name for field in dataclasses.fields(cls)]

    def to_json(self) -> Dict[str, Any]:
        """The entry as a JSON-serialisable dict with exactly `keys()`."""
        out = dataclasses.asdict(self)
        out["train_spans"] = list(self.train_spans)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpanEntry:
        """The entry from `to_json`'s dict; ValueError naming the missing or unknown keys."""
        missing = [key for key in cls.keys() if key not in data and key not in _OPTIONAL_KEYS]
        unknown = sorted(set(data) - set(cls.keys()))
        if missing or unknown:
            raise ValueError(f"span entry {data.get('span', '?')}: "
                             + "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                                         + ([f"unknown {', '.join(unknown)}"] if unknown else [])))
        return cls(
            span=int(data["span"]),
            train_spans=(int(data["train_spans"][0]), int(data["train_spans"][-1])),
            eval_ratings=int(data["eval_ratings"]),
            candidate_top_100=float(data["candidate_top_100"]),
            deployed_top_100=_optional_float(data["deployed_top_100"]),
            frozen_top_100=_optional_float(data["frozen_top_100"]),
            baselines_top_100={str(name): float(value) for name, value in data["baselines_top_100"].items()},
            blessed=bool(data["blessed"]),
            pushed_version=_optional_str(data["pushed_version"]),
            serving_version=_optional_str(data["serving_version"]),
            drift=[str(finding) for finding in data["drift"]],
            drift_measured={str(name): float(value) for name, value in data["drift_measured"].items()},
            warm_start=dict(data["warm_start"]) if data["warm_start"] is not None else None,
            wall_seconds=float(data["wall_seconds"]),
            component_seconds={str(name): float(value) for name, value in data["component_seconds"].items()},
            comparisons={str(name): dict(value) for name, value in data.get("comparisons", {}).items()},
        )


# Keys an entry of an older timeline.json may lack.
_OPTIONAL_KEYS = ("comparisons",)


def _optional_float(value: Any) -> Optional[float]:
    return None if value is None else float(value)


def _optional_str(value: Any) -> Optional[str]:
    return None if value is None else str(value)


# --- the list of entries ---------------------------------------------------

def merged(entries: Iterable[SpanEntry]) -> List[SpanEntry]:
    """One entry per span, sorted by span; of two entries for a span the later one wins (a span rerun after a crash)."""
    by_span: Dict[int, SpanEntry] = {}
    for entry in entries:
        by_span[entry.span] = entry
    return [by_span[span] for span in sorted(by_span)]


def done_spans(entries: Iterable[SpanEntry]) -> Set[int]:
    """The spans already recorded: a resumed replay skips them."""
    return {entry.span for entry in entries}


def best_baseline(entry: SpanEntry) -> Optional[Tuple[str, float]]:
    """(name, accuracy) of the entry's most accurate baseline (first name on a tie), None without baselines."""
    if not entry.baselines_top_100:
        return None
    return max(sorted(entry.baselines_top_100.items()), key=lambda item: item[1])


# --- summary ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Summary:
    """The figures under timeline.md's table. A span is served when `deployed_top_100` is not None.

    Shares and means are None when there is nothing to average.
    """

    spans: int
    served_spans: int
    # Served spans with a popularity accuracy, and those where the deployed model is strictly more accurate.
    compared_with_popularity: int
    deployed_beats_popularity: int
    beats_popularity_share: Optional[float]
    # Spans with both a deployed and a frozen accuracy, and the means over exactly those spans.
    both_served_spans: int
    mean_deployed: Optional[float]
    mean_frozen: Optional[float]
    blessed_spans: int
    total_wall_seconds: float
    mean_wall_seconds: Optional[float]
    trainer_seconds: float
    trainer_share: Optional[float]  # of the total wall time


def summary(entries: Iterable[SpanEntry]) -> Summary:
    """The replay's summary figures (see `Summary`), over one entry per span."""
    entries = merged(entries)
    served = [e for e in entries if e.deployed_top_100 is not None]
    compared = [e for e in served if POPULARITY in e.baselines_top_100]
    beats = [e for e in compared if e.deployed_top_100 > e.baselines_top_100[POPULARITY]]
    both = [e for e in served if e.frozen_top_100 is not None]
    total = math.fsum(e.wall_seconds for e in entries)
    trainer = math.fsum(e.component_seconds.get(TRAINER, 0.0) for e in entries)
    return Summary(
        spans=len(entries),
        served_spans=len(served),
        compared_with_popularity=len(compared),
        deployed_beats_popularity=len(beats),
        beats_popularity_share=len(beats) / len(compared) if compared else None,
        both_served_spans=len(both),
        mean_deployed=_mean([e.deployed_top_100 for e in both]),
        mean_frozen=_mean([e.frozen_top_100 for e in both]),
        blessed_spans=sum(e.blessed for e in entries),
        total_wall_seconds=total,
        mean_wall_seconds=total / len(entries) if entries else None,
        trainer_seconds=trainer,
        trainer_share=trainer / total if total > 0 else None,
    )


def _mean(values: List[float]) -> Optional[float]:
    return math.fsum(values) / len(values) if values else None


# --- formatting ------------------------------------------------------------

def duration(seconds: float) -> str:
    """Seconds as people read them: "42.0 s", "3 min 05 s", "1 h 02 min"."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(round(seconds))
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _accuracy(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def _share(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _window(entry: SpanEntry) -> str:
    first, last = entry.train_spans
    return str(first) if first == last else f"{first}-{last}"


def summary_lines(result: Summary) -> List[str]:
    """The summary as Markdown list items."""
    if result.compared_with_popularity:
        beats = (f"The deployed model beats popularity on {result.deployed_beats_popularity} of "
                 f"{result.compared_with_popularity} served spans ({_share(result.beats_popularity_share)}).")
    else:
        beats = "No served span to compare with popularity (nothing was deployed, or popularity was not computed)."
    if result.both_served_spans:
        difference = result.mean_deployed - result.mean_frozen
        frozen = (f"Over the {result.both_served_spans} spans both served: mean top-100 accuracy "
                  f"{result.mean_deployed:.4f} deployed vs {result.mean_frozen:.4f} frozen ({difference:+.4f}).")
    else:
        frozen = "No span with both a deployed and a frozen model yet."
    wall = (f"Wall time: {duration(result.total_wall_seconds)} in total, "
            + (f"{duration(result.mean_wall_seconds)} per span" if result.mean_wall_seconds is not None else "no span")
            + f"; {_share(result.trainer_share)} of it in the Trainer ({TRAINER}, {duration(result.trainer_seconds)}).")
    blessed = f"Blessed: {result.blessed_spans} of {result.spans} candidates."
    return [f"- {line}" for line in (beats, frozen, blessed, wall)]


def _drift(entry: SpanEntry) -> str:
    """The number of findings, and the largest distance measured (which feature, how far)."""
    if not entry.drift_measured:
        return str(len(entry.drift))
    name, value = max(entry.drift_measured.items(), key=lambda item: item[1])
    return f"{len(entry.drift)} ({name.split()[0]} {value:.3f})"


def _compared(entry: SpanEntry, against: str) -> str:
    found = entry.comparisons.get(against)
    return found["words"] if found else "-"


def markdown(entries: Iterable[SpanEntry]) -> str:
    """timeline.md: one row per span, the summary, the plot and the drift findings."""
    entries = merged(entries)
    out = [
        "# Continuous-training replay",
        "",
        "Top-100 accuracy on each span's ratings: deployed = the model serving when the span arrived, candidate = the "
        "model trained in this run (on the spans in `window`), frozen = the first model the replay deployed, never "
        "retrained; best baseline among popularity, recent popularity, item-kNN and EASE. `-`: no such model yet.",
        "",
        "The gate's comparisons on the span: the candidate minus the deployed model and minus the floor baseline, "
        "with their interval over users (`better`, `worse` or `not distinguishable` from zero).",
        "",
        "| span | window | deployed | candidate | frozen | popularity | best baseline | candidate vs deployed "
        "| candidate vs floor baseline | blessed | pushed version | drift (largest distance) | wall time |",
        "|---" * 13 + "|",
    ]
    for entry in entries:
        best = best_baseline(entry)
        out.append(
            f"| {entry.span} | {_window(entry)} | {_accuracy(entry.deployed_top_100)} | {_accuracy(entry.candidate_top_100)} "
            f"| {_accuracy(entry.frozen_top_100)} | {_accuracy(entry.baselines_top_100.get(POPULARITY))} "
            f"| {f'{best[0]} {best[1]:.4f}' if best else '-'} | {_compared(entry, 'blessed_model')} "
            f"| {_compared(entry, 'floor_baseline')} | {'yes' if entry.blessed else 'no'} "
            f"| {entry.pushed_version or '-'} | {_drift(entry)} | {duration(entry.wall_seconds)} |"
        )
    out += ["", "## Summary", "", *summary_lines(summary(entries)), "", f"![top-100 accuracy per span]({PLOT_FILE})", ""]
    drifted = [entry for entry in entries if entry.drift]
    if drifted:
        out += ["## Drift", ""]
        out += [f"- span {entry.span}: {finding}" for entry in drifted for finding in entry.drift]
        out.append("")
    return "\n".join(out)


def plot(entries: Iterable[SpanEntry], out: IO[bytes]) -> None:
    """timeline.png into `out`: top-100 accuracy per span of deployed, candidate, frozen and popularity;
    a star where the candidate was blessed. 960 x 540 pixels (no tight bounding box: it would change the size)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    entries = merged(entries)
    spans = [entry.span for entry in entries]
    nan = float("nan")

    def series(value: Callable[[SpanEntry], Optional[float]]) -> List[float]:
        return [nan if value(entry) is None else value(entry) for entry in entries]  # NaN: a gap in the line

    fig = Figure(figsize=PLOT_SIZE, dpi=PLOT_DPI)
    FigureCanvasAgg(fig)  # the Agg canvas, without pyplot's global state
    ax = fig.add_subplot()
    ax.plot(spans, series(lambda e: e.deployed_top_100), color="tab:blue", linewidth=2.5, marker="o", markersize=7,
            label="deployed (serving when the span arrived)")
    ax.plot(spans, series(lambda e: e.candidate_top_100), color="tab:orange", linestyle="--", marker=".",
            label="candidate (trained in this run)")
    ax.plot(spans, series(lambda e: e.frozen_top_100), color="tab:purple", linestyle="-.", marker="s", markersize=3,
            label="frozen (first deployed)")
    ax.plot(spans, series(lambda e: e.baselines_top_100.get(POPULARITY)), color="tab:gray", linestyle=":", linewidth=2, marker=".",
            label="popularity")
    blessed = [entry for entry in entries if entry.blessed]
    if blessed:
        ax.scatter([e.span for e in blessed], [e.candidate_top_100 for e in blessed], marker="*", s=140, color="tab:green",
                   edgecolors="black", linewidths=0.5, zorder=3, label="candidate blessed")
    if not entries:
        ax.text(0.5, 0.5, "no span recorded yet", transform=ax.transAxes, ha="center", va="center", color="gray")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("span (week)")
    ax.set_ylabel("top-100 accuracy on the span")
    ax.set_title("Continuous-training replay: top-100 accuracy per span")
    ax.grid(True, alpha=0.3)
    if entries:
        ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=PLOT_DPI)


# --- files -----------------------------------------------------------------

def _atomic(path: str, write_to: Callable[[IO[bytes]], None]) -> None:
    """Write `path` through a temporary file in its directory, then os.replace: readers see the old file or the new one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write_to(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def to_json(entries: Iterable[SpanEntry]) -> str:
    """timeline.json's text: the format version and one entry per span, sorted by span."""
    document = {"format_version": FORMAT_VERSION, "entries": [entry.to_json() for entry in merged(entries)]}
    return json.dumps(document, indent=2, allow_nan=False) + "\n"  # NaN is not JSON: fail before writing


def write(output_dir: str, entries: Iterable[SpanEntry]) -> List[SpanEntry]:
    """Write timeline.json, timeline.md and timeline.png into `output_dir`; returns the entries written.

    One entry per span (the later wins: a span rerun after a crash replaces its
    entry), sorted by span. Each file is replaced atomically.
    """
    entries = merged(entries)
    text = to_json(entries)
    os.makedirs(output_dir, exist_ok=True)
    # timeline.json first: it is the record a resumed replay trusts (done_spans), and its
    # span ran the pipeline and may have pushed a model, so it must not be lost because a
    # view failed to render. The .md and .png are views of it: if rendering fails they lag
    # one span behind (never ahead of the json), and the next write renders them again.
    _atomic(os.path.join(output_dir, JSON_FILE), lambda f: f.write(text.encode("utf-8")))
    _atomic(os.path.join(output_dir, MARKDOWN_FILE), lambda f: f.write(markdown(entries).encode("utf-8")))
    _atomic(os.path.join(output_dir, PLOT_FILE), lambda f: plot(entries, f))
    return entries


def read(path: str) -> List[SpanEntry]:
    """The entries of timeline.json (`path`: the file or its directory), sorted by span; [] when there is none yet."""
    if os.path.isdir(path):
        path = os.path.join(path, JSON_FILE)
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding="utf-8") as f:
            document = json.load(f)
        version = document.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"format_version {version!r}, this version reads {FORMAT_VERSION}")
        return merged(SpanEntry.from_json(entry) for entry in document["entries"])
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise UserError(f"{path} is not a replay timeline this version can resume from ({error}); "
                        "move it away to start the replay over") from error


def record(output_dir: str, entry: SpanEntry) -> List[SpanEntry]:
    """Add (or, for a span already there, replace) one span's entry in `output_dir`'s timeline and rewrite its files."""
    return write(output_dir, [*read(output_dir), entry])
