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
    config = cli.build_config(args)
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
    assert cli.build_config(cli.parser().parse_args(["run", "--data", "d", "--config", "tutorial"])).split == "random"
    assert cli.build_config(cli.parser().parse_args(["run", "--data", "d", "--split", "random"])).split == "random"


def test_metrics_are_keyed_by_k_and_formatted_only_when_printed():
    assert metrics_by_k({"100": 0.5, "5": 0.1, 1: 0.01}) == {1: 0.01, 5: 0.1, 100: 0.5}
    assert list(metrics_by_k({"100": 0.5, "5": 0.1})) == [5, 100]
    assert top_k_label(100) == "top_100"


def test_one_knob_for_the_history_what_exampleGen_stores_is_what_the_model_reads(tmp_path):
    from pipeline.pipeline import create_components

    args = cli.parser().parse_args(["run", "--data", str(tmp_path), "--set", "history_length=80"])
    config = cli.build_config(args)
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
