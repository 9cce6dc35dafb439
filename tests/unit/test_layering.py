"""Packages by where code runs: model code imports nothing of the orchestration or the application."""

import subprocess
import sys


def test_trainer_transform_and_the_tfma_metric_load_without_pipeline_or_app():
    code = (
        "import sys, trainer.task, trainer.tfma_metric, transform.preprocessing\n"
        "import trainer.families.tutorial, trainer.families.history\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('pipeline', 'app', 'components'))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
