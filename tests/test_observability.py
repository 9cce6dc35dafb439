"""What a user sees of a run: quiet commands (logs in a file, --verbose shows them).

One small run through the command line (both variants, fast settings) is shared
by the module's tests.
"""

import os
import re

import pytest

from components.movielens import synthetic

FAST = ["--config", "tutorial", "--set", "epochs=2", "--set", "batch_size=256", "--value-floor", "0"]
IMAGE = "us-docker.pkg.dev/p/r/movielens-tfx:1"
# What TensorFlow, absl, Beam and third-party libraries write to stderr.
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] "  # TensorFlow's C++ logging
    r"|^[IWEF]\d{4} \d\d:\d\d:\d\d"  # absl C++ logging
    r"|Warning\b|warnings\.warn|^(INFO|WARNING|ERROR):|absl|tensorflow|apache_beam|cuda|cuDNN|cuBLAS",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def run(tmp_path_factory, cli):
    tmp = tmp_path_factory.mktemp("observability")
    data = synthetic.generate(str(tmp / "data"), num_users=60, num_movies=150, num_ratings=3000, seed=6)
    out = str(tmp / "out")
    result = cli("run", "--data", data, "--output", out, *FAST, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"tmp": tmp, "out": out, "result": result}


def _quiet(result, what):
    noise = LOG_LINE.findall(result.stderr)
    assert result.stderr == "", f"{what} wrote to stderr ({len(noise)} log lines):\n{result.stderr[:3000]}"


def test_every_command_is_quiet_by_default_and_logs_to_a_file(run, cli, tmp_path):
    out = run["out"]
    _quiet(run["result"], "run")
    assert "report:" in run["result"].stdout
    run_log = open(os.path.join(out, "run.log")).read()
    assert LOG_LINE.search(run_log), "run.log has no TensorFlow / absl / warning lines"

    recommend = cli("recommend", "--user", "42", "--output", out)
    assert recommend.returncode == 0
    _quiet(recommend, "recommend")
    assert recommend.stdout.startswith("top 10 for user 42")
    assert LOG_LINE.search(open(os.path.join(out, "recommend.log")).read())

    spec = str(tmp_path / "spec" / "pipeline.json")
    compiled = cli("compile", "--target", "kubeflow", "--output", spec, "--image", IMAGE,
                   "--data", "gs://b/d", "--root", "gs://b/r")
    assert compiled.returncode == 0
    _quiet(compiled, "compile")
    assert os.path.getsize(tmp_path / "spec" / "compile.log") > 0

    submitted = cli("submit", "--spec", spec, "--project", "p", "--dry-run")
    assert submitted.returncode == 0
    _quiet(submitted, "submit")
    assert os.path.getsize(tmp_path / "spec" / "submit.log") > 0

    # A user error is one line on stderr, nothing else.
    missing = cli("recommend", "--user", "42", "--output", str(tmp_path / "nothing"))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1 and missing.stderr.startswith("error: no pushed model in ")


def test_verbose_shows_the_logs_and_still_writes_the_file(run, cli):
    log = os.path.join(run["out"], "recommend.log")
    before = os.path.getsize(log) if os.path.exists(log) else 0
    verbose = cli("recommend", "--user", "42", "--output", run["out"], "--verbose")
    assert verbose.returncode == 0
    assert LOG_LINE.search(verbose.stderr), verbose.stderr[:2000]
    assert verbose.stdout.startswith("top 10 for user 42")
    assert os.path.getsize(log) > before
