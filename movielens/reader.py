"""Reads MovieLens in its three official layouts, validating every row.

Layouts (detected from the file names, in a directory or a .zip):

* ``ml-100k``: ``u.data`` (tab separated), ``u.item`` (latin-1, ``|``), ``u.user``.
* ``ml-1m``: ``ratings.dat``, ``movies.dat``, ``users.dat`` (latin-1, ``::``).
* ``csv`` (ml-latest-small, ml-25m, ...): ``ratings.csv``, ``movies.csv``
  (utf-8, quoted CSV with a header).

Every problem is reported with the file, the 1-based line number and the reason.
Problems with a single row (malformed, wrong field count, non-integer id or
timestamp, rating of an unknown movie or user, undecodable bytes) are *bad rows*:
by default any bad row is fatal; with ``max_bad_rows=N`` up to N of them are
quarantined (kept, with their reasons, in ``MovieLensData.bad_rows``).
Problems with a whole file (missing, empty, unsafe zip) are always fatal.
"""

from __future__ import annotations

import csv
import dataclasses
import posixpath
import zipfile
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from core.errors import ConfigError, UserError, check_choice
from movielens import files

# The genre names tensorflow-datasets uses for every MovieLens variant; the
# `movie_genres` feature holds indices into this list.
GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "IMAX",
    "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "Unknown", "War",
    "Western", "(no genres listed)",
)
_GENRE_INDEX = {name: i for i, name in enumerate(GENRES)}
_GENRE_ALIASES = {"Children's": "Children", "unknown": "Unknown"}

# u.item's 19 genre flag columns, in file order.
_ML100K_GENRE_COLUMNS = (
    "Unknown", "Action", "Adventure", "Animation", "Children", "Comedy",
    "Crime", "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror",
    "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)

# ml-1m's users.dat stores the occupation as a code.
_ML1M_OCCUPATIONS = (
    "other/not specified", "academic/educator", "artist", "clerical/admin",
    "college/grad student", "customer service", "doctor/health care",
    "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed",
    "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)

# A zip member larger than this, or compressed more than _MAX_ZIP_RATIO times,
# is refused (the largest official file, ml-25m's ratings.csv, is ~680 MB).
MAX_ZIP_MEMBER_BYTES = 4 * 1024**3
_MAX_ZIP_RATIO = 200

INT64_MAX = 2**63 - 1  # timestamps are int64 seconds since the epoch

LAYOUT_FILES = {
    "ml-100k": {"ratings": "u.data", "movies": "u.item", "users": "u.user"},
    "ml-1m": {"ratings": "ratings.dat", "movies": "movies.dat", "users": "users.dat"},
    "csv": {"ratings": "ratings.csv", "movies": "movies.csv"},
}


class DataError(UserError, ValueError):
    """The input data cannot be used; the message says where and why."""


@dataclasses.dataclass(frozen=True)
class BadRow:
    path: str
    line: int
    reason: str
    text: str

    def describe(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclasses.dataclass(frozen=True)
class Movie:
    title: str
    genres: Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class User:
    age: float
    gender: str  # "M" or "F"
    occupation: str
    zip_code: str


@dataclasses.dataclass
class Ratings:
    """Rating rows as columns, in file order (quarantined rows removed)."""

    user_ids: List[str]
    movie_ids: List[str]
    ratings: np.ndarray  # float32 [n]
    timestamps: np.ndarray  # int64 [n], seconds since the epoch
    # int64 [n]: each rating's 1-based line in its file (what errors about a rating name), when known.
    lines: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return len(self.user_ids)


@dataclasses.dataclass
class MovieLensData:
    layout: str
    source: str
    movies: Dict[str, Movie]
    users: Optional[Dict[str, User]]
    ratings: Ratings
    bad_rows: List[BadRow]
    ratings_file: str = ""  # the ratings file as errors name it (path, or archive!member)


# ---------------------------------------------------------------------------
# Sources: a directory or a zip archive.


class _Source:
    """Files of one MovieLens layout, in a directory or a zip archive."""

    def __init__(self, path: str):
        self.path = path
        if not files.exists(path):
            raise DataError(f"{path}: no such file or directory (expected a MovieLens directory or .zip)")
        if files.isdir(path):
            self._zip = None
            names = files.list_files(path)
        else:
            handle = files.open_binary(path)
            if not zipfile.is_zipfile(handle):
                raise DataError(f"{path}: neither a directory nor a zip archive")
            self._zip = zipfile.ZipFile(handle)
            names = [_checked_member(path, info) for info in self._zip.infolist() if not info.is_dir()]
        self.layout, self.prefix = _detect_layout(path, names)
        self._names = set(names)

    def has(self, name: str) -> bool:
        return posixpath.join(self.prefix, name) in self._names

    def display(self, name: str) -> str:
        member = posixpath.join(self.prefix, name)
        return files.join(self.path, member) if self._zip is None else f"{self.path}!{member}"

    def open(self, name: str):
        member = posixpath.join(self.prefix, name)
        if self._zip is not None:
            return self._zip.open(member)
        return files.open_binary(files.join(self.path, member))


def layout_file_bytes(path: str) -> Tuple[str, Dict[str, bytes]]:
    """(layout, {file name: raw bytes}) of the catalog files (movies, users) of a MovieLens directory or zip."""
    source = _Source(path)
    out = {}
    for kind, name in LAYOUT_FILES[source.layout].items():
        if kind != "ratings" and source.has(name):
            with source.open(name) as f:
                out[name] = f.read()
    return source.layout, out


def _checked_member(archive: str, info: zipfile.ZipInfo) -> str:
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or (len(parts[0]) == 2 and parts[0][1] == ":"):
        raise DataError(f"{archive}: refused: member {name!r} escapes the archive (path traversal)")
    if info.file_size > MAX_ZIP_MEMBER_BYTES or (
        info.compress_size > 0 and info.file_size / info.compress_size > _MAX_ZIP_RATIO
        and info.file_size > 64 * 1024**2
    ):
        raise DataError(
            f"{archive}: refused: member {name!r} unpacks to {info.file_size} bytes "
            f"(limit {MAX_ZIP_MEMBER_BYTES}, compression ratio limit {_MAX_ZIP_RATIO})"
        )
    return posixpath.normpath(name)


def _detect_layout(path: str, names: Sequence[str]) -> Tuple[str, str]:
    found = []
    for layout, layout_files in LAYOUT_FILES.items():
        for name in names:
            if posixpath.basename(name) == layout_files["ratings"]:
                found.append((posixpath.dirname(name).count("/") + bool(posixpath.dirname(name)), layout, posixpath.dirname(name)))
    if not found:
        expected = ", ".join(f"{f['ratings']} ({layout})" for layout, f in LAYOUT_FILES.items())
        raise DataError(f"{path}: not a MovieLens dataset: found none of {expected}")
    found.sort()
    _, layout, prefix = found[0]
    return layout, prefix


# ---------------------------------------------------------------------------
# Line-level parsing.


class _RowError(Exception):
    pass


def _lines(source: _Source, name: str, encoding: str, bad: List[BadRow], header: bool = False) -> Iterator[Tuple[int, str]]:
    """Yields (line number, decoded line) for the non-blank lines of a file."""
    display = source.display(name)
    if not source.has(name):
        raise DataError(f"{display}: missing: the {source.layout} layout needs this file")
    count = 0
    with source.open(name) as f:
        for number, raw in enumerate(f, start=1):
            raw = raw.rstrip(b"\r\n")
            if not raw.strip():
                continue
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as e:
                reason = f"undecodable bytes at column {e.start + 1} (expected {encoding})"
                bad.append(BadRow(display, number, reason, raw.decode("latin-1")))
                continue
            count += 1
            if header and count == 1:
                continue
            yield number, text
    if count <= (1 if header else 0):
        raise DataError(f"{display}: empty: no data rows")


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _RowError(f"{what} {value!r} is not an integer") from None


def _id(value: str, what: str) -> str:
    return str(_int(value.strip(), what))


def _fields(text: str, sep: str, expected: int, csv_quoted: bool = False) -> List[str]:
    if csv_quoted:
        try:
            fields = next(csv.reader([text], strict=True))
        except csv.Error as e:
            raise _RowError(f"malformed CSV ({e})") from None
    else:
        fields = text.split(sep)
    if len(fields) != expected:
        raise _RowError(f"expected {expected} fields separated by {sep!r}, found {len(fields)}")
    return fields


def _genre_ids(names: Sequence[str]) -> Tuple[int, ...]:
    out = []
    for name in names:
        name = _GENRE_ALIASES.get(name, name)
        if name not in _GENRE_INDEX:
            raise _RowError(f"unknown genre {name!r}")
        out.append(_GENRE_INDEX[name])
    return tuple(out)


def _rating_row(sep: str, csv_quoted: bool = False):
    def parse(text: str):
        user, movie, rating, ts = _fields(text, sep, 4, csv_quoted)
        try:
            value = float(rating)
        except ValueError:
            raise _RowError(f"rating {rating!r} is not a number") from None
        if not 0.5 <= value <= 5.0:
            raise _RowError(f"rating {value} outside [0.5, 5]")
        timestamp = _int(ts.strip(), "timestamp")
        if timestamp < 0:
            raise _RowError(f"timestamp {timestamp} is negative")
        if timestamp > INT64_MAX:
            raise _RowError(f"timestamp {timestamp} is beyond the int64 range (at most {INT64_MAX})")
        return _id(user, "user id"), _id(movie, "movie id"), value, timestamp
    return parse


def _movie_100k(text: str):
    fields = _fields(text, "|", 5 + len(_ML100K_GENRE_COLUMNS))
    flags = fields[5:]
    if any(f not in ("0", "1") for f in flags):
        raise _RowError("genre flags must be 0 or 1")
    genres = tuple(_GENRE_INDEX[g] for g, f in zip(_ML100K_GENRE_COLUMNS, flags, strict=True) if f == "1")
    return _id(fields[0], "movie id"), Movie(fields[1], genres)


def _movie_genre_list(sep: str, csv_quoted: bool = False):
    def parse(text: str):
        movie, title, genres = _fields(text, sep, 3, csv_quoted)
        return _id(movie, "movie id"), Movie(title, _genre_ids(genres.split("|")))
    return parse


def _user_100k(text: str):
    user, age, gender, occupation, zip_code = _fields(text, "|", 5)
    return _id(user, "user id"), User(float(_int(age, "age")), _gender(gender), occupation, zip_code)


def _user_1m(text: str):
    user, gender, age, occupation, zip_code = _fields(text, "::", 5)
    code = _int(occupation, "occupation")
    if not 0 <= code < len(_ML1M_OCCUPATIONS):
        raise _RowError(f"occupation code {code} unknown")
    return _id(user, "user id"), User(float(_int(age, "age")), _gender(gender), _ML1M_OCCUPATIONS[code], zip_code)


def _gender(value: str) -> str:
    if value not in ("M", "F"):
        raise _RowError(f"gender {value!r} is not M or F")
    return value


_PARSERS = {
    "ml-100k": dict(
        ratings=("utf-8", _rating_row("\t"), False),
        movies=("latin-1", _movie_100k, False),
        users=("utf-8", _user_100k, False),
    ),
    "ml-1m": dict(
        ratings=("utf-8", _rating_row("::"), False),
        movies=("latin-1", _movie_genre_list("::"), False),
        users=("utf-8", _user_1m, False),
    ),
    "csv": dict(
        ratings=("utf-8", _rating_row(",", csv_quoted=True), True),
        movies=("utf-8", _movie_genre_list(",", csv_quoted=True), True),
    ),
}


def _keyed(source, kind, bad) -> Dict[str, object]:
    name = LAYOUT_FILES[source.layout][kind]
    encoding, parse, header = _PARSERS[source.layout][kind]
    out: Dict[str, object] = {}
    display = source.display(name)
    for number, text in _lines(source, name, encoding, bad, header=header):
        try:
            key, value = parse(text)
            if key in out:
                raise _RowError(f"duplicate {kind[:-1]} id {key}")
        except _RowError as e:
            bad.append(BadRow(display, number, str(e), text))
            continue
        out[key] = value
    return out


def load(path: str, max_bad_rows: int = 0) -> MovieLensData:
    """Reads and validates a MovieLens dataset (directory or .zip).

    Raises DataError naming the file, line and reason when the data cannot be
    used, or when it has more than `max_bad_rows` bad rows.
    """
    source = _Source(path)
    bad: List[BadRow] = []
    movies = _keyed(source, "movies", bad)
    users = _keyed(source, "users", bad) if "users" in LAYOUT_FILES[source.layout] else None

    name = LAYOUT_FILES[source.layout]["ratings"]
    display = source.display(name)
    encoding, parse, header = _PARSERS[source.layout]["ratings"]
    user_ids, movie_ids, values, timestamps, lines = [], [], [], [], []
    # One string object per distinct id, not per rating (10M ratings: ~1 GB less).
    seen_ids: Dict[str, str] = {}
    for number, text in _lines(source, name, encoding, bad, header=header):
        try:
            user, movie, value, ts = parse(text)
            user, movie = seen_ids.setdefault(user, user), seen_ids.setdefault(movie, movie)
            if movie not in movies:
                raise _RowError(f"rating of unknown movie id {movie} (not in {LAYOUT_FILES[source.layout]['movies']})")
            if users is not None and user not in users:
                raise _RowError(f"rating by unknown user id {user} (not in {LAYOUT_FILES[source.layout]['users']})")
        except _RowError as e:
            bad.append(BadRow(display, number, str(e), text))
            continue
        user_ids.append(user)
        movie_ids.append(movie)
        values.append(value)
        timestamps.append(ts)
        lines.append(number)

    if len(bad) > max_bad_rows:
        hint = (" (allow up to N with --max-bad-rows N to quarantine them)" if max_bad_rows == 0
                else f" (more than --max-bad-rows {max_bad_rows})")
        if len(bad) == 1:
            raise DataError(f"{bad[0].describe()}{hint}")
        shown = "; ".join(b.describe() for b in bad[:10])
        more = f"; ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataError(f"{len(bad)} bad rows in {path}{hint}: {shown}{more}")
    if not user_ids:
        raise DataError(f"{display}: no usable ratings")
    ratings = Ratings(user_ids, movie_ids, np.asarray(values, np.float32), np.asarray(timestamps, np.int64),
                      np.asarray(lines, np.int64))
    return MovieLensData(source.layout, path, movies, users, ratings, bad, ratings_file=display)


# One dataset, explicitly bounded: ExampleGen's executor validates and splits
# the data, and its Beam workers (in the same process when Beam runs
# in-process) encode it; this spares the workers a second parse, which costs
# as much as the first (docs/performance.md: about 5 s per 1M ratings).
_cache: Dict[Tuple, MovieLensData] = {}


def load_cached(path: str, max_bad_rows: int = 0) -> MovieLensData:
    """`load`, remembered (one dataset) for as long as the files keep their size and modification time."""
    key = (path, max_bad_rows, files.identity(path))
    if key not in _cache:
        _cache.clear()
        _cache[key] = load(path, max_bad_rows=max_bad_rows)
    return _cache[key]


# ---------------------------------------------------------------------------
# Splits.

FLAT_SPLIT_METHODS = ("random", "temporal")  # a flat dataset's (a span layout's: spans.SPAN_SPLIT)


def check_split(method: str, train_fraction: float) -> None:
    """Raises ConfigError unless `method` and `train_fraction` describe a split."""
    check_choice("split", method, FLAT_SPLIT_METHODS)
    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"train fraction must be in (0, 1), got {train_fraction}")


def split_indices(timestamps: np.ndarray, method: str, train_fraction: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Row indices of the train and eval splits, each in ascending order.

    `random`: a seeded permutation; the first `train_fraction` of it trains.
    `temporal`: one global cutoff: the earliest `train_fraction` of the ratings
    (stable on ties) train, so no eval rating is earlier than a train rating.
    """
    check_split(method, train_fraction)
    n = len(timestamps)
    n_train = int(round(n * train_fraction))
    if method == "random":
        order = np.random.RandomState(seed).permutation(n)
    else:  # temporal
        order = np.argsort(timestamps, kind="stable")
    train, evaluation = np.sort(order[:n_train]), np.sort(order[n_train:])
    if len(train) == 0 or len(evaluation) == 0:
        raise DataError(
            f"split {method!r} with train fraction {train_fraction} leaves an empty "
            f"{'train' if len(train) == 0 else 'eval'} split ({n} usable ratings)"
        )
    return train, evaluation


def write_quarantine(bad_rows: Sequence[BadRow], stream) -> None:
    """Writes quarantined rows to a text stream as TSV: file, line, reason, raw text."""
    writer = csv.writer(stream, delimiter="\t", lineterminator="\n")
    writer.writerow(["file", "line", "reason", "row"])
    for b in bad_rows:
        writer.writerow([b.path, b.line, b.reason, b.text])
