"""Benchmarks of the whole pipeline (both models), cold, on this machine.

  python bench/pipeline_bench.py [--data DIR] [--configs tutorial,default] [--script]
  python bench/pipeline_bench.py --synthetic 1000000 [--configs default]
  python bench/pipeline_bench.py --synthetic 10000000 --configs default \
      --set epochs=3 --set batch_size=4096 --train-fraction 0.95

For each config, in a fresh process and a fresh output directory, it runs the
main job (baseline then timestamp model) and prints per-component wall time
(and the process's peak RSS when the component ended), the Trainer's time,
total wall time (and the CPU time it used: a steadier figure on a shared
machine), peak RSS and eval top-100 accuracies. With --script it also
runs bench/tutorial_script.py (the tutorial as a plain TFRS script) on the
same data and prints the ratio pipeline (tutorial config) / script.
With --synthetic N it first generates about N ratings (`synthetic.at_scale`:
ml-1m layout, N/160 users, N/270 movies, users rating in sessions). --set and
--train-fraction, --split and --beam-workers change the config as they do for
`movielens-tfx run`. --to NODE[,NODE] runs the baseline variant only up to those
components (e.g. `--to Transform,Baselines`: the data components alone, at a scale
whose Trainer would not fit the time). --output DIR runs in DIR instead of a fresh
directory, so a second run there takes the components whose inputs have not
changed from TFX's cache (state "cached"): e.g. the Trainer and Evaluator measured
after a `--to Transform` run of the same data and config. --json FILE keeps the figures for bench/growth.py (each
component's cost against the number of ratings, log-log).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import core  # noqa: E402,F401  (Keras 2 before TensorFlow loads)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(config_name: str, data: str, train_fraction: float, overrides: list, beam_workers: int,
            split=None, to_node=None, output=None) -> dict:
    from app.cli import model_overrides
    from app.job import run_job
    from app.logs import quiet_logs
    from pipeline.config import VARIANTS, named_config

    output = output or tempfile.mkdtemp(prefix=f"bench-{config_name}-")
    config = named_config(config_name, data_path=data, output_dir=output, train_fraction=train_fraction, split=split,
                          beam_workers=beam_workers)
    config = config.with_model(**model_overrides(overrides))
    if to_node:
        return run_to(config, to_node, output)
    cpu = _cpu_seconds()
    with quiet_logs(os.path.join(output, "run.log")):
        result = run_job(config, progress=_progress)
    cpu = _cpu_seconds() - cpu
    return {
        "timings": result["timings"],
        "eval_top_100": {v: result["models"][v]["eval"][100] for v in VARIANTS},
        "popularity_top_100": result["baselines"]["popularity"][100],
        "wall_seconds": result["wall_seconds"],
        "cpu_seconds": round(cpu, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "output": output,
    }


def run_to(config, to_node: str, output: str) -> dict:
    """The baseline variant's run up to the components of `to_node` (comma-separated) and no further (e.g. the
    data components at a scale whose Trainer would not fit the time): timings in run_one's shape, no accuracies."""
    import time

    from app.logs import quiet_logs
    from pipeline.local_runner import run_pipeline

    cpu, started = _cpu_seconds(), time.time()
    with quiet_logs(os.path.join(output, "run.log")):
        timings = run_pipeline(config.with_model(use_timestamps=False), progress=_progress, to_nodes=to_node.split(","))
    return {
        "timings": {"baseline": timings},
        "wall_seconds": round(time.time() - started, 1),
        "cpu_seconds": round(_cpu_seconds() - cpu, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "to": to_node,
        "output": output,
    }


def _progress(line: str) -> None:
    """Each component as it starts and ends, on the child's stdout, which the parent echoes to stderr as it
    comes: a long run shows where it is, and a failed one what had finished and in how long."""
    print(f"  {line}", flush=True)


def _child(args: list) -> dict:
    """Runs this script (or another bench script) in a fresh process; its last stdout line is its JSON result."""
    lines = []
    with subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True) as child:
        for line in child.stdout:
            lines.append(line)
            if not line.startswith("{"):
                print(line, end="", file=sys.stderr, flush=True)
    if child.returncode != 0 or not lines:
        sys.exit(f"benchmark child failed (exit {child.returncode}); what it printed is above")
    return json.loads(lines[-1])


def print_config(name: str, rows: dict) -> None:
    print(f"\n== config {name}: pipeline, {'the baseline model up to ' + rows['to'] if 'to' in rows else 'both models'}"
          ", cold")
    # The process's peak RSS when the component ended, in each run (the
    # timestamp run's upstream components are cached: their peak is the one
    # the process had reached by then).
    print(f"{'component':<28} {'baseline s':>11} {'timestamp s':>12} {'CPU s, both':>12} "
          f"{'peak RSS MB, baseline / timestamp run':>38}")
    second = {t["component"]: t for t in rows["timings"].get("timestamp", [])}
    for t in rows["timings"]["baseline"]:
        other = second.get(t["component"], {})
        cpu = t.get("cpu_seconds", 0) + other.get("cpu_seconds", 0)
        print(f"{t['component']:<28} {t['seconds']:>11.1f} {other.get('seconds', 0):>12.1f} {cpu:>12.1f} "
              f"{t['peak_rss_mb']:>26} / {other.get('peak_rss_mb', 0):>9}")
    if "to" in rows:
        print(f"total wall time {rows['wall_seconds']:.1f} s (CPU {rows['cpu_seconds']:.1f} s), peak RSS "
              f"{rows['peak_rss_mb']} MB; the baseline variant's run up to {rows['to']} only")
        return
    top = rows["eval_top_100"]
    print(f"total wall time {rows['wall_seconds']:.1f} s (CPU {rows['cpu_seconds']:.1f} s), peak RSS {rows['peak_rss_mb']} MB; "
          "eval top-100: "
          f"baseline {top['baseline']:.4f}, timestamp {top['timestamp']:.4f} (popularity {rows['popularity_top_100']:.4f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.path.join(HERE, "..", "..", "shared", "data", "ml-100k"))
    parser.add_argument("--configs", default="tutorial,default")
    parser.add_argument("--script", action="store_true", help="also run the plain tutorial script and compare")
    parser.add_argument("--synthetic", type=int, default=0, help="generate this many ratings and use them")
    parser.add_argument("--train-fraction", type=float, default=0.8)
    parser.add_argument("--split", default=None, help="random or temporal (default: each config's own)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model config override")
    parser.add_argument("--beam-workers", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="also write the results (and the rating count) to FILE, "
                        "for bench/growth.py")
    parser.add_argument("--to", metavar="NODE[,NODE]", help="run the baseline variant only up to these components "
                        "(e.g. Transform,Baselines: the data components alone)")
    parser.add_argument("--output", metavar="DIR", help="run in DIR (one config only): a rerun there takes unchanged "
                        "components from TFX's cache")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.data, args.train_fraction, args.set, args.beam_workers, args.split,
                                 args.to, args.output)))
        return
    if args.output and "," in args.configs:
        sys.exit("--output takes one config (--configs NAME): each config runs in its own directory")
    data = args.data
    ratings = None
    if args.synthetic:
        from movielens import synthetic

        n = args.synthetic
        data = synthetic.at_scale(tempfile.mkdtemp(prefix="bench-data-"), n)
        print(f"synthetic data: {n} ratings in {data}")
        ratings = n
    results = {}
    for name in args.configs.split(","):
        overrides = [f"--set={pair}" for pair in args.set]
        split = ["--split", args.split] if args.split else []
        results[name] = _child([__file__, "--data", data, "--train-fraction", str(args.train_fraction), *overrides, *split,
                                "--beam-workers", str(args.beam_workers), *(["--to", args.to] if args.to else []),
                                *(["--output", args.output] if args.output else []),
                                "--one", name])
        print_config(name, results[name])
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"ratings": ratings, "data": data, "beam_workers": args.beam_workers, "configs": results}, f, indent=1)
    if args.script:
        script = _child([os.path.join(HERE, "tutorial_script.py"), "--data", data])
        print(f"\n== the tutorial as a plain TFRS script: {script['wall_seconds']:.1f} s, peak RSS {script['peak_rss_mb']} MB; "
              f"test top-100: baseline {script['baseline']['test_top_100']:.4f}, timestamp {script['timestamp']['test_top_100']:.4f}")
        if "tutorial" in results:
            ratio = results["tutorial"]["wall_seconds"] / script["wall_seconds"]
            print(f"pipeline (tutorial config) / script wall time: {ratio:.2f}")


if __name__ == "__main__":
    main()
