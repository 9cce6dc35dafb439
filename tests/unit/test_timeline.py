"""The replay's timeline files: timeline.json round trip, the summary, timeline.md, timeline.png, resuming."""

import dataclasses
import json
import os
import struct

import pytest

from app import timeline
from app.timeline import SpanEntry
from core.errors import UserError


def _entry(span, deployed, candidate, frozen, popularity, **overrides):
    values = dict(
        span=span, train_spans=(max(0, span - 3), span - 1), eval_ratings=1000 + span,
        candidate_top_100=candidate, deployed_top_100=deployed, frozen_top_100=frozen,
        baselines_top_100={"popularity": popularity, "recent_popularity": popularity + 0.01, "item_knn": 0.05, "ease": 0.04},
        blessed=False, pushed_version=None, serving_version=None, drift=[], drift_measured={}, warm_start=None,
        wall_seconds=100.0, component_seconds={"RetrievalTrainer": 40.0, "Evaluator": 20.0},
    )
    values.update(overrides)
    return SpanEntry(**values)


def _replay():
    """Four spans. Span 1: nothing deployed yet, the candidate is blessed and pushed (it becomes the frozen model).
    Spans 2-4 are served; the deployed model beats popularity on all 3. Frozen is known from span 2 on."""
    return [
        _entry(1, None, 0.20, None, 0.10, blessed=True, pushed_version="1700000001", serving_version="1700000001",
               wall_seconds=120.0, component_seconds={"RetrievalTrainer": 60.0, "Evaluator": 30.0}),
        _entry(2, 0.21, 0.22, 0.21, 0.11, serving_version="1700000001",
               drift=["movie_id: Jensen-Shannon divergence 0.31 > 0.2"]),
        _entry(3, 0.23, 0.26, 0.19, 0.12, blessed=True, pushed_version="1700000003", serving_version="1700000003",
               warm_start={"rows_copied": 1200, "new_ids": 30}, wall_seconds=80.0,
               component_seconds={"RetrievalTrainer": 20.0}),
        _entry(4, 0.25, 0.25, 0.17, 0.13, serving_version="1700000003",
               drift=["movie_id: Jensen-Shannon divergence 0.25 > 0.2", "user_id: 12% unseen ids > 10%"]),
    ]


def test_an_entry_has_exactly_the_documented_keys_and_survives_a_json_round_trip(tmp_path):
    entries = _replay()
    assert SpanEntry.keys() == [
        "span", "train_spans", "eval_ratings", "candidate_top_100", "deployed_top_100", "frozen_top_100",
        "baselines_top_100", "blessed", "pushed_version", "serving_version", "drift", "drift_measured", "warm_start",
        "wall_seconds", "component_seconds", "comparisons",
    ]
    as_json = entries[2].to_json()
    assert as_json["train_spans"] == [0, 2] and as_json["warm_start"] == {"rows_copied": 1200, "new_ids": 30}
    assert json.loads(json.dumps(as_json)) == as_json
    assert SpanEntry.from_json(json.loads(json.dumps(as_json))) == entries[2]

    timeline.write(str(tmp_path), list(reversed(entries)))
    document = json.loads((tmp_path / timeline.JSON_FILE).read_text())
    assert document["format_version"] == timeline.FORMAT_VERSION
    assert [e["span"] for e in document["entries"]] == [1, 2, 3, 4]  # sorted by span
    assert document["entries"][0]["deployed_top_100"] is None and document["entries"][0]["frozen_top_100"] is None
    assert timeline.read(str(tmp_path / timeline.JSON_FILE)) == entries
    assert timeline.read(str(tmp_path)) == entries  # the directory works too
    older = entries[2].to_json()
    del older["comparisons"]  # a timeline.json written before the gate's intervals
    assert SpanEntry.from_json(older).comparisons == {}


def test_the_table_shows_the_gates_comparisons_in_words():
    compared = {"blessed_model": {"words": "not distinguishable: +0.0020 [-0.0030, +0.0090]"},
                "floor_baseline": {"words": "better: +0.0700 [+0.0600, +0.0800]"}}
    entries = [_replay()[0], dataclasses.replace(_replay()[1], comparisons=compared)]
    table = timeline.markdown(entries)
    row = next(line for line in table.splitlines() if line.startswith("| 2 |"))
    assert "| not distinguishable: +0.0020 [-0.0030, +0.0090] | better: +0.0700 [+0.0600, +0.0800] |" in row
    first = next(line for line in table.splitlines() if line.startswith("| 1 |"))
    assert first.count("| - |") >= 2


def test_from_json_names_missing_and_unknown_keys():
    data = _replay()[0].to_json()
    del data["drift"]
    data["accuracy"] = 0.3
    with pytest.raises(ValueError, match="missing drift; unknown accuracy"):
        SpanEntry.from_json(data)
    with pytest.raises(ValueError, match="first <= last"):
        _entry(5, 0.2, 0.2, 0.2, 0.1, train_spans=(4, 2))


def test_summary_on_hand_made_entries():
    result = timeline.summary(_replay())
    assert result.spans == 4
    assert result.served_spans == 3  # span 1 had nothing deployed
    # deployed vs popularity: 0.21 > 0.11, 0.23 > 0.12, 0.25 > 0.13
    assert (result.deployed_beats_popularity, result.compared_with_popularity) == (3, 3)
    assert result.beats_popularity_share == 1.0
    # spans 2-4 have both: deployed (0.21 + 0.23 + 0.25) / 3 = 0.23, frozen (0.21 + 0.19 + 0.17) / 3 = 0.19
    assert result.both_served_spans == 3
    assert result.mean_deployed == pytest.approx(0.23)
    assert result.mean_frozen == pytest.approx(0.19)
    assert result.blessed_spans == 2
    # wall: 120 + 100 + 80 + 100 = 400 s, mean 100 s; Trainer: 60 + 40 + 20 + 40 = 160 s, 40%
    assert result.total_wall_seconds == pytest.approx(400.0)
    assert result.mean_wall_seconds == pytest.approx(100.0)
    assert result.trainer_seconds == pytest.approx(160.0)
    assert result.trainer_share == pytest.approx(0.4)


def test_summary_counts_only_served_spans_and_spans_both_served():
    entries = [
        _entry(1, None, 0.20, None, 0.10),  # not served: never counted against popularity
        _entry(2, 0.09, 0.22, None, 0.11),  # served, loses to popularity; no frozen model yet
        _entry(3, 0.30, 0.26, 0.20, 0.12),  # served, beats popularity
        _entry(4, 0.12, 0.25, 0.16, 0.12),  # a tie is not a win
        _entry(5, 0.40, 0.25, 0.10, 0.12, baselines_top_100={"ease": 0.3}),  # no popularity: not compared
    ]
    result = timeline.summary(entries)
    assert (result.served_spans, result.compared_with_popularity, result.deployed_beats_popularity) == (4, 3, 1)
    assert result.beats_popularity_share == pytest.approx(1 / 3)
    # both served: spans 3, 4, 5 -> deployed (0.30 + 0.12 + 0.40) / 3, frozen (0.20 + 0.16 + 0.10) / 3
    assert result.both_served_spans == 3
    assert result.mean_deployed == pytest.approx(0.82 / 3)
    assert result.mean_frozen == pytest.approx(0.46 / 3)

    empty = timeline.summary([])
    assert (empty.spans, empty.served_spans, empty.total_wall_seconds) == (0, 0, 0.0)
    assert empty.beats_popularity_share is None and empty.mean_deployed is None and empty.mean_wall_seconds is None
    assert empty.trainer_share is None


def test_the_markdown_has_one_row_per_span_and_the_summary_figures():
    text = timeline.markdown(_replay())
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows == [
        "| 1 | 0 | - | 0.2000 | - | 0.1000 | recent_popularity 0.1100 | - | - | yes | 1700000001 | 0 | 2 min 00 s |",
        "| 2 | 0-1 | 0.2100 | 0.2200 | 0.2100 | 0.1100 | recent_popularity 0.1200 | - | - | no | - | 1 | 1 min 40 s |",
        "| 3 | 0-2 | 0.2300 | 0.2600 | 0.1900 | 0.1200 | recent_popularity 0.1300 | - | - | yes | 1700000003 | 0 | 1 min 20 s |",
        "| 4 | 1-3 | 0.2500 | 0.2500 | 0.1700 | 0.1300 | recent_popularity 0.1400 | - | - | no | - | 2 | 1 min 40 s |",
    ]
    assert "The deployed model beats popularity on 3 of 3 served spans (100%)." in text
    assert "Over the 3 spans both served: mean top-100 accuracy 0.2300 deployed vs 0.1900 frozen (+0.0400)." in text
    assert "Wall time: 6 min 40 s in total, 1 min 40 s per span; 40% of it in the Trainer (RetrievalTrainer, 2 min 40 s)." in text
    assert "Blessed: 2 of 4 candidates." in text
    assert f"]({timeline.PLOT_FILE})" in text
    assert "- span 4: user_id: 12% unseen ids > 10%" in text  # the drift findings, listed


def test_the_markdown_before_anything_was_served():
    text = timeline.markdown([_entry(1, None, 0.2, None, 0.1)])
    assert "No served span to compare with popularity" in text
    assert "No span with both a deployed and a frozen model yet." in text
    assert "## Drift" not in text


def _png_size(path):
    with open(path, "rb") as f:
        header = f.read(24)
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


def test_write_makes_the_three_files_and_a_960_by_540_png(tmp_path):
    output = tmp_path / "replay"
    timeline.write(str(output), _replay())
    assert sorted(os.listdir(output)) == sorted([timeline.JSON_FILE, timeline.MARKDOWN_FILE, timeline.PLOT_FILE])
    assert _png_size(output / timeline.PLOT_FILE) == (960, 540)
    assert (output / timeline.MARKDOWN_FILE).read_text() == timeline.markdown(_replay())

    timeline.write(str(output), [])  # before the first span: still a valid plot
    assert _png_size(output / timeline.PLOT_FILE) == (960, 540)
    assert timeline.read(str(output)) == []


def test_resume_done_spans_and_a_rerun_span_replaces_its_entry(tmp_path):
    entries = _replay()
    assert timeline.read(str(tmp_path)) == []  # nothing recorded yet
    timeline.write(str(tmp_path), entries[:2])
    assert timeline.done_spans(timeline.read(str(tmp_path))) == {1, 2}

    # Span 2 ran again after a crash: its new entry replaces the old one, whichever way the caller adds it.
    rerun = _entry(2, 0.21, 0.24, 0.21, 0.11, blessed=True, pushed_version="1700000002", serving_version="1700000002")
    written = timeline.write(str(tmp_path), [*timeline.read(str(tmp_path)), rerun, entries[2]])
    assert [e.span for e in written] == [1, 2, 3]
    assert timeline.read(str(tmp_path))[1] == rerun
    assert timeline.record(str(tmp_path), entries[3])[-1] == entries[3]
    assert timeline.done_spans(timeline.read(str(tmp_path))) == {1, 2, 3, 4}
    assert timeline.read(str(tmp_path))[1].candidate_top_100 == 0.24
    assert "| 2 | 0-1 | 0.2100 | 0.2400 |" in (tmp_path / timeline.MARKDOWN_FILE).read_text()


def test_a_failing_plot_leaves_timeline_json_complete(tmp_path, monkeypatch):
    entries = _replay()
    timeline.write(str(tmp_path), entries[:3])
    png_before = (tmp_path / timeline.PLOT_FILE).read_bytes()

    def broken_plot(entries, out):
        out.write(b"\x89PNG half a picture")
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(timeline, "plot", broken_plot)
    with pytest.raises(RuntimeError, match="rendering failed"):
        timeline.write(str(tmp_path), entries)
    # The json was written first and completely: span 4 is recorded, a resumed replay will not run it again.
    assert timeline.read(str(tmp_path)) == entries
    # The png is the previous one, never the half-written picture; no temporary file is left.
    assert (tmp_path / timeline.PLOT_FILE).read_bytes() == png_before
    assert sorted(os.listdir(tmp_path)) == sorted([timeline.JSON_FILE, timeline.MARKDOWN_FILE, timeline.PLOT_FILE])


def test_a_failing_json_write_leaves_the_previous_timeline(tmp_path, monkeypatch):
    entries = _replay()
    timeline.write(str(tmp_path), entries[:2])
    before = (tmp_path / timeline.JSON_FILE).read_text()

    def no_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(timeline.os, "fsync", no_disk)  # after the temporary file is written, before os.replace
    with pytest.raises(OSError, match="No space left"):
        timeline.write(str(tmp_path), entries)
    assert (tmp_path / timeline.JSON_FILE).read_text() == before
    assert timeline.done_spans(timeline.read(str(tmp_path))) == {1, 2}
    assert sorted(os.listdir(tmp_path)) == sorted([timeline.JSON_FILE, timeline.MARKDOWN_FILE, timeline.PLOT_FILE])

    monkeypatch.undo()
    with pytest.raises(ValueError, match="JSON compliant"):  # NaN is not JSON: nothing is written
        timeline.write(str(tmp_path), [*entries, _entry(5, float("nan"), 0.2, 0.2, 0.1)])
    assert (tmp_path / timeline.JSON_FILE).read_text() == before


def test_read_refuses_a_timeline_it_cannot_resume_from(tmp_path):
    path = tmp_path / timeline.JSON_FILE
    path.write_text(json.dumps({"format_version": 99, "entries": []}))
    with pytest.raises(UserError, match="format_version 99"):
        timeline.read(str(path))
    path.write_text('{"format_version": 1, "entries": [{"span"')  # a file cut short (not written by this module)
    with pytest.raises(UserError, match="start the replay over"):
        timeline.read(str(path))


@pytest.mark.parametrize("seconds, text", [(42.04, "42.0 s"), (185, "3 min 05 s"), (3725, "1 h 02 min")])
def test_duration(seconds, text):
    assert timeline.duration(seconds) == text
