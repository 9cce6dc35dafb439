"""A shared ML Metadata store on a real MariaDB server (Debian's mariadb-server; .ci/run installs it).

The test starts its own server on 127.0.0.1 (a private data directory and a
free port, so it touches no system service), runs the ingestion part of the
pipeline on it twice (the second run from the cache), follows the lineage
through ML Metadata, checks that the password is nowhere in what the run
wrote, and that a wrong password or an unreachable server is one line naming
the host. The server is stopped at the end.
"""

import logging
import os
import secrets
import shutil
import socket
import subprocess
import time

import pytest
from ml_metadata.proto import metadata_store_pb2

from app import cli
from app.logs import quiet_logs
from app.results import latest_outputs, metadata_store
from movielens import synthetic
from pipeline.config import METADATA_PASSWORD_ENV, named_config
from pipeline.local_runner import run_pipeline
from pipeline.pipeline import create_pipeline

INGESTION = ["DataGate", "CatalogExampleGen"]  # and everything upstream of them
USER, DATABASE = "mlmd", "movielens_mlmd"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory):
    server, install = shutil.which("mariadbd") or "/usr/sbin/mariadbd", shutil.which("mariadb-install-db")
    if not os.path.exists(server) or install is None or shutil.which("mariadb") is None:
        if os.environ.get("CI"):
            pytest.fail("mariadb-server is not installed: .ci/run installs Debian's mariadb-server")
        pytest.skip("mariadb-server is not installed (apt-get install mariadb-server; .ci/run installs it)")
    root = tmp_path_factory.mktemp("mariadb")
    data, sock, port = root / "data", str(root / "mysqld.sock"), _free_port()
    subprocess.run([install, "--no-defaults", f"--datadir={data}", "--user=root", "--auth-root-authentication-method=socket",
                    "--skip-test-db"], check=True, capture_output=True, timeout=120)
    process = subprocess.Popen(
        [server, "--no-defaults", f"--datadir={data}", "--user=root", "--bind-address=127.0.0.1", f"--port={port}",
         f"--socket={sock}", f"--pid-file={root / 'mysqld.pid'}", "--skip-log-bin", "--innodb-buffer-pool-size=32M"],
        stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"),
    )
    password = "pw-" + secrets.token_hex(8)
    admin = ["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root"]
    try:
        deadline = time.time() + 60
        while subprocess.run([*admin, "-e", "SELECT 1"], capture_output=True).returncode != 0:
            assert process.poll() is None, open(root / "server.log").read()[-2000:]
            assert time.time() < deadline, "MariaDB did not start in 60 s"
            time.sleep(0.5)
        grants = " ".join(f"CREATE USER '{USER}'@'{host}' IDENTIFIED BY '{password}'; GRANT ALL ON *.* TO '{USER}'@'{host}';"
                          for host in ("127.0.0.1", "localhost"))
        subprocess.run([*admin, "-e", grants], check=True, capture_output=True)
        yield {"port": port, "password": password, "uri": f"mysql://{USER}@127.0.0.1:{port}/{DATABASE}"}
    finally:
        process.terminate()
        process.wait(timeout=60)


def _lineage_inputs(store, artifact_id):
    """(node that produced `artifact_id`, {input key: [artifact ids]} of that execution).

    The producer is the first execution that output it; the second run's cached
    execution outputs the same artifact again.
    """
    outputs = [e for e in store.get_events_by_artifact_ids([artifact_id])
               if e.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    output = min(outputs, key=lambda e: e.execution_id)
    [producer, *reused] = store.get_executions_by_id(sorted(e.execution_id for e in outputs))
    assert producer.last_known_state == metadata_store_pb2.Execution.COMPLETE
    assert [e.last_known_state for e in reused] == [metadata_store_pb2.Execution.CACHED]
    node_type = store.get_context_type("node").id
    [node] = [c.name for c in store.get_contexts_by_execution(output.execution_id) if c.type_id == node_type]
    inputs = {}
    for event in store.get_events_by_execution_ids([output.execution_id]):
        if event.type in (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT):
            inputs.setdefault(event.path.steps[0].key, []).append(event.artifact_id)
    return node.rsplit(".", 1)[-1], inputs


def test_shared_mysql_metadata_caches_tracks_lineage_and_keeps_the_password_out(mariadb, tmp_path, monkeypatch):
    monkeypatch.setenv(METADATA_PASSWORD_ENV, mariadb["password"])
    data = synthetic.generate(str(tmp_path / "data"), num_users=60, num_movies=150, num_ratings=3000, seed=6)
    config = named_config("tutorial", data_path=data, output_dir=str(tmp_path / "out"), metadata_uri=mariadb["uri"])
    assert config.metadata_location == mariadb["uri"]
    assert mariadb["password"] not in repr(config)

    log = str(tmp_path / "out" / "ingest.log")
    # TFX logs its connection config at INFO (through absl): it must be redacted there. Other
    # tests in the same process may have raised absl's level: set both loggers for this run.
    loggers = [logging.getLogger(), logging.getLogger("absl")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    try:
        with quiet_logs(log):
            first = {t["component"]: t["state"] for t in run_pipeline(config, to_nodes=INGESTION)}
            second = {t["component"]: t["state"] for t in run_pipeline(config, to_nodes=INGESTION)}
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
    ingestion = {"RatingsExampleGen", "CatalogExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "DataGate"}
    assert set(first) == set(second) == ingestion
    assert all(state == "done" for state in first.values()), first
    assert all(state == "cached" for state in second.values()), second
    assert not os.path.exists(config.metadata_path)  # no SQLite store on the side

    # The lineage, through ML Metadata on MariaDB (the app's reader, same connection):
    # anomalies <- ExampleValidator <- statistics <- StatisticsGen <- examples <- RatingsExampleGen.
    store = metadata_store(config)
    [anomalies] = latest_outputs(config, "ExampleValidator")["anomalies"]
    [statistics] = latest_outputs(config, "StatisticsGen")["statistics"]
    [schema] = latest_outputs(config, "SchemaGen")["schema"]
    [examples] = latest_outputs(config, "RatingsExampleGen")["examples"]
    assert _lineage_inputs(store, anomalies.id) == ("ExampleValidator", {"statistics": [statistics.id], "schema": [schema.id]})
    assert _lineage_inputs(store, schema.id) == ("SchemaGen", {"statistics": [statistics.id]})
    assert _lineage_inputs(store, statistics.id) == ("StatisticsGen", {"examples": [examples.id]})
    node, inputs = _lineage_inputs(store, examples.id)
    assert node == "RatingsExampleGen" and inputs == {}
    assert examples.uri.startswith(os.path.abspath(config.pipeline_root))
    # Both runs are recorded: two pipeline runs, the second's executions CACHED.
    runs = store.get_contexts_by_type("pipeline_run")
    assert len(runs) == 2
    latest_run = max(runs, key=lambda c: c.id)
    states = {e.last_known_state for e in store.get_executions_by_context(latest_run.id)}
    assert states == {metadata_store_pb2.Execution.CACHED}

    # The password is in no file the runs wrote (logs included), nor in the pipeline's IR.
    written = []
    for directory, _, names in os.walk(tmp_path / "out"):
        for name in names:
            with open(os.path.join(directory, name), "rb") as f:
                if mariadb["password"].encode() in f.read():
                    written.append(os.path.join(directory, name))
    assert written == []
    assert "password: \"***\"" in open(log).read()  # TFX's connection config line, redacted
    from tfx.dsl.compiler import compiler

    ir = compiler.Compiler().compile(create_pipeline(config))
    assert mariadb["password"] not in str(ir)


def test_wrong_password_or_unreachable_server_is_one_line_naming_the_host(mariadb, tmp_path, monkeypatch, capsys):
    data = synthetic.generate(str(tmp_path / "data"), num_users=20, num_movies=30, num_ratings=200, seed=1)
    monkeypatch.setenv(METADATA_PASSWORD_ENV, "not-" + mariadb["password"])
    wrong = cli.main(["run", "--data", data, "--output", str(tmp_path / "a"), "--metadata-uri", mariadb["uri"]])
    closed = _free_port()
    unreachable = cli.main(["run", "--data", data, "--output", str(tmp_path / "b"),
                            "--metadata-uri", f"mysql://{USER}@127.0.0.1:{closed}/{DATABASE}"])
    assert wrong == unreachable == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"error: cannot connect to ML Metadata at {mariadb['uri']}: Access denied for user 'mlmd'@")
    assert lines[1].startswith(f"error: cannot connect to ML Metadata at mysql://{USER}@127.0.0.1:{closed}/{DATABASE}: ")
    assert "127.0.0.1" in lines[1] and "Traceback" not in "\n".join(lines)
    assert mariadb["password"] not in "\n".join(lines)
    # An inline password is never shown either.
    code = cli.main(["run", "--data", data, "--output", str(tmp_path / "c"),
                     "--metadata-uri", f"mysql://{USER}:wrong-secret@127.0.0.1:{closed}/{DATABASE}"])
    err = capsys.readouterr().err
    assert code == 2 and "wrong-secret" not in err and err.count("\n") == 1
