"""The side-by-side report: report.json, report.md, top_k.png and the terminal table."""

from __future__ import annotations

import json
import os
from typing import Dict, List

from pipeline.config import VARIANTS

JSON_FILE = "report.json"
MARKDOWN_FILE = "report.md"
PLOT_FILE = "top_k.png"
MODEL_ORDER = ("popularity", *VARIANTS)


def _ks(result: Dict) -> List[str]:
    pop = result["models"]["popularity"]["eval"]
    return sorted(pop, key=lambda name: int(name.split("_")[1]))


def _rows(result: Dict):
    for name in MODEL_ORDER:
        model = result["models"].get(name)
        if model is None:
            continue
        blessed = "-" if name == "popularity" else ("yes" if model.get("blessed") else "no")
        yield name, model.get("eval", {}), blessed, model.get("pushed_to") or "-"


def table(result: Dict) -> str:
    """The plain-text table printed at the end of a run."""
    ks = _ks(result)
    header = f"{'model':<11}" + "".join(f"{k:>9}" for k in ks) + f"  {'blessed':<8} pushed to"
    lines = [header, "-" * len(header)]
    for name, accuracy, blessed, pushed in _rows(result):
        values = "".join(f"{accuracy[k]:>9.4f}" if k in accuracy else f"{'n/a':>9}" for k in ks)
        lines.append(f"{name:<11}{values}  {blessed:<8} {pushed}")
    lines.extend(_decisions(result))
    return "\n".join(lines)


def _decisions(result: Dict) -> List[str]:
    gate = result["gate"]
    lines = [f"gate: eval top-100 accuracy >= {gate['value_floor']:.4f} (value floor) and "
             f"> latest blessed model + {gate['min_improvement']}"]
    for name in MODEL_ORDER[1:]:
        model = result["models"].get(name)
        if model is None or "blessed" not in model:
            continue
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
        "| model | " + " | ".join(ks) + " | blessed | pushed to |",
        "|---" * (len(ks) + 3) + "|",
    ]
    for name, accuracy, blessed, pushed in _rows(result):
        values = " | ".join(f"{accuracy[k]:.4f}" if k in accuracy else "n/a" for k in ks)
        out.append(f"| {name} | {values} | {blessed} | {pushed} |")
    out += ["", *[f"- {line}" for line in _decisions(result)], "", f"![top-k accuracy]({PLOT_FILE})", ""]
    return "\n".join(out)


def plot(result: Dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = _ks(result)
    xs = [int(k.split("_")[1]) for k in ks]
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, accuracy, _, _ in _rows(result):
        if accuracy:
            ax.plot(xs, [accuracy.get(k) for k in ks], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("k")
    ax.set_ylabel("eval top-k accuracy")
    ax.set_title(f"MovieLens retrieval ({result['split']} split, {result['config']} config)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write(result: Dict, output_dir: str) -> None:
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, JSON_FILE), "w") as f:
        json.dump(result, f, indent=2)
    with open(os.path.join(output_dir, MARKDOWN_FILE), "w") as f:
        f.write(markdown(result))
    plot(result, os.path.join(output_dir, PLOT_FILE))
