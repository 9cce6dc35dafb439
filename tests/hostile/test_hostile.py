"""The standing hostile-input layer: every case of cases.py through its surface, one exact line back.

Each driver hands the case's input to the code a user reaches (the CLI in-process where it answers
before loading TensorFlow; else the function the CLI calls) and returns what the user would see:
the exit code and the terminal's text. Every answer must be exactly the expected line, `error: ...`,
exit code 2, no traceback, no secret.
"""

import os
import zipfile

import pytest

from app import cli
from movielens import spans

from .cases import CASES

CATALOG = {
    "u.item": "".join(f"{m}|Movie {m} (1995)|01-Jan-1995||x|" + "|".join("0" * 19) + "\n" for m in range(1, 7)),
    "u.user": "".join(f"{u}|30|M|other|12345\n" for u in range(1, 4)),
}
RATINGS = "1\t1\t4\t880000000\n2\t2\t3\t880000100\n3\t3\t5\t880000200\n"


def _write(path, content):
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode("utf-8"))


def _error(run):
    """(2, "error: <message>") for a UserError raised by `run`, as the CLI prints it; else what happened."""
    try:
        run()
    except Exception as error:  # noqa: BLE001 - the CLI's own mapping decides what a user sees
        found = cli.user_error(error)
        if found is None:
            raise
        return 2, f"error: {found}"
    return 0, "(no error)"


def spans_driver(case, tmp):
    root = os.path.join(tmp, "data")
    for span, lines in case.input["spans"].items():
        directory = spans.span_dir(root, span)
        os.makedirs(directory)
        if lines == []:
            continue  # an empty folder
        for name, content in CATALOG.items():
            _write(os.path.join(directory, name), content)
        _write(os.path.join(directory, "u.data"), "".join(line + "\n" for line in lines))
    code, text = _error(lambda: spans.replay_range(root, case.input.get("from_span"), case.input.get("to_span")))
    return code, text, {"root": root}


def ingestion_driver(case, tmp):
    from movielens import reader

    data = os.path.join(tmp, "data")
    if "zip" in case.input:
        path = os.path.join(tmp, "data.zip")
        with zipfile.ZipFile(path, "w") as archive:
            for name, content in case.input["zip"].items():
                archive.writestr(name, content)
    elif "path" in case.input:
        path = os.path.join(tmp, case.input["path"])
    else:
        path = data
        os.makedirs(data)
        contents = {**CATALOG, "u.data": RATINGS}
        for name, content in case.input.items():
            if name.endswith("+"):
                base = contents[name[:-1]]
                contents[name[:-1]] = (base.encode() if isinstance(content, bytes) else base) + content
            else:
                contents[name] = content
        for name, content in contents.items():
            if content is not None:
                _write(os.path.join(data, name), content)
    code, text = _error(lambda: reader.load(path))
    return code, text, {"data": data}


def _cli(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, (captured.err + captured.out).rstrip("\n")


def metadata_uri_driver(case, tmp, capsys):
    out = os.path.join(tmp, "out")
    code, text = _cli(["run", "--data", tmp, "--output", out, "--metadata-uri", case.input], capsys)
    assert not os.path.exists(out)  # refused before anything is written
    return code, text, {"out": out}


def recommend_driver(case, tmp, capsys):
    out = os.path.join(tmp, "out")
    for version in case.input.get("versions", []):
        os.makedirs(os.path.join(out, "serving", "movielens_retrieval", version))
    code, text = _cli(["recommend", "--user", "42", "--output", out, *case.input["args"]], capsys)
    return code, text, {"out": out}


DRIVERS = {"spans": spans_driver, "ingestion": ingestion_driver}
CLI_DRIVERS = {"metadata-uri": metadata_uri_driver, "recommend": recommend_driver}


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.surface}: {case.id}")
def test_a_hostile_input_gets_its_one_line_error(case, tmp_path, capsys):
    tmp = str(tmp_path)
    if case.surface in CLI_DRIVERS:
        code, text, where = CLI_DRIVERS[case.surface](case, tmp, capsys)
    else:
        code, text, where = DRIVERS[case.surface](case, tmp)
    assert text == case.expected.format(tmp=tmp, **where)
    assert code == 2 and "\n" not in text and "Traceback" not in text
    for secret in case.secrets:
        assert secret not in text
