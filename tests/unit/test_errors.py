"""User-facing errors: one base class, found anywhere in a cause chain; bad settings stop before any component."""

import errno
import time

import pytest

from app import cli
from app.lock import OutputInUse
from components.data_gate import DataValidationError
from core.errors import ConfigError, UserError
from movielens.reader import DataError


@pytest.mark.parametrize("error_type", [DataError, DataValidationError, OutputInUse, ConfigError])
def test_every_user_facing_error_is_a_user_error(error_type):
    assert issubclass(error_type, UserError)


def test_user_error_is_found_in_the_cause_chain():
    try:
        try:
            raise DataError("u.data:3: rating 'x' is not a number")
        except DataError as inner:
            raise RuntimeError("component RatingsExampleGen failed") from inner
    except RuntimeError as outer:
        found = cli.user_error(outer)
    assert str(found) == "u.data:3: rating 'x' is not a number"


def test_storage_errors_become_cannot_write_messages(tmp_path):
    error = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "out"))
    assert str(cli.user_error(error)) == f"cannot write {tmp_path / 'out'}: Read-only file system"
    full = RuntimeError("sqlite: database or disk is full")
    assert "no space left on the device" in str(cli.user_error(full, output_dir=str(tmp_path)))
    assert cli.user_error(ValueError("a bug")) is None


def test_a_bad_setting_fails_before_any_component_runs(tmp_path, capsys):
    started = time.time()
    code = cli.main(["run", "--data", str(tmp_path / "no-data"), "--output", str(tmp_path / "out"),
                     "--set", "optimizer=sgd"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: optimizer: 'sgd' is not one of adagrad, adam"
    assert not (tmp_path / "out").exists()  # nothing started, not even the output directory
    assert time.time() - started < 5


@pytest.mark.parametrize("value, message", [
    ("1.0", "error: confidence: 1.0 is not a confidence level in [0.5, 1)"),
    ("0.2", "error: confidence: 0.2 is not a confidence level in [0.5, 1)"),
])
def test_a_bad_confidence_level_is_one_line_naming_it(tmp_path, capsys, value, message):
    code = cli.main(["run", "--data", str(tmp_path / "no-data"), "--output", str(tmp_path / "out"),
                     "--confidence", value])
    assert code == 2
    assert capsys.readouterr().err.strip() == message
    assert not (tmp_path / "out").exists()
