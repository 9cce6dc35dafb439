"""Hostile inputs as data: what a user, or a broken upstream, can hand the program, and the one line it
must answer. Each case is (id, surface, input, expected message); `test_hostile.py` runs every case
through its surface's driver and compares the message exactly. Placeholders in an expected message:
{tmp} (the case's temporary directory), {root} (a span layout's root), {data} (a flat data directory),
{out} (an output directory). `secrets` are strings the answer (stdout and stderr) must never contain.

A new surface gets the same treatment by adding a driver and its cases: nothing else.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Tuple

START = 880_000_000  # 1997-11-20 04:26:40 UTC
DAY = 86_400
WEEK = 7 * DAY


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    surface: str
    input: Any
    expected: str
    secrets: Tuple[str, ...] = ()


def rating(user: int, movie: int, timestamp: int) -> str:
    """One u.data line (rating 4)."""
    return f"{user}\t{movie}\t4\t{timestamp}"


def week(span: int) -> list:
    """Span `span` of the base layout: two ratings, 10 and 20 s into its week."""
    return [rating(1, 1 + span, START + span * WEEK + 10), rating(2, 2 + span, START + span * WEEK + 20)]


def layout(**changes) -> dict:
    """Spans 0..3 of the base layout with `changes` (span_N=lines, or None to leave span N out;
    a list of lines, "" for an empty u.data, [] for an empty folder)."""
    spans = {n: week(n) for n in range(4)}
    for name, lines in changes.items():
        n = int(name.split("_")[1])
        if lines is None:
            del spans[n]
        else:
            spans[n] = lines
    return spans


# --- span layouts: spans.replay_range (replay; a run with split "span" calls the same spans.validate) ----

MISSING_2 = "error: {root}/span-2: span 2 is missing (spans 0..3 are needed; found 0..1, 3)"

SPAN_CASES = [
    Case("missing span", "spans", {"spans": layout(span_2=None)}, MISSING_2),
    Case("--from-span at a missing span", "spans", {"spans": layout(span_2=None), "from_span": 2}, MISSING_2),
    Case("--to-span at a missing span", "spans", {"spans": layout(span_2=None), "to_span": 2},
         "error: {root}/span-2: span 2 is missing (spans present: 0..1, 3)"),
    Case("empty span folder", "spans", {"spans": layout(span_2=[])},
         "error: {root}/span-2/u.data: span 2 is empty (its folder has no files)"),
    Case("span without ratings", "spans", {"spans": layout(span_2="")},
         "error: {root}/span-2/u.data: empty: no data rows"),
    Case("rating repeated across the boundary of two spans", "spans",
         {"spans": layout(span_2=[week(1)[-1]] + week(2))},
         "error: {root}/span-2/u.data:1: duplicate rating: user 2's rating of movie 3 at 1997-11-27 04:27:00 UTC "
         "is also at {root}/span-1/u.data:2"),
    Case("rating of an earlier span repeated mid-span", "spans",
         {"spans": layout(span_2=[week(2)[0], week(1)[0], week(2)[1]])},
         "error: {root}/span-2/u.data:2: duplicate rating: user 1's rating of movie 2 at 1997-11-27 04:26:50 UTC "
         "is also at {root}/span-1/u.data:1"),
    Case("rating repeated within a span", "spans", {"spans": layout(span_2=week(2) + [week(2)[0]])},
         "error: {root}/span-2/u.data:3: duplicate rating: user 1's rating of movie 3 at 1997-12-04 04:26:50 UTC "
         "is also at {root}/span-2/u.data:1"),
    Case("spans out of order", "spans", {"spans": layout(span_3=[rating(1, 5, START + WEEK)])},
         "error: {root}/span-3/u.data:1: spans out of order: user 1's rating of movie 5 at 1997-11-27 04:26:40 UTC "
         "is earlier than the latest rating of span 2 (1997-12-04 04:27:00 UTC, {root}/span-2/u.data:2)"),
    Case("a corrupted line in a span", "spans", {"spans": layout(span_2=week(2) + ["1\tnot-a-movie\t4"])},
         "error: {root}/span-2/u.data:3: expected 4 fields separated by '\\t', found 3 "
         "(allow up to N with --max-bad-rows N to quarantine them)"),
    Case("only one span", "spans", {"spans": {0: week(0)}},
         "error: {root}: replay needs at least two spans (found 1)"),
    Case("--from-span at the first span", "spans", {"spans": layout(), "from_span": 0},
         "error: --from-span 0 / --to-span 3: spans 1..3 can be replayed (span 0 is the first: it only trains)"),
    Case("--to-span beyond the last span", "spans", {"spans": layout(), "to_span": 9},
         "error: --from-span 1 / --to-span 9: spans 1..3 can be replayed (span 0 is the first: it only trains)"),
]

# --- flat MovieLens data: reader.load (ExampleGen's read; last session's ingestion cases) -------------

U_DATA = "{data}/u.data"

INGESTION_CASES = [
    Case("wrong field count", "ingestion", {"u.data+": "1\t2\t3\n"},
         "error: {data}/u.data:4: expected 4 fields separated by '\\t', found 3 "
         "(allow up to N with --max-bad-rows N to quarantine them)"),
    Case("user id not an integer", "ingestion", {"u.data+": "x1\t2\t3\t880000000\n"},
         "error: {data}/u.data:4: user id 'x1' is not an integer (allow up to N with --max-bad-rows N to quarantine them)"),
    Case("timestamp not an integer", "ingestion", {"u.data+": "1\t2\t3\tyesterday\n"},
         "error: {data}/u.data:4: timestamp 'yesterday' is not an integer "
         "(allow up to N with --max-bad-rows N to quarantine them)"),
    Case("negative timestamp", "ingestion", {"u.data+": "1\t2\t3\t-5\n"},
         "error: {data}/u.data:4: timestamp -5 is negative (allow up to N with --max-bad-rows N to quarantine them)"),
    Case("timestamp beyond int64", "ingestion", {"u.data+": "1\t2\t3\t99999999999999999999\n"},
         "error: {data}/u.data:4: timestamp 99999999999999999999 is beyond the int64 range (at most "
         "9223372036854775807) (allow up to N with --max-bad-rows N to quarantine them)"),
    Case("rating out of range", "ingestion", {"u.data+": "1\t2\t11\t880000000\n"},
         "error: {data}/u.data:4: rating 11.0 outside [0.5, 5] (allow up to N with --max-bad-rows N to quarantine them)"),
    Case("rating not a number", "ingestion", {"u.data+": "1\t2\tNaN-ish\t880000000\n"},
         "error: {data}/u.data:4: rating 'NaN-ish' is not a number (allow up to N with --max-bad-rows N to quarantine them)"),
    Case("rating NaN", "ingestion", {"u.data+": "1\t2\tnan\t880000000\n"},
         "error: {data}/u.data:4: rating nan outside [0.5, 5] (allow up to N with --max-bad-rows N to quarantine them)"),
    Case("unknown movie", "ingestion", {"u.data+": "1\t9999\t3\t880000000\n"},
         "error: {data}/u.data:4: rating of unknown movie id 9999 (not in u.item) "
         "(allow up to N with --max-bad-rows N to quarantine them)"),
    Case("unknown user", "ingestion", {"u.data+": "999\t2\t3\t880000000\n"},
         "error: {data}/u.data:4: rating by unknown user id 999 (not in u.user) "
         "(allow up to N with --max-bad-rows N to quarantine them)"),
    Case("undecodable bytes", "ingestion", {"u.data+": b"1\t2\t3\t88\xff0000\n"},
         "error: {data}/u.data:4: undecodable bytes at column 9 (expected utf-8) "
         "(allow up to N with --max-bad-rows N to quarantine them)"),
    Case("duplicate movie id", "ingestion", {"u.item+": "1|Again (1995)|01-Jan-1995||x|" + "|".join("0" * 19) + "\n"},
         "error: {data}/u.item:7: duplicate movie id 1 (allow up to N with --max-bad-rows N to quarantine them)"),
    Case("two bad rows", "ingestion", {"u.data+": "1\t2\n1\t2\t3\tsoon\n"},
         "error: 2 bad rows in {data} (allow up to N with --max-bad-rows N to quarantine them): "
         "{data}/u.data:4: expected 4 fields separated by '\\t', found 2; "
         "{data}/u.data:5: timestamp 'soon' is not an integer"),
    Case("empty ratings file", "ingestion", {"u.data": ""}, "error: {data}/u.data: empty: no data rows"),
    Case("missing movies file", "ingestion", {"u.item": None},
         "error: {data}/u.item: missing: the ml-100k layout needs this file"),
    Case("no MovieLens file", "ingestion", {"u.data": None, "u.item": None, "u.user": None, "notes.txt": "hello"},
         "error: {data}: not a MovieLens dataset: found none of u.data (ml-100k), ratings.dat (ml-1m), "
         "ratings.csv (csv)"),
    Case("no such directory", "ingestion", {"path": "nowhere"},
         "error: {tmp}/nowhere: no such file or directory (expected a MovieLens directory or .zip)"),
    Case("zip with path traversal", "ingestion", {"zip": {"../../etc/u.data": "1\t1\t1\t1\n"}},
         "error: {tmp}/data.zip: refused: member '../../etc/u.data' escapes the archive (path traversal)"),
]

# --- --metadata-uri: `movielens-tfx run` (the password never in the answer) ---------------------------

EXPECTED_URI = "mysql://user[:password]@host[:port]/database"


def _uri(shown: str, reason: str) -> str:
    return f"error: --metadata-uri: {shown!r} is not {EXPECTED_URI} ({reason})"


SECRET = ("secret123",)
METADATA_URI_CASES = [
    Case("one slash", "metadata-uri", "mysql:/user:secret123@127.0.0.1/db",
         _uri("mysql:/user:***@127.0.0.1/db", "it must start with mysql://"), SECRET),
    Case("no scheme", "metadata-uri", "user:secret123@127.0.0.1/db",
         _uri("user:***@127.0.0.1/db", "it must start with mysql://"), SECRET),
    Case("scheme without slashes", "metadata-uri", "mysql:user:secret123@127.0.0.1/db",
         _uri("mysql:user:***@127.0.0.1/db", "it must start with mysql://"), SECRET),
    Case("another scheme", "metadata-uri", "postgres://user:secret123@127.0.0.1/db",
         _uri("postgres://user:***@127.0.0.1/db", "it must start with mysql://"), SECRET),
    Case("mysql:/// (nothing)", "metadata-uri", "mysql:///", _uri("mysql:///", "no user@ before the host")),
    Case("trailing junk after the database", "metadata-uri", "mysql://user:secret123@127.0.0.1/db/junk",
         _uri("mysql://user:***@127.0.0.1/db/junk", "unexpected text after the database name"), SECRET),
    Case("space in the database", "metadata-uri", "mysql://user:secret123@127.0.0.1/db extra",
         _uri("mysql://user:***@127.0.0.1/db extra", "unexpected text after the database name"), SECRET),
    Case("a query string", "metadata-uri", "mysql://user@127.0.0.1/db?password=secret123",
         _uri("mysql://user@127.0.0.1/db?***", "unexpected text after the database name"), SECRET),
    Case("percent-encoded password, no database", "metadata-uri", "mysql://user:secret%31%32%33@127.0.0.1/",
         _uri("mysql://user:***@127.0.0.1/", "no /database after the host"), SECRET + ("secret%31%32%33",)),
    Case("password holding ':' '/' and '@'", "metadata-uri", "mysql://user:se:c/ret@123@127.0.0.1",
         _uri("mysql://user:***@127.0.0.1", "no user@ before the host"), ("se:c/ret@123", "ret@123", "c/ret")),
    Case("port not a number", "metadata-uri", "mysql://user:secret123@127.0.0.1:33o6/db",
         _uri("mysql://user:***@127.0.0.1:33o6/db", "the port is not a number from 1 to 65535"), SECRET),
    Case("port out of range", "metadata-uri", "mysql://user:secret123@127.0.0.1:99999/db",
         _uri("mysql://user:***@127.0.0.1:99999/db", "the port is not a number from 1 to 65535"), SECRET),
    Case("no @host: the password read as a port", "metadata-uri", "mysql://user:secret123/db",
         _uri("mysql://user:***/db", "no user@ before the host"), SECRET),
    Case("no host", "metadata-uri", "mysql://user:secret123@/db",
         _uri("mysql://user:***@/db", "no host after the @"), SECRET),
    Case("unbalanced IPv6 bracket", "metadata-uri", "mysql://user:secret123@[::1/db",
         _uri("mysql://user:***@[::1/db", "it cannot be parsed as a URL"), SECRET),
]

# --- `movielens-tfx recommend`'s arguments (refused before any model is loaded) ---------------------

RECOMMEND_ARGUMENT_CASES = [
    Case("-k 0", "recommend", {"args": ["-k", "0"]}, "error: -k 0: must be at least 1"),
    Case("-k -3", "recommend", {"args": ["-k", "-3"]}, "error: -k -3: must be at least 1"),
    Case("--timestamp beyond int64", "recommend", {"args": ["--timestamp", "9223372036854775808"]},
         "error: --timestamp 9223372036854775808 is outside the int64 range of seconds since the epoch "
         "(-9223372036854775808..9223372036854775807)"),
    Case("--timestamp below int64", "recommend", {"args": ["--timestamp", "-9223372036854775809"]},
         "error: --timestamp -9223372036854775809 is outside the int64 range of seconds since the epoch "
         "(-9223372036854775808..9223372036854775807)"),
    Case("--history time beyond int64", "recommend", {"args": ["--history", "50:99999999999999999999"]},
         "error: --history: '50:99999999999999999999': the rating time 99999999999999999999 is outside the int64 "
         "range of seconds since the epoch (-9223372036854775808..9223372036854775807)"),
    Case("--history time not a number", "recommend", {"args": ["--history", "50:soon"]},
         "error: --history: '50:soon': the rating time after ':' must be seconds since the epoch"),
    Case("--history without a movie", "recommend", {"args": ["--history", "50,:881250949"]},
         "error: --history: ':881250949': no movie id before ':'"),
    Case("no pushed model", "recommend", {"args": ["--history", "50"]},
         "error: no pushed model in {out}/serving/movielens_retrieval: run `movielens-tfx run` first "
         "(only blessed models are pushed)"),
    Case("no ingested data for the default history", "recommend", {"args": [], "versions": ["1"]},
         "error: no ingested data in {out} ({out}/metadata.sqlite does not exist): give the user's movies with "
         "--history ID[:TIME],... ('' for none)"),
]

CASES = SPAN_CASES + INGESTION_CASES + METADATA_URI_CASES + RECOMMEND_ARGUMENT_CASES
