"""How each component's cost grows with the number of ratings: exponents from runs at several sizes.

  python bench/pipeline_bench.py --synthetic 100000 --configs default --json growth-100k.json
  python bench/pipeline_bench.py --synthetic 1000000 --configs default --json growth-1m.json
  python bench/pipeline_bench.py --synthetic 10000000 --configs default --json growth-10m.json
  python bench/growth.py growth-100k.json growth-1m.json growth-10m.json [--config default] [--plot growth.png]

Results on the same data (the same "data" directory) are one size: a `--to Transform,Baselines` run
and a rerun of its output directory (`--output DIR`, which takes the data components from TFX's cache)
give each component's timing from the run that ran it, not the cached one (merge_runs).

For each component the runs share (the seconds of the variants every run has
added: both, the cost of one run of the main job; the baseline variant alone
when a run used `pipeline_bench.py --to`, which also stops early) it fits seconds = a * ratings ** b by least squares on log-log
axes and prints b, the growth exponent (1: linear; a fixed cost: 0), and the
fit's extrapolation to ml-25m's 25M and to 1B ratings. The extrapolation is
only as good as the fit's range: it names what would dominate, not a time to
plan a cluster on. With --plot it draws the points and fits (log-log).
"""

import argparse
import json
import math
from typing import Dict, List, Sequence, Tuple

MIN_SECONDS = 1.0  # a component's row needs this much at one size at least
EXTRAPOLATE = (("ml-25m", 25_000_000), ("1B", 1_000_000_000))


def fit_power_law(sizes: Sequence[float], costs: Sequence[float]) -> Tuple[float, float]:
    """(a, b) of cost = a * size ** b, least squares on log-log axes; needs two sizes or more."""
    if len(sizes) != len(costs) or len(set(sizes)) < 2:
        raise ValueError("a growth exponent needs costs at two sizes or more")
    xs = [math.log(s) for s in sizes]
    ys = [math.log(max(c, 1e-9)) for c in costs]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return math.exp(my - b * mx), b


def merge_runs(results: List[Dict]) -> List[Dict]:
    """Results on the same data as one result per size: the rating count of the run that generated the
    data, and each component's timing from the run whose state for it is not "cached" (the first such
    run, in the order given; a component every run took from the cache keeps the first cached timing)."""
    by_data: Dict[str, List[Dict]] = {}
    for result in results:
        by_data.setdefault(result.get("data") or f"#{len(by_data)}", []).append(result)
    merged = []
    for runs in by_data.values():
        counts = {r["ratings"] for r in runs if r.get("ratings")}
        if len(counts) > 1:
            raise ValueError(f"results on the same data disagree on its rating count: {sorted(counts)}")
        configs: Dict[str, Dict] = {}
        for config in {name for r in runs for name in r["configs"]}:
            timings: Dict[str, Dict[str, Dict]] = {}
            for run in runs:
                for variant, rows in run["configs"].get(config, {}).get("timings", {}).items():
                    kept = timings.setdefault(variant, {})
                    for t in rows:
                        if t["component"] not in kept or (kept[t["component"]].get("state") == "cached"
                                                          and t.get("state") != "cached"):
                            kept[t["component"]] = t
            configs[config] = {"timings": {v: list(rows.values()) for v, rows in timings.items()}}
        merged.append({**runs[0], "ratings": counts.pop() if counts else None, "configs": configs})
    return merged


def shared_variants(results: List[Dict], config: str) -> List[str]:
    """The variants (baseline, timestamp) whose timings every result has."""
    variants = [set(r["configs"][config]["timings"]) for r in results]
    return sorted(set.intersection(*variants))


def component_costs(result: Dict, config: str, variants: Sequence[str]) -> Dict[str, float]:
    """{component: seconds of `variants`' runs added} from one pipeline_bench --json result."""
    costs: Dict[str, float] = {}
    for variant in variants:
        for t in result["configs"][config]["timings"][variant]:
            costs[t["component"]] = costs.get(t["component"], 0.0) + t["seconds"]
    return costs


def growth_table(results: List[Dict], config: str) -> List[Dict]:
    """One row per component (and "total"): the costs by size, the exponent and the extrapolations."""
    results = sorted(merge_runs(results), key=lambda r: r["ratings"])
    sizes = [r["ratings"] for r in results]
    variants = shared_variants(results, config)
    per_size = [component_costs(r, config, variants) for r in results]
    rows = []
    # The components every run has (a run with pipeline_bench --to stops early); "total" is their sum.
    names = [name for name in per_size[-1] if all(name in costs for costs in per_size)]
    per_size_total = [sum(costs[n] for n in names) for costs in per_size]
    # Components under MIN_SECONDS at every size are timer noise (0.0 s one run, 0.03 s the next): left out
    # of the rows (their exponents mean nothing), counted in the total.
    shown = [n for n in names if max(c[n] for c in per_size) >= MIN_SECONDS]
    for name, costs in [(n, [c[n] for c in per_size]) for n in shown] + [("total", per_size_total)]:
        a, b = fit_power_law(sizes, costs)
        rows.append({"component": name, "seconds": costs, "exponent": b, "variants": variants,
                     "extrapolated": {label: a * n ** b for label, n in EXTRAPOLATE}})
    return rows


def _variants_label(rows: List[Dict]) -> str:
    variants = rows[0]["variants"]
    return "both variants" if len(variants) == 2 else f"{' and '.join(variants)} variant"


def print_table(rows: List[Dict], sizes: Sequence[int]) -> None:
    head = "".join(f"{f'{n:,}':>13}" for n in sizes)
    tail = "".join(f"{label:>13}" for label, _ in EXTRAPOLATE)
    print(f"{'component (s, ' + _variants_label(rows) + ')':<30}{head} {'exponent':>9}{tail}")
    for row in rows:
        cells = "".join(f"{s:>13.1f}" for s in row["seconds"])
        extra = "".join(f"{row['extrapolated'][label]:>13,.0f}" for label, _ in EXTRAPOLATE)
        print(f"{row['component']:<30}{cells} {row['exponent']:>9.2f}{extra}")


def plot(rows: List[Dict], sizes: Sequence[int], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for row in rows:
        ax.plot(sizes, row["seconds"], marker="o", label=f"{row['component']} (b = {row['exponent']:.2f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("ratings")
    ax.set_ylabel(f"seconds ({_variants_label(rows)})")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", nargs="+", help="pipeline_bench.py --json files: one per size, or several runs "
                        "on the same data (merged)")
    parser.add_argument("--config", default="default")
    parser.add_argument("--plot", metavar="PNG")
    args = parser.parse_args()
    results = []
    for path in args.results:
        with open(path) as f:
            results.append(json.load(f))
    merged = merge_runs(results)  # once; growth_table's own merge of merged results changes nothing
    for result in merged:
        if not result.get("ratings"):
            parser.error(f"{result.get('data')}: no rating count (one of its runs needs pipeline_bench.py "
                         "--synthetic N --json FILE)")
    rows = growth_table(merged, args.config)
    sizes = sorted(r["ratings"] for r in merged)
    print_table(rows, sizes)
    if args.plot:
        plot(rows, sizes, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
