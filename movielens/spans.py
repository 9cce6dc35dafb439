"""Spans: MovieLens ratings cut into time windows, laid out as ``span-{SPAN}/`` directories.

Continuous training (README, "Continuous training") reads a data directory
where each span is one MovieLens directory::

    DATA/span-0/u.data  u.item  u.user     the ratings of span 0, the catalog as known then
    DATA/span-1/...
    DATA/spans.json                        how the spans were cut (optional: see `write`)

That is how new data lands in production (one directory per day or week), and
TFX's FileBasedDriver resolves it: the input pattern ``span-{SPAN}/*`` gives
each run its span number, version and fingerprint. `write` makes that layout
from a flat MovieLens download: a rating's span is

    span = (timestamp - origin) // (span_days * 86400)

with `origin` the UTC midnight before the first rating, so the same data always
gives the same spans. The catalog files (movies, users) are copied into every
span directory unchanged.

`load` reads spans first..last back as one `reader.MovieLensData` plus each
rating's span, refusing (with the span and file named) a missing span, an
empty span folder, a span without ratings, a rating present twice (naming both
files and lines), or spans out of order (a rating earlier than the previous
span's latest one). Each span directory is validated by `reader.load`, so a
corrupted file names its line. `validate` is that check of a whole layout,
made before any span is trained (replay, and a run with split "span").
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from core.errors import ConfigError, check_choice
from movielens import files, reader
from movielens.reader import DataError, MovieLensData, Ratings

SPAN_SPLIT = "span"  # the split method of a span layout (a flat dataset's: reader.FLAT_SPLIT_METHODS)
SPLIT_METHODS = reader.FLAT_SPLIT_METHODS + (SPAN_SPLIT,)  # every split method, the one list
# Where a span run's training window comes from (components.example_gen,
# PipelineConfig.span_window): resolved from ML Metadata, or built by ExampleGen.
WINDOW_BY_RESOLVER, WINDOW_IN_EXAMPLE_GEN = "resolver", "example_gen"
SPAN_WINDOWS = (WINDOW_BY_RESOLVER, WINDOW_IN_EXAMPLE_GEN)
SPAN_DIR = "span-{}"
# TFX's FileBasedDriver pattern of one span's files (ExampleGen's input_config).
SPAN_PATTERN = "span-{SPAN}/*"
MANIFEST = "spans.json"
DAY_SECONDS = 86_400
_SPAN_NAME = re.compile(r"^span-(\d+)$")
# How each layout writes one rating (the inverse of reader's parsers).
_RATING_LINE = {
    "ml-100k": "{u}\t{m}\t{r}\t{t}\n",
    "ml-1m": "{u}::{m}::{r}::{t}\n",
    "csv": "{u},{m},{r},{t}\n",
}
_CSV_HEADER = "userId,movieId,rating,timestamp\n"


def check_split(split_method: str, train_fraction: float, window_spans: int) -> None:
    """Raises ConfigError unless the arguments describe a split of the ratings."""
    check_choice("split", split_method, SPLIT_METHODS)
    if split_method == SPAN_SPLIT:
        if window_spans < 1:
            raise ConfigError(f"window_spans: {window_spans} is less than 1")
    else:
        reader.check_split(split_method, train_fraction)


def span_dir(root: str, span: int) -> str:
    return files.join(root, SPAN_DIR.format(span))


def is_span_layout(root: str) -> bool:
    """True when `root` is a directory holding at least one span-N/ directory."""
    return files.isdir(root) and bool(available(root))


def available(root: str) -> List[int]:
    """The span numbers present under `root`, ascending."""
    spans = [int(m.group(1)) for m in map(_SPAN_NAME.match, files.listdir(root)) if m]
    return sorted(s for s in spans if files.isdir(span_dir(root, s)))


def origin_of(timestamps: np.ndarray) -> int:
    """The UTC midnight at or before the first rating: span 0 starts there."""
    return int(timestamps.min()) // DAY_SECONDS * DAY_SECONDS


def span_of(timestamps: np.ndarray, origin: int, span_days: int) -> np.ndarray:
    """int64 [n]: the span of each timestamp (seconds), windows of span_days days from origin."""
    return (np.asarray(timestamps, np.int64) - origin) // (span_days * DAY_SECONDS)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """How `write` cut the spans: what reports use to date a span."""

    origin: int
    span_days: int
    counts: Dict[int, int]  # span -> ratings
    layout: str
    source: str

    def start(self, span: int) -> datetime.date:
        return datetime.datetime.fromtimestamp(self.origin + span * self.span_days * DAY_SECONDS,
                                               datetime.timezone.utc).date()

    def to_json(self) -> Dict:
        return {"format": 1, "origin": self.origin, "span_days": self.span_days, "layout": self.layout,
                "source": self.source, "counts": {str(k): v for k, v in sorted(self.counts.items())}}

    @classmethod
    def read(cls, root: str) -> Optional["Manifest"]:
        path = files.join(root, MANIFEST)
        if not files.exists(path):
            return None
        with files.open_binary(path) as f:
            raw = json.loads(f.read().decode("utf-8"))
        return cls(origin=int(raw["origin"]), span_days=int(raw["span_days"]), layout=raw["layout"],
                   source=raw["source"], counts={int(k): int(v) for k, v in raw["counts"].items()})


def write(data_path: str, output_root: str, span_days: int = 7, max_bad_rows: int = 0) -> Manifest:
    """Cuts a flat MovieLens dataset into span-N/ directories under output_root (see module docstring).

    Every span from the first to the last rating's gets a directory; a window
    without any rating is refused (a span must have ratings), with the dates named.
    Rewriting the same data gives the same files; span folders of an earlier cut
    beyond this cut's last span are deleted.
    """
    if span_days < 1:
        raise DataError(f"--span-days must be at least 1, got {span_days}")
    data = reader.load(data_path, max_bad_rows=max_bad_rows)
    ratings = data.ratings
    origin = origin_of(ratings.timestamps)
    spans = span_of(ratings.timestamps, origin, span_days)
    counts = np.bincount(spans)
    manifest = Manifest(origin=origin, span_days=span_days, layout=data.layout, source=files.absolute(data_path),
                        counts={s: int(c) for s, c in enumerate(counts)})
    empty = [s for s, c in enumerate(counts) if c == 0]
    if empty:
        raise DataError(f"{data_path}: no ratings between {manifest.start(empty[0])} and "
                        f"{manifest.start(empty[0] + 1)} (span {empty[0]} of {span_days} days): choose a longer --span-days")
    _, catalog_bytes = reader.layout_file_bytes(data_path)
    line = _RATING_LINE[data.layout]
    order = np.argsort(ratings.timestamps, kind="stable")
    for span in range(len(counts)):
        directory = span_dir(output_root, span)
        if files.isdir(directory):  # an earlier cut's: no file of it may stay (another layout's, say)
            files.remove_tree(directory)
        files.makedirs(directory)
        for name, content in catalog_bytes.items():
            files.write_bytes(files.join(directory, name), content)
        rows = order[spans[order] == span]
        text = "".join(line.format(u=ratings.user_ids[i], m=ratings.movie_ids[i], r=format(float(ratings.ratings[i]), "g"),
                                   t=int(ratings.timestamps[i])) for i in rows)
        files.write_bytes(files.join(directory, reader.LAYOUT_FILES[data.layout]["ratings"]),
                          ((_CSV_HEADER if data.layout == "csv" else "") + text).encode("utf-8"))
    # The span folders of an earlier cut that this one does not have (a shorter --span-days cut more):
    # without this the manifest and `available` would disagree, and a replay would see spans of both cuts.
    for stale in available(output_root):
        if stale >= len(counts):
            files.remove_tree(span_dir(output_root, stale))
    files.write_bytes(files.join(output_root, MANIFEST), json.dumps(manifest.to_json(), indent=1).encode("utf-8"))
    return manifest


def _check_contiguous(root: str, spans: Sequence[int], first: int, last: int) -> None:
    present = set(spans)
    missing = [s for s in range(first, last + 1) if s not in present]
    if missing:
        raise DataError(f"{span_dir(root, missing[0])}: span {missing[0]} is missing "
                        f"(spans {first}..{last} are needed; found {_ranges(spans)})")


def _ranges(spans: Sequence[int]) -> str:
    if not spans:
        return "none"
    out, start = [], spans[0]
    for a, b in zip(spans, list(spans[1:]) + [None], strict=True):
        if b != a + 1:
            out.append(f"{start}" if start == a else f"{start}..{a}")
            start = b
    return ", ".join(out)


def load(root: str, last: int, max_bad_rows: int = 0) -> Tuple[MovieLensData, np.ndarray]:
    """Every span from the first present up to `last`, as one dataset, and each rating's span (int64 [n]).

    Ratings are in span order, each span in file order. The catalog (movies,
    users) is the union, later spans winning. Raises DataError, one line naming
    the span and the file, for a missing span, an empty span folder, one without
    ratings, a corrupted file (its line), a rating present twice (in two spans or
    in one: both files and lines) or spans out of order (a rating earlier than
    the previous span's latest).
    """
    spans = [s for s in available(root) if s <= last]
    if last not in spans:
        raise DataError(f"{span_dir(root, last)}: span {last} is missing (spans present: {_ranges(available(root))})")
    _check_contiguous(root, spans, spans[0], last)
    parts: List[MovieLensData] = []
    for span in spans:
        directory = span_dir(root, span)
        if not files.listdir(directory):
            expected = reader.LAYOUT_FILES[parts[0].layout]["ratings"] if parts else "u.data"
            raise DataError(f"{files.join(directory, expected)}: span {span} is empty (its folder has no files)")
        part = reader.load(directory, max_bad_rows=max_bad_rows)
        if parts and part.layout != parts[0].layout:
            raise DataError(f"{directory}: layout {part.layout} differs from span {spans[0]}'s ({parts[0].layout})")
        parts.append(part)
    _check_no_duplicate(parts)
    for span, previous, part in zip(spans[1:], parts[:-1], parts[1:], strict=True):
        latest = int(previous.ratings.timestamps.argmax())
        i = int(part.ratings.timestamps.argmin())
        if part.ratings.timestamps[i] < previous.ratings.timestamps[latest]:
            raise DataError(
                f"{_where(part, i)}: spans out of order: user {part.ratings.user_ids[i]}'s rating of movie "
                f"{part.ratings.movie_ids[i]} at {_when(part.ratings.timestamps[i])} is earlier than the latest "
                f"rating of span {span - 1} ({_when(previous.ratings.timestamps[latest])}, {_where(previous, latest)})"
            )
    movies, users = {}, ({} if parts[0].users is not None else None)
    for part in parts:
        movies.update(part.movies)
        if users is not None:
            users.update(part.users)
    ratings = Ratings(
        user_ids=[u for p in parts for u in p.ratings.user_ids],
        movie_ids=[m for p in parts for m in p.ratings.movie_ids],
        ratings=np.concatenate([p.ratings.ratings for p in parts]),
        timestamps=np.concatenate([p.ratings.timestamps for p in parts]),
    )
    span_index = np.repeat(np.asarray(spans, np.int64), [len(p.ratings) for p in parts])
    data = MovieLensData(layout=parts[0].layout, source=root, movies=movies, users=users, ratings=ratings,
                         bad_rows=[b for p in parts for b in p.bad_rows])
    return data, span_index


def _where(part: MovieLensData, row: int) -> str:
    """file:line of one rating of a span."""
    lines = part.ratings.lines
    return f"{part.ratings_file}:{int(lines[row])}" if lines is not None else part.ratings_file


def _check_no_duplicate(parts: Sequence[MovieLensData]) -> None:
    """Raises DataError at the second occurrence of a rating (the same user, movie and second) in the
    spans, in one span or two, naming both files and lines: a rating in two spans would be in a
    training window and in the span its model is gated on."""
    timestamps = np.concatenate([p.ratings.timestamps for p in parts])
    order = np.argsort(timestamps, kind="stable")
    tied = np.flatnonzero(timestamps[order][1:] == timestamps[order][:-1])
    if not len(tied):
        return
    # Only ratings that share their second with another can be duplicates.
    candidates = np.unique(np.concatenate([order[tied], order[tied + 1]]))
    offsets = np.cumsum([0] + [len(p.ratings) for p in parts])
    seen: Dict[Tuple[str, str, int], Tuple[int, int]] = {}
    for row in candidates:  # ascending: span order, then file order
        k = int(np.searchsorted(offsets, row, side="right")) - 1
        part, i = parts[k], int(row - offsets[k])
        key = (part.ratings.user_ids[i], part.ratings.movie_ids[i], int(part.ratings.timestamps[i]))
        if key in seen:
            first, j = seen[key]
            raise DataError(f"{_where(part, i)}: duplicate rating: user {key[0]}'s rating of movie {key[1]} at "
                            f"{_when(key[2])} is also at {_where(parts[first], j)}")
        seen[key] = (k, i)


def validate(root: str, last: Optional[int] = None, max_bad_rows: int = 0) -> List[int]:
    """Checks the whole span layout up to `last` (default: the last span present) before any span is
    trained; returns the spans present. The one check of a layout, for `replay` and for a run with
    split "span": a missing span, an empty span folder, a span without ratings, a corrupted file, a
    rating present twice and spans out of order each raise DataError, one line naming the span and
    the file (see `load`). The result is cached (`load_cached`): ExampleGen's read of the same spans
    reuses it."""
    present = available(root) if files.isdir(root) else []
    if not present:
        raise DataError(f"{root}: no span-N directories (split 'span' reads a span layout: span-0/, span-1/, ...)")
    load_cached(root, present[-1] if last is None else last, max_bad_rows)
    return present


def replay_range(root: str, from_span: Optional[int], to_span: Optional[int],
                 max_bad_rows: int = 0) -> Tuple[List[int], int, int]:
    """(spans present, first span to replay, last): `replay`'s --from-span / --to-span checked against
    the layout at `root`, and the whole layout up to the last span validated (`validate`) before the
    first span trains: a missing span (--from-span pointing at one too), an empty one, a rating in two
    spans or spans out of order stop here, not a span or two later."""
    present = available(root) if files.isdir(root) else []
    if len(present) < 2:
        raise DataError(f"{root}: replay needs at least two spans (found {len(present)})")
    first, last = present[0], present[-1]
    start = first + 1 if from_span is None else from_span
    end = last if to_span is None else to_span
    if not first < start <= end <= last:
        raise DataError(f"--from-span {start} / --to-span {end}: spans {first + 1}..{last} can be replayed "
                        f"(span {first} is the first: it only trains)")
    validate(files.absolute(root), end, max_bad_rows)
    return present, start, end


def _when(timestamp) -> str:
    return datetime.datetime.fromtimestamp(int(timestamp), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


_cache: Dict[Tuple, Tuple[MovieLensData, np.ndarray]] = {}


def load_cached(root: str, last: int, max_bad_rows: int = 0) -> Tuple[MovieLensData, np.ndarray]:
    """`load`, remembered (one result) while the span directories keep their files' sizes and times."""
    key = (root, last, max_bad_rows, tuple(files.identity(span_dir(root, s)) for s in available(root) if s <= last))
    if key not in _cache:
        _cache.clear()
        _cache[key] = load(root, last, max_bad_rows)
    return _cache[key]


def first_train_span(present: Sequence[int], span: int, window_spans: int) -> int:
    """The first span of the window before `span` (never before the first span present)."""
    return max(min(present), span - window_spans)


def window(present: Sequence[int], span: int, window_spans: int, root: str = "") -> Tuple[int, int]:
    """(first, last): the spans the run for `span` trains on, the window_spans spans before it (never
    before the first span present). Raises DataError for the first span: nothing is before it."""
    first = min(present)
    if span <= first:
        raise DataError(f"{span_dir(root, span)}: span {span} is the first span: there is nothing before it to "
                        f"train on (the first trainable span is {first + 1})")
    return first_train_span(present, span, window_spans), span - 1


def window_splits(span_index: np.ndarray, span: int, window_spans: int, root: str = "") -> Dict[str, np.ndarray]:
    """Row indices (ascending) of the run for `span`: train = the window_spans spans before it,
    eval = the span itself (the first data the model would serve), previous = span - 1 (drift baseline)."""
    start, _ = window([int(span_index.min())], span, window_spans, root)
    return {
        "train": np.flatnonzero((span_index >= start) & (span_index < span)),
        "eval": np.flatnonzero(span_index == span),
        "previous": np.flatnonzero(span_index == span - 1),
    }
