"""report.html: one self-contained page to browse a run (open the file; no server).

Sections (element ids): `models` (models and baselines side by side, the top-k
plot inlined), `gate` (the gate's decisions and why), `slices` (the
Evaluator's metrics for every slice it computed), `data` (TFDV statistics of
train and eval, and ExampleValidator's anomalies), `examples` (ten
recommendations for a few users, with their recent history).

Everything is read back from what the pipeline recorded: the report
(app.job), StatisticsGen's and ExampleValidator's artifacts, RatingsExampleGen's
examples and the pushed model (or, when nothing was pushed, the latest trained
one). `gather` reads; `render` only formats.
"""

from __future__ import annotations

import base64
import datetime
import html
import os
import re
from typing import Dict, List, Optional, Tuple

from app import report
from components.serving_versions import latest_pushed_model
from trainer.config import top_k_label

HTML_FILE = "report.html"
# Example recommendations: this many users, top this many, history this long.
EXAMPLE_USERS = 3
EXAMPLE_TOP = 10
HISTORY = 10
_SPLITS = ("train", "eval")
_FACETS_NOTE = (
    "TFDV's own view (tfdv.get_statistics_html: Facets Overview, train and eval compared) loads "
    "its viewer from the internet (cdnjs.cloudflare.com, raw.githubusercontent.com), so it is shown on request."
)


# --- reading ---------------------------------------------------------------

def gather(result: Dict, config) -> Dict:
    """What the page shows beyond report.json: statistics, anomalies, example recommendations."""
    from app.results import latest_outputs, rating_splits

    statistics = latest_outputs(config, "StatisticsGen").get("statistics")
    anomalies = latest_outputs(config, "ExampleValidator").get("anomalies")
    examples = latest_outputs(config, "RatingsExampleGen").get("examples")
    splits = {name: [(artifact.uri, split) for artifact, split in parts]
              for name, parts in rating_splits(config).items()} if examples else None
    return {
        "statistics": _statistics(statistics[0].uri) if statistics else {},
        "anomalies": _anomalies(anomalies[0].uri) if anomalies else {},
        "recommendations": _recommendations(result, config, splits) if splits else None,
    }


def _split_file(uri: str, split: str, name: str) -> str:
    return f"{uri.rstrip('/')}/Split-{split}/{name}"


def _statistics(uri: str) -> Dict:
    import tensorflow as tf
    import tensorflow_data_validation as tfdv

    # A local span run's statistics have eval only (its span: the window's are from earlier runs).
    return {split: tfdv.load_stats_binary(_split_file(uri, split, "FeatureStats.pb")) for split in _SPLITS
            if tf.io.gfile.exists(_split_file(uri, split, "FeatureStats.pb"))}


def _anomalies(uri: str) -> Dict:
    import tensorflow as tf
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from components.data_gate import ANOMALIES_FILE

    out = {}
    for split in _SPLITS:
        path = _split_file(uri, split, ANOMALIES_FILE)
        if tf.io.gfile.exists(path):
            anomalies = anomalies_pb2.Anomalies()
            with tf.io.gfile.GFile(path, "rb") as f:
                anomalies.ParseFromString(f.read())
            out[split] = anomalies
    return out


def _serving_model(result: Dict, config) -> Optional[Dict]:
    """The pushed model's SavedModel (latest version), else the latest trained model's."""
    pushed = latest_pushed_model(config.model_serving_dir)
    if pushed is not None:
        return {"path": pushed, "pushed": True}
    for model in reversed(list(result["models"].values())):
        if model.get("model_uri"):
            return {"path": f"{model['model_uri'].rstrip('/')}/Format-Serving", "pushed": False}
    return None


def _ratings(parts: List[Tuple[str, str]], users=None) -> Dict:
    """user_id, movie_title, timestamp, user_rating of the splits `parts` ((examples URI, split) pairs; only
    `users`' when given), numpy arrays."""
    import numpy as np
    import tensorflow as tf

    spec = {
        "user_id": tf.io.FixedLenFeature([], tf.string),
        "movie_id": tf.io.FixedLenFeature([], tf.string),
        "movie_title": tf.io.FixedLenFeature([], tf.string),
        "timestamp": tf.io.FixedLenFeature([], tf.int64),
        "user_rating": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    }
    files = sorted(name for uri, split in parts for name in tf.io.gfile.glob(_split_file(uri, split, "*")))
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(65536).map(lambda b: tf.io.parse_example(b, spec))
    if users is not None:
        wanted = tf.constant(list(users))
        dataset = dataset.map(lambda b: {k: tf.boolean_mask(v, tf.reduce_any(
            tf.equal(b["user_id"][:, None], wanted[None, :]), axis=1)) for k, v in b.items()})
    parts = [{k: v.numpy() for k, v in batch.items()} for batch in dataset]
    if not parts:
        return {k: np.array([]) for k in spec}
    return {k: np.concatenate([p[k] for p in parts]) for k in spec}


def _recommendations(result: Dict, config, splits: Dict[str, List[Tuple[str, str]]]) -> Optional[Dict]:
    """Top EXAMPLE_TOP for the EXAMPLE_USERS users with the most eval ratings (ties: smallest id).

    Each is asked at the time of the user's first eval rating, with every
    train rating before it as the history (the model reads the most recent
    ones and never recommends any); the page shows the last HISTORY of them.
    A recommended title the user rated in eval is a hit.
    """
    import collections

    import tensorflow as tf

    model = _serving_model(result, config)
    if model is None:
        return None
    evaluation = _ratings(splits["eval"])
    counts = collections.Counter(evaluation["user_id"].tolist())
    users = sorted(counts, key=lambda u: (-counts[u], int(u) if u.isdigit() else 0, u))[:EXAMPLE_USERS]
    train = _ratings(splits["train"], users)
    serve = tf.saved_model.load(model["path"]).signatures["serving_default"]
    out = []
    for user in users:
        in_eval = evaluation["user_id"] == user
        at = int(evaluation["timestamp"][in_eval].min())
        mine = train["user_id"] == user
        rated = sorted(
            (int(t), movie, title.decode(), float(r))
            for t, movie, title, r in zip(train["timestamp"][mine], train["movie_id"][mine], train["movie_title"][mine],
                                          train["user_rating"][mine], strict=True)
            if t < at
        )[::-1]  # most recent first
        before = [(t, title, r) for t, _, title, r in rated[:HISTORY]]
        answer = serve(user_id=tf.constant([user]), timestamp=tf.constant([at], tf.int64),
                       history=tf.constant([[movie for _, movie, _, _ in rated]], tf.string, shape=[1, len(rated)]),
                       history_timestamps=tf.constant([[t for t, _, _, _ in rated]], tf.int64, shape=[1, len(rated)]))
        eval_titles = set(evaluation["movie_title"][in_eval].tolist())
        train_titles = set(train["movie_title"][mine].tolist())
        recs = []
        for title, score in zip(answer["movie_titles"][0, :EXAMPLE_TOP].numpy(), answer["scores"][0, :EXAMPLE_TOP].numpy(), strict=True):
            recs.append({"title": title.decode(), "score": round(float(score), 4),
                         "rated_in_eval": title in eval_titles, "rated_in_train": title in train_titles})
        out.append({"user_id": user.decode(), "timestamp": at, "eval_ratings": int(counts[user]),
                    "history": [{"timestamp": t, "title": title, "rating": r} for t, title, r in before],
                    "recommendations": recs})
    return {"model": model["path"], "pushed": model["pushed"], "users": out}


# --- rendering -------------------------------------------------------------

def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _natural(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _date(timestamp: int) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def _table(header: List[str], rows: List[List[str]], cls: str = "") -> str:
    """An HTML table; cells are HTML already."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _models_section(result: Dict, plot_png: Optional[bytes]) -> str:
    ks = report._ks(result)
    rows = []
    for name, accuracy, blessed, pushed in report._rows(result):
        kind = "baseline recommender" if name in result["baselines"] else "model"
        rows.append([f"<b>{_e(name)}</b>", kind,
                     *[f"{accuracy[k]:.4f}" if k in accuracy else "n/a" for k in ks], _e(blessed), f"<code>{_e(pushed)}</code>"])
    out = ["<h2>Models and baselines</h2>",
           "<p>Eval top-k accuracy over the full catalog (TFMA; the FactorizedTopK definition).</p>",
           _table(["model", "kind", *[top_k_label(k) for k in ks], "blessed", "pushed to"], rows, "numbers")]
    trainer_rows = [[f"<b>{_e(name)}</b>", *[f"{m.get(split, {}).get(k, float('nan')):.4f}" for k in ks]]
                    for name, m in result["models"].items() for split in ("train",) if m.get("train")]
    if trainer_rows:
        out += ["<p>The Trainer's own FactorizedTopK on a sample of the train split (over-fitting check):</p>",
                _table(["model", *[top_k_label(k) for k in ks]], trainer_rows, "numbers")]
    if plot_png:
        out.append(f'<img id="top-k-plot" alt="top-k accuracy" src="data:image/png;base64,{base64.b64encode(plot_png).decode()}">')
    if result.get("tensorboard_logdir"):
        out.append(f"<p>Training curves: <code>{_e(report.tensorboard_command(result))}</code></p>")
    return '<section id="models">' + "".join(out) + "</section>"


def _gate_section(result: Dict) -> str:
    gate = result["gate"]
    items = []
    for name, model in result["models"].items():
        if "blessed" not in model:
            items.append(f"<li><b>{_e(name)}</b>: not evaluated</li>")
            continue
        against = (f"compared with the latest blessed model <code>{_e(model['compared_with'])}</code>"
                   if model.get("compared_with") else "no blessed model yet: the floor alone decides")
        floor = model.get("value_floor")
        top = model.get("eval", {}).get(gate["k"])
        facts = f"top-{gate['k']} {top:.4f}" if top is not None else ""
        if floor is not None:
            facts += f", floor {floor:.4f}"
        if model["blessed"]:
            verdict = '<span class="ok">blessed</span>' + (f", pushed to <code>{_e(model['pushed_to'])}</code>"
                                                          if model.get("pushed_to") else ", not pushed")
            reasons = ""
        else:
            verdict = '<span class="bad">not blessed</span>'
            why = model.get("not_blessed_because") or ["see the Evaluator's output"]
            reasons = "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in why) + "</ul>"
        compared = report.comparison_lines(name, model.get("comparisons") or {}, model.get("floor_baseline"))
        comparisons = ('<ul class="comparisons">' + "".join(f"<li>{_e(line)}</li>" for line in compared) + "</ul>"
                       if compared else "")
        items.append(f"<li><b>{_e(name)}</b>: {verdict} ({facts}; {against}){comparisons}{reasons}</li>")
    rule = f"Blessed when {_e(report.gate_rule(gate))}."
    return f'<section id="gate"><h2>Gate</h2><p>{rule}</p><ul>{"".join(items)}</ul></section>'


def _slices_section(result: Dict) -> str:
    out = ["<h2>Evaluator: metrics per slice</h2>",
           "<p>TFMA's result for every slice of the eval config; Δ: against the latest blessed model.</p>"]
    for name, model in result["models"].items():
        slices = model.get("eval_slices") or []
        if not slices:
            continue
        names = sorted({metric for s in slices for metric in s["candidate"]}, key=_natural)
        rows = []
        for s in slices:
            cells = []
            for metric in names:
                value = s["candidate"].get(metric)
                cell = f"{value:.4f}" if value is not None else "n/a"
                if metric in s["diff"]:
                    cell += f' <span class="diff">(Δ {s["diff"][metric]:+.4f})</span>'
                cells.append(cell)
            compared = s.get("comparisons") or {}
            cells += [_e(compared[key]["words"]) if key in compared else "" for key in ("blessed_model", "floor_baseline")]
            rows.append([f"<code>{_e(s['slice'])}</code>", *cells])
        floor = model.get("floor_baseline") or "the floor baseline"
        out += [f"<h3>{_e(name)}</h3>", _table(["slice", *map(_e, names), "vs the latest blessed model",
                                                f"vs {_e(floor)}"], rows, "numbers slices")]
    return '<section id="slices">' + "".join(out) + "</section>"


def _feature_rows(statistics: Dict) -> List[List[str]]:
    """One row per feature: type, then count, missing, mean or unique, range or top value per split."""
    from tensorflow_metadata.proto.v0 import statistics_pb2

    def describe(feature):
        kind = feature.WhichOneof("stats")
        if kind == "num_stats":
            n = feature.num_stats
            common = n.common_stats
            return common, f"{n.mean:.4g} ± {n.std_dev:.3g}", f"{n.min:.6g} … {n.max:.6g}"
        if kind == "string_stats":
            st = feature.string_stats
            top = st.top_values[0] if st.top_values else None
            return st.common_stats, f"{st.unique} unique", (f"{_e(top.value)} ({top.frequency:.0f})" if top else "")
        return None, "", ""

    by_name: Dict[str, Dict] = {}
    for split, stats_list in statistics.items():
        for feature in stats_list.datasets[0].features:
            name = ".".join(feature.path.step) or feature.name
            by_name.setdefault(name, {"type": statistics_pb2.FeatureNameStatistics.Type.Name(feature.type)})[split] = (
                describe(feature), stats_list.datasets[0].num_examples)
    rows = []
    for name in sorted(by_name):
        row = [f"<code>{_e(name)}</code>", by_name[name]["type"]]
        for split in statistics:
            (common, center, spread), total = by_name[name].get(split, ((None, "", ""), 0))
            missing = f"{common.num_missing / total:.1%}" if common is not None and total else ""
            row += [str(common.num_non_missing) if common is not None else "", missing, _e(center), spread]
        rows.append(row)
    return rows


def _data_section(result: Dict, gathered: Dict) -> str:
    data = result["dataset"]
    out = ["<h2>Data</h2>",
           f"<p><code>{_e(data['path'])}</code> ({_e(data['layout'])}): {data['ratings']} ratings, {data['users']} users, "
           f"{data['movies']} catalog movies; split <code>{_e(result['split'])}</code>: {data['train']} train / {data['eval']} eval"
           + (f"; {data['quarantined_rows']} rows quarantined" if data.get("quarantined_rows") else "") + ".</p>"]
    statistics = gathered.get("statistics") or {}
    if statistics:
        import tensorflow_data_validation as tfdv

        sub = ["count", "missing", "mean / unique", "range / top value"]
        header = ["feature", "type", *[f"{split}: {h}" for split in statistics for h in sub]]
        out += ['<h3 id="statistics">TFDV statistics (StatisticsGen), ' + ' and '.join(statistics) + '</h3>',
                _table(header, _feature_rows(statistics), "numbers"),
                f'<p>{_e(_FACETS_NOTE)} <button id="show-facets" type="button">Show TFDV\'s Facets view</button></p>',
                '<div id="facets"></div><template id="facets-template">'
                + (tfdv.get_statistics_html(statistics["train"], statistics["eval"], lhs_name="train", rhs_name="eval")
                   if "train" in statistics else tfdv.get_statistics_html(statistics["eval"], lhs_name="eval"))
                + "</template>"]
    anomalies = gathered.get("anomalies") or {}
    out.append('<h3 id="anomalies">Anomalies (ExampleValidator, against the inferred schema)</h3>')
    if not anomalies:
        out.append("<p>No anomalies output.</p>")
    for split, found in anomalies.items():
        rows = [[f"<code>{_e(feature)}</code>", _e(info.short_description), _e(info.description)]
                for feature, info in sorted(found.anomaly_info.items())]
        if found.HasField("dataset_anomaly_info"):
            rows += [["(dataset)", "", _e(r.description)] for r in found.dataset_anomaly_info.reason]
        out.append(f"<h4>{_e(split)}</h4>" + (_table(["feature", "anomaly", "description"], rows) if rows
                                               else '<p class="ok">No anomalies.</p>'))
    return '<section id="data">' + "".join(out) + "</section>"


def _examples_section(gathered: Dict) -> str:
    recs = gathered.get("recommendations")
    out = ["<h2>Example recommendations</h2>"]
    if not recs:
        out.append("<p>No trained model to ask.</p>")
        return '<section id="examples">' + "".join(out) + "</section>"
    which = "the pushed model" if recs["pushed"] else "the latest trained model (nothing was pushed)"
    out.append(f"<p>From {which}, <code>{_e(recs['model'])}</code>, asked through its serving signature at the time of each "
               f"user's first eval rating; the users with the most eval ratings. <span class=\"hit\">hit</span>: the user "
               f"rated it in eval; <span class=\"seen\">seen</span>: in train.</p>")
    for user in recs["users"]:
        history = _table(["date", "rated", "title"], [[_date(h["timestamp"]), f"{h['rating']:g}", _e(h["title"])]
                                                    for h in user["history"]], "history")
        rows = []
        for rank, r in enumerate(user["recommendations"], start=1):
            tag = (' <span class="hit">hit</span>' if r["rated_in_eval"]
                   else ' <span class="seen">seen</span>' if r["rated_in_train"] else "")
            rows.append([str(rank), f"{r['score']:.4f}", _e(r["title"]) + tag])
        out.append(f'<div class="user"><h3>User {_e(user["user_id"])} at {_date(user["timestamp"])} '
                   f'({user["eval_ratings"]} eval ratings)</h3><div class="pair"><div><h4>Recent history</h4>{history}</div>'
                   f'<div><h4>Top {len(rows)}</h4>{_table(["#", "score", "title"], rows, "recs")}</div></div></div>')
    return '<section id="examples">' + "".join(out) + "</section>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } table.numbers td { font-variant-numeric: tabular-nums; }
.ok { color: #17692b; font-weight: bold; } .bad { color: #a3161b; font-weight: bold; }
.diff { color: #666; } .hit { background: #d8f3dc; padding: 0 0.3em; } .seen { background: #eee; padding: 0 0.3em; }
.pair { display: flex; gap: 2em; flex-wrap: wrap; } nav a { margin-right: 1em; }
img { max-width: 100%; } code { font-size: 0.9em; }
"""

_SCRIPT = """
document.getElementById('show-facets')?.addEventListener('click', () => {
  const box = document.getElementById('facets');
  box.innerHTML = document.getElementById('facets-template').innerHTML;
  box.querySelectorAll('script').forEach(old => {
    const script = document.createElement('script');
    script.textContent = old.textContent;
    old.replaceWith(script);
  });
});
"""


def render(result: Dict, gathered: Dict, plot_png: Optional[bytes] = None) -> str:
    """The page, as one HTML string (no external resource)."""
    data = result["dataset"]
    nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in
                  (("models", "Models"), ("gate", "Gate"), ("slices", "Slices"), ("data", "Data"), ("examples", "Examples")))
    body = [
        f"<h1>MovieLens retrieval report</h1><p>{data['ratings']} ratings ({_e(data['layout'])}), split "
        f"<code>{_e(result['split'])}</code>, config <code>{_e(result['config'])}</code>, "
        f"{result.get('wall_seconds', '?')} s.</p><nav>{nav}</nav>",
        _models_section(result, plot_png),
        _gate_section(result),
        _slices_section(result),
        _data_section(result, gathered),
        _examples_section(gathered),
    ]
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>MovieLens retrieval report</title>'
            f'<link rel="icon" href="data:,"><style>{_STYLE}</style></head><body>{"".join(body)}<script>{_SCRIPT}</script></body></html>')


def write(result: Dict, config) -> str:
    """Writes <output>/report.html (after report.write: it inlines the top-k plot); returns its path."""
    plot_path = os.path.join(config.output_dir, report.PLOT_FILE)
    plot_png = open(plot_path, "rb").read() if os.path.exists(plot_path) else None
    page = render(result, gather(result, config), plot_png)
    path = os.path.join(config.output_dir, HTML_FILE)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path
