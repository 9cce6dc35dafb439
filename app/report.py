"""The side-by-side report: report.json, report.md, top_k.png and the terminal table.

report.json also records the job's effective config (CONFIG_KEY; read back by recorded_config).

Rows: every baseline (components.baselines), then every model variant.
Accuracies are keyed by k; `trainer.config.top_k_label` formats them.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

from core.comparison import DEFAULT_CONFIDENCE
from trainer.config import top_k_label

JSON_FILE = "report.json"
# The key of report.json that records the job's effective config (PipelineConfig.to_dict).
CONFIG_KEY = "pipeline_config"
MARKDOWN_FILE = "report.md"
PLOT_FILE = "top_k.png"
_NAME = 18  # width of the model column


def _ks(result: Dict) -> List[int]:
    return sorted({k for accuracies in result["baselines"].values() for k in accuracies})


def _rows(result: Dict):
    """(name, {k: accuracy}, blessed, pushed to) for each baseline, then each model."""
    for name, accuracies in result["baselines"].items():
        yield name, accuracies, "-", "-"
    for name, model in result["models"].items():
        yield name, model.get("eval", {}), "yes" if model.get("blessed") else "no", model.get("pushed_to") or "-"


def table(result: Dict) -> str:
    """The plain-text table printed at the end of a run."""
    ks = _ks(result)
    header = f"{'model':<{_NAME}}" + "".join(f"{top_k_label(k):>9}" for k in ks) + f"  {'blessed':<8} pushed to"
    lines = [header, "-" * len(header)]
    for name, accuracy, blessed, pushed in _rows(result):
        values = "".join(f"{accuracy[k]:>9.4f}" if k in accuracy else f"{'n/a':>9}" for k in ks)
        lines.append(f"{name:<{_NAME}}{values}  {blessed:<8} {pushed}")
    lines.extend(_decisions(result))
    return "\n".join(lines)


def gate_rule(gate: Dict) -> str:
    """The gate in one sentence."""
    level = f"{gate.get('confidence', DEFAULT_CONFIDENCE):.0%}"
    floor = f"eval top-{gate['k']} accuracy >= {gate['value_floor']:.4f} (value floor: {gate['value_floor_from']})"
    if gate["value_floor_from"] == "best baseline":
        floor += f" with the {level} interval of the gain over it above 0"
    noise = gate.get("training_noise") or 0.0
    how = f"users resampled, training noise {noise:.4f}" if noise else "users resampled"
    return (f"{floor}, and the {level} interval of the gain over the latest blessed model above "
            f"{gate['min_improvement']} ({how})")


def comparison_lines(name: str, comparisons: Dict, floor_baseline: Optional[str] = None) -> List[str]:
    """"timestamp vs the latest blessed model: not distinguishable: +0.0022 [-0.0033, +0.0086]", ..."""
    against = {"blessed_model": "the latest blessed model", "floor_baseline": floor_baseline or "the floor baseline"}
    return [f"{name} vs {against[key]}: {comparisons[key]['words']}" for key in against if key in comparisons]


def _decisions(result: Dict) -> List[str]:
    gate = result["gate"]
    lines = [f"gate: {gate_rule(gate)}"]
    for name, model in result["models"].items():
        if "blessed" not in model:
            continue
        lines += comparison_lines(name, model.get("comparisons") or {}, model.get("floor_baseline"))
        if model["blessed"]:
            lines.append(f"{name}: blessed and pushed")
        else:
            lines.append(f"{name}: not blessed: " + "; ".join(model.get("not_blessed_because") or ["see Evaluator output"]))
    return lines


def markdown(result: Dict) -> str:
    ks = _ks(result)
    data = result["dataset"]
    out = [
        "# MovieLens retrieval report",
        "",
        f"Data: `{data['path']}` ({data['layout']}), {data['ratings']} ratings, {data['movies']} catalog movies; "
        f"split `{result['split']}`: {data['train']} train / {data['eval']} eval; config `{result['config']}`.",
        "",
        "Eval top-k accuracy over the full catalog (TFMA; FactorizedTopK definition):",
        "",
        "| model | " + " | ".join(top_k_label(k) for k in ks) + " | blessed | pushed to |",
        "|---" * (len(ks) + 3) + "|",
    ]
    for name, accuracy, blessed, pushed in _rows(result):
        values = " | ".join(f"{accuracy[k]:.4f}" if k in accuracy else "n/a" for k in ks)
        out.append(f"| {name} | {values} | {blessed} | {pushed} |")
    if result.get("exclude_history"):
        out += ["", "Movies already in a rating's history (the user's most recent earlier ratings) are never "
                "recommended: excluded from the top-k of the models (Trainer, TFMA, serving) and of the baselines."]
    for note_name, note in result.get("baseline_notes", {}).items():
        out += ["", f"- {note_name}: {note}"]
    out += ["", *[f"- {line}" for line in _decisions(result)], "", f"![top-k accuracy]({PLOT_FILE})", ""]
    out += _slice_tables(result)
    if result.get("tensorboard_logdir"):
        out += [
            "## Training curves",
            "",
            "Loss per epoch and per step, learning rate, top-k accuracy on train and eval, "
            "for every variant side by side (runs `<execution>/<variant>/train` and `.../eval`):",
            "",
            "```sh",
            tensorboard_command(result),
            "```",
            "",
        ]
    return "\n".join(out)


def _slice_tables(result: Dict) -> List[str]:
    """One table per model: TFMA's top-k accuracy by slice (user known in train, history length)."""
    from app.results import accuracies

    out = []
    for name, model in result["models"].items():
        slices = model.get("eval_slices")
        if not slices:
            continue
        rows = [(entry["slice"], entry["candidate"].get("example_count"), accuracies(entry["candidate"]),
                 entry.get("comparisons") or {}) for entry in slices]
        ks = sorted({k for _, _, accuracy, _ in rows for k in accuracy})
        compared = [key for key in ("blessed_model", "floor_baseline") if any(key in c for *_, c in rows)]
        titles = {"blessed_model": "vs the latest blessed model",
                  "floor_baseline": f"vs {model.get('floor_baseline') or 'the floor baseline'}"}
        out += [f"### {name}: eval top-k accuracy by slice", "",
                "| slice | eval ratings | " + " | ".join([top_k_label(k) for k in ks] + [titles[c] for c in compared])
                + " |", "|---" * (len(ks) + len(compared) + 2) + "|"]
        for slice_name, count, accuracy, comparisons in rows:
            values = " | ".join([f"{accuracy[k]:.4f}" if k in accuracy else "n/a" for k in ks]
                                + [comparisons[c]["words"] if c in comparisons else "n/a" for c in compared])
            out.append(f"| {slice_name} | {int(count) if count is not None else 'n/a'} | {values} |")
        out.append("")
    return out


def tensorboard_command(result: Dict) -> str:
    """The command that shows every variant's training curves in TensorBoard."""
    return f"tensorboard --logdir {result['tensorboard_logdir']}"


def plot(result: Dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = _ks(result)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, accuracy, _, _ in _rows(result):
        if accuracy:
            ax.plot(ks, [accuracy.get(k) for k in ks], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("k")
    ax.set_ylabel("eval top-k accuracy")
    ax.set_title(f"MovieLens retrieval ({result['split']} split, {result['config']} config)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def recorded_config(output_dir: str) -> Optional[Dict]:
    """The job's effective config (PipelineConfig.to_dict) as `output_dir`'s report.json records it; None
    without a readable report.json, or with one written before the config was recorded."""
    try:
        with open(os.path.join(output_dir, JSON_FILE)) as f:
            recorded = json.load(f).get(CONFIG_KEY)
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, dict) else None


def write(result: Dict, output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, JSON_FILE), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(output_dir, MARKDOWN_FILE), "w") as f:
        f.write(markdown(result))
    plot(result, os.path.join(output_dir, PLOT_FILE))
