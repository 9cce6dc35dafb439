"""Configs: round trips through custom_config, validation on construction, CLI defaults from one place."""

import json

import pytest

from app import cli
from core.errors import ConfigError, UserError
from pipeline.config import PipelineConfig, named_config
from trainer.config import NAMED_CONFIGS, OPTIMIZERS, ModelConfig, metrics_by_k, top_k_label
from transform.config import TransformConfig


@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
def test_model_config_round_trips_through_the_trainer_custom_config(name):
    config = NAMED_CONFIGS[name].replace(tower_layers=(64, 32))
    custom_config = json.loads(json.dumps(config.to_custom_config()))  # as TFX passes it: JSON
    custom_config["catalog_file_pattern"] = "/somewhere/*"  # keys of other parties are ignored
    assert ModelConfig.from_custom_config(custom_config) == config


def test_transform_config_round_trips_and_defaults():
    config = TransformConfig(timestamp_buckets="quantiles", num_timestamp_buckets=50)
    assert TransformConfig.from_custom_config(json.loads(json.dumps(config.to_custom_config()))) == config
    assert TransformConfig.from_custom_config(None) == TransformConfig()


@pytest.mark.parametrize("changes, message", [
    ({"optimizer": "sgd"}, "optimizer: 'sgd' is not one of adagrad, adam"),
    ({"epochs": 0}, "epochs: 0 is not a positive integer"),
    ({"batch_size": 2.5}, "batch_size: 2.5 is not a positive integer"),
    ({"temperature": 0}, "temperature: 0 is not a number > 0"),
    ({"learning_rate": -1}, "learning_rate: -1 is not a number >= 0.0"),
    ({"tower_layers": [64, 0]}, "tower_layers: [64, 0] must be positive integers"),
    ({"epoch": 3}, "unknown model setting epoch: valid settings are use_timestamps, time_of_day, epochs"),
    ({"warm_start": "yes"}, "warm_start: 'yes' is not true or false"),
    ({"warm_start": True, "warm_start_epochs": 0}, "warm_start_epochs: 0 is not a positive integer"),
    ({"warm_start_epochs": 2}, "warm_start_epochs is set but warm_start is off: set warm_start=true"),
])
def test_bad_model_settings_fail_on_construction_with_the_valid_values(changes, message):
    with pytest.raises(ConfigError) as error:
        NAMED_CONFIGS["default"].replace(**changes)
    assert message in str(error.value)
    assert isinstance(error.value, UserError)


def test_warm_start_is_off_by_default_and_a_warm_run_trains_warm_start_epochs():
    for config in NAMED_CONFIGS.values():
        assert config.warm_start is False and config.warm_start_epochs is None
    default = NAMED_CONFIGS["default"]
    assert default.replace(warm_start=True).epochs_to_train(warm_started=True) == default.epochs  # None: same
    warm = default.replace(warm_start=True, warm_start_epochs=3)
    assert (warm.epochs_to_train(warm_started=True), warm.epochs_to_train(warm_started=False)) == (3, default.epochs)


def test_pipeline_and_transform_configs_validate_themselves():
    with pytest.raises(ConfigError, match="split: 'future' is not one of random, temporal"):
        PipelineConfig(data_path="d", split="future")
    with pytest.raises(ConfigError, match=r"train fraction must be in \(0, 1\), got 1.0"):
        PipelineConfig(data_path="d", train_fraction=1.0)
    with pytest.raises(ConfigError, match="config: 'best' is not one of tutorial, default"):
        named_config("best", data_path="d")
    with pytest.raises(ConfigError, match="timestamp_buckets: 'log' is not one of uniform, quantiles"):
        TransformConfig(timestamp_buckets="log")


def test_optimizer_names_match_the_trainer_classes():
    from trainer.task import OPTIMIZER_CLASSES

    assert tuple(OPTIMIZER_CLASSES) == OPTIMIZERS


def test_cli_defaults_are_the_config_defaults():
    args = cli.parser().parse_args(["run", "--data", "d"])
    config = cli.config_from_args(args)
    defaults = PipelineConfig(data_path="d")
    for name in ("train_fraction", "max_bad_rows", "value_floor", "min_improvement", "confidence", "beam_workers",
                 "output_dir"):
        assert getattr(config, name) == getattr(defaults, name), name
    for command in (["replay", "--data", "d"], ["compile", "--image", "i", "--data", "d", "--root", "r"]):
        gate = cli.parser().parse_args([*command, "--confidence", "0.9", "--min-improvement", "0.01"])
        assert (gate.confidence, gate.min_improvement, gate.value_floor) == (0.9, 0.01, None), command
    assert config.model == NAMED_CONFIGS["default"]
    # Each named config has its split: the tutorial's own, the future for the default.
    assert config.split == "temporal"
    assert cli.config_from_args(cli.parser().parse_args(["run", "--data", "d", "--config", "tutorial"])).split == "random"
    assert cli.config_from_args(cli.parser().parse_args(["run", "--data", "d", "--split", "random"])).split == "random"


def test_metrics_are_keyed_by_k_and_formatted_only_when_printed():
    assert metrics_by_k({"100": 0.5, "5": 0.1, 1: 0.01}) == {1: 0.01, 5: 0.1, 100: 0.5}
    assert list(metrics_by_k({"100": 0.5, "5": 0.1})) == [5, 100]
    assert top_k_label(100) == "top_100"


def test_one_knob_for_the_history_what_exampleGen_stores_is_what_the_model_reads(tmp_path):
    from pipeline.pipeline import create_components

    args = cli.parser().parse_args(["run", "--data", str(tmp_path), "--set", "history_length=80"])
    config = cli.config_from_args(args)
    assert config.model.history_length == 80 and config.ingested_history_length == 80
    from tfx.types import standard_component_specs

    from components.example_gen import read_settings

    [ratings_gen] = [c for c in create_components(config) if c.id == "RatingsExampleGen"]
    key = standard_component_specs.CUSTOM_CONFIG_KEY
    settings = read_settings({key: ratings_gen.exec_properties[key]})
    assert settings["max_history"] == 80  # ExampleGen stores the 80 movies the model reads
    # A model without history: ExampleGen still stores the baselines' history (item-kNN, EASE read it).
    assert named_config("tutorial", data_path="d").ingested_history_length == 50
    assert named_config("default", data_path="d", history_length=60).ingested_history_length == 60  # a cap above
    with pytest.raises(ConfigError, match="ExampleGen would store 10 movies per rating, but the model reads 50"):
        named_config("default", data_path="d", history_length=10)
    with pytest.raises(ConfigError, match="the model reads 80"):
        named_config("default", data_path="d", history_length=50).with_model(history_length=80)


@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
def test_the_pipeline_config_round_trips_through_json_as_a_run_records_it(name):
    from pipeline.config import CloudConfig

    config = named_config(name, data_path="gs://b/data", output_dir="gs://b/root", split="span", window_spans=3,
                          span=5, drift_thresholds=(("movie_id", 0.2),), stop_on_drift=True, value_floor=0.1,
                          history_length=90, transform=TransformConfig(timestamp_buckets="quantiles"),
                          cloud=CloudConfig(project="p", vertex_training=True),
                          metadata_uri="mysql://me@db.example:3307/mlmd").with_model(tower_layers=(64, 32), seed=7)
    recorded = json.loads(json.dumps(config.to_dict()))  # as report.json and ML Metadata hold it: JSON
    assert PipelineConfig.from_dict(recorded) == config
    assert recorded["model"] == config.model.to_custom_config()
    assert PipelineConfig.from_dict(PipelineConfig(data_path="d").to_dict()) == PipelineConfig(data_path="d")
    # A password is never recorded: the URI without it names the same store (the password then comes
    # from the environment).
    secret = PipelineConfig(data_path="d", metadata_uri="mysql://me:s3cr%40t@[::1]/mlmd")
    assert "s3cr" not in json.dumps(secret.to_dict())
    back = PipelineConfig.from_dict(secret.to_dict()).metadata_mysql
    assert (back.user, back.host, back.port, back.database, back.uri_password) == ("me", "::1", 3306, "mlmd", None)
    # Keys a later version adds are ignored; a missing one takes its default.
    assert PipelineConfig.from_dict({"data_path": "d", "a_later_knob": 1}) == PipelineConfig(data_path="d")


def test_the_job_and_gate_constants_live_with_the_job_and_the_gate():
    import core.comparison
    import pipeline.config
    import trainer.config

    assert pipeline.config.VARIANTS == {"baseline": False, "timestamp": True}
    assert core.comparison.GATE_K == 100 and core.comparison.GATE_K in trainer.config.TOP_KS
    assert not hasattr(trainer.config, "VARIANTS") and not hasattr(trainer.config, "GATE_K")
    # Each variant's Trainer names its TensorBoard run after it (trainer.config.TENSORBOARD_RUN_KEY).
    for name, use_timestamps in pipeline.config.VARIANTS.items():
        custom_config = named_config("default", data_path="d").with_model(use_timestamps=use_timestamps).trainer_custom_config()
        assert custom_config[trainer.config.TENSORBOARD_RUN_KEY] == name


def _parse(*argv):
    return cli.parser().parse_args(list(argv))


# Options of the shared groups, with a value that is not the default, and the PipelineConfig field each sets.
_GROUP_OPTIONS = {
    "ingestion": (["--max-bad-rows", "3", "--window-spans", "2", "--drift-threshold", "movie_id=0.3", "--stop-on-drift"],
                  {"max_bad_rows": 3, "window_spans": 2, "drift_thresholds": (("movie_id", 0.3), ("user_rating", 0.05)),
                   "stop_on_drift": True}),
    "data": (["--split", "random", "--train-fraction", "0.7"], {"split": "random", "train_fraction": 0.7}),
    "gate": (["--value-floor", "0.2", "--min-improvement", "0.01", "--confidence", "0.9", "--training-noise", "0.001"],
             {"value_floor": 0.2, "min_improvement": 0.01, "confidence": 0.9, "training_noise": 0.001}),
    "runtime": (["--beam-workers", "2", "--metadata-uri", "mysql://me@db.example:3307/mlmd"],
                {"beam_workers": 2, "metadata_uri": "mysql://me@db.example:3307/mlmd"}),
    "model": (["--config", "tutorial", "--set", "epochs=5", "--set", "family=history", "--set", "history_length=7"], {}),
}
# Each command: its own required arguments, the groups it takes, and how it calls config_from_args.
_COMMANDS = {
    "run": (["--data", "d"], ("ingestion", "data", "gate", "runtime", "model"), {}),
    "replay": (["--data", "d"], ("ingestion", "gate", "runtime", "model"), {"continuous": True, "split": "span"}),
    "compile": (["--image", "i", "--data", "d", "--root", "r"], ("ingestion", "data", "gate", "model"),
                {"output_dir": "r"}),
}


@pytest.mark.parametrize("command", sorted(_COMMANDS))
def test_every_command_takes_the_same_options_for_what_its_config_honours(command):
    required, groups, call = _COMMANDS[command]
    argv = [command, *required, *(option for group in groups for option in _GROUP_OPTIONS[group][0])]
    config = cli.config_from_args(_parse(*argv), **call)
    for group in groups:
        for name, value in _GROUP_OPTIONS[group][1].items():
            assert getattr(config, name) == value, (command, name)
    assert (config.config_name, config.model.epochs, config.model.history_length) == ("tutorial", 5, 7)
    # A group a command does not take is refused (its help says why), not ignored.
    for group in sorted(set(_GROUP_OPTIONS) - set(groups)):
        with pytest.raises(SystemExit):
            _parse(command, *required, *_GROUP_OPTIONS[group][0][:2])
    # Without the options, the config's own defaults (one place: PipelineConfig).
    plain = cli.config_from_args(_parse(command, *required), **call)
    defaults = PipelineConfig(data_path="d")
    for name in ("max_bad_rows", "window_spans", "drift_thresholds", "stop_on_drift", "train_fraction", "value_floor",
                 "min_improvement", "confidence", "training_noise", "beam_workers", "metadata_uri"):
        assert getattr(plain, name) == getattr(defaults, name), (command, name)


def test_replay_and_compile_build_continuous_training_as_before():
    replay = cli.config_from_args(_parse("replay", "--data", "d", "--variant", "baseline", "--set", "warm_start_epochs=2"),
                                  continuous=True, split="span")
    assert replay.split == "span" and replay.model.use_timestamps is False
    assert (replay.model.warm_start, replay.model.warm_start_epochs) == (True, 2)  # --set after the warm start
    cold = cli.config_from_args(_parse("replay", "--data", "d", "--cold-start"), continuous=False, split="span")
    assert cold.model.use_timestamps is True and cold.model.warm_start is False
    assert cold == named_config("default", data_path="d", split="span").with_model(use_timestamps=True)


def test_recommend_takes_the_store_and_the_output_and_nothing_it_could_not_honour():
    args = _parse("recommend", "--user", "1", "--output", "o", "--metadata-uri", "mysql://me@h/db")
    assert (args.output, args.metadata_uri) == ("o", "mysql://me@h/db")
    for option in ("--beam-workers", "--config", "--value-floor", "--max-bad-rows", "--split"):
        with pytest.raises(SystemExit):
            _parse("recommend", "--user", "1", option, "1")


def test_recommend_reads_the_config_report_json_records(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    recorded = named_config("default", data_path="d", output_dir="/elsewhere").with_model(history_length=7)
    (out / "report.json").write_text(json.dumps({"models": {}, "pipeline_config": recorded.to_dict()}))
    config, found = cli.output_config(str(out))
    assert found and config == recorded.replace(output_dir=str(out))
    assert config.ingested_history_length == 7
    # Before the config was recorded: the defaults, said so (by recommend, when it reads the history).
    (out / "report.json").write_text(json.dumps({"models": {}}))
    config, found = cli.output_config(str(out), metadata_uri="mysql://me@h/db")
    assert not found and config == PipelineConfig(data_path="", output_dir=str(out), metadata_uri="mysql://me@h/db")



def test_nothing_imports_the_command_line():
    """app.cli is the top: no module imports it, not even inside a function (the cycle cli -> job ->
    report_html -> cli is gone: latest_pushed_model is components.serving_versions')."""
    import ast
    import glob
    import os

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    importers = []
    for path in glob.glob(os.path.join(repo, "*", "*.py")) + glob.glob(os.path.join(repo, "*", "*", "*.py")):
        relative = os.path.relpath(path, repo)
        if relative.startswith(("tests", "bench", ".")) or relative == os.path.join("app", "cli.py"):
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
                     if isinstance(node, ast.ImportFrom) else [])
            if "app.cli" in names:
                importers.append(relative)
    assert importers == []
