"""Trainer wall time and peak memory for both named configs on ml-100k.

  python bench/trainer_bench.py [--data ../shared/data/ml-100k] [--configs tutorial,default]

Each config runs the whole pipeline (both variants) cold in its own process and
prints, per variant: Trainer wall time (component), training time (fit only),
eval top-100, and the process's peak RSS.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def run_one(config_name: str, data: str) -> dict:
    from pipeline.config import named_config
    from pipeline.job import run_job
    from pipeline.logs import quiet_logs

    output = tempfile.mkdtemp(prefix=f"bench-{config_name}-")
    with quiet_logs(os.path.join(output, "run.log")):
        result = run_job(named_config(config_name, data_path=data, output_dir=output))
    rows = {}
    for variant in ("baseline", "timestamp"):
        trainer = next(t for t in result["timings"][variant] if t["component"] == "RetrievalTrainer")
        rows[variant] = {
            "trainer_seconds": trainer["seconds"],
            "fit_seconds": result["models"][variant]["train_seconds"],
            "eval_top_100": round(result["models"][variant]["eval"]["top_100"], 4),
        }
    rows["pipeline_seconds"] = result["wall_seconds"]
    rows["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "ml-100k"))
    parser.add_argument("--configs", default="tutorial,default")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.data)))
        return
    print(f"{'config':<10} {'variant':<10} {'trainer s':>10} {'fit s':>8} {'top-100':>8} {'pipeline s':>11} {'peak RSS MB':>12}")
    for name in args.configs.split(","):
        out = subprocess.run([sys.executable, __file__, "--data", args.data, "--one", name],
                             capture_output=True, text=True, check=True)
        rows = json.loads(out.stdout.strip().splitlines()[-1])
        for variant in ("baseline", "timestamp"):
            r = rows[variant]
            print(f"{name:<10} {variant:<10} {r['trainer_seconds']:>10.1f} {r['fit_seconds']:>8.1f} "
                  f"{r['eval_top_100']:>8.4f} {rows['pipeline_seconds']:>11.1f} {rows['peak_rss_mb']:>12}")


if __name__ == "__main__":
    main()
