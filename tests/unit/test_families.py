"""Model families (trainer.families): the registry knows each family, and ModelConfig names one consistently."""

import pkgutil
import subprocess
import sys

import pytest

from app import cli
from core.errors import ConfigError
from pipeline.config import named_config
from trainer import families
from trainer.config import FAMILIES, NAMED_CONFIGS, ModelConfig


def test_the_registry_knows_both_families_and_each_declares_the_interface():
    assert FAMILIES == ("tutorial", "history")
    assert {module.name for module in pkgutil.iter_modules(families.__path__)} == set(FAMILIES)  # none unnamed
    for name in FAMILIES:
        family = families.get(name)
        assert family.NAME == name
        for declared in families.Family.__annotations__:
            assert hasattr(family, declared), (name, declared)
        assert callable(family.towers)
    with pytest.raises(ConfigError, match="family: 'two_tower' is not one of tutorial, history"):
        families.get("two_tower")


def test_each_family_declares_what_its_towers_read():
    from transform import features as F

    tutorial, history = families.get("tutorial"), families.get("history")
    assert tutorial.CANDIDATE_FEATURES == (F.MOVIE_TITLE,)
    assert history.CANDIDATE_FEATURES == (F.MOVIE_TITLE, F.MOVIE_ID)
    assert tutorial.QUERY_FEATURES == (F.USER_ID, F.TIMESTAMP)
    assert history.QUERY_FEATURES == (F.USER_ID, F.TIMESTAMP, F.HISTORY, F.HISTORY_TIMESTAMPS)
    # Transform computes the tutorial towers' features for the tutorial family only.
    assert named_config("tutorial", data_path="d").transform_config.tutorial_features is True
    assert named_config("default", data_path="d").transform_config.tutorial_features is False


@pytest.mark.parametrize("name, changes, message", [
    ("default", {"history_length": 0}, "family: 'history' reads the rating's history_length most recent movies, "
                                       "but history_length is 0: set history_length >= 1 (or family=tutorial)"),
    ("default", {"family": "tutorial"}, "family: 'tutorial' reads no history, but history_length is 50: "
                                        "set family=history (or history_length=0)"),
    ("tutorial", {"history_length": 80}, "family: 'tutorial' reads no history, but history_length is 80"),
    ("tutorial", {"family": "history"}, "family: 'history' reads the rating's history_length most recent movies"),
    ("default", {"family": "towers"}, "family: 'towers' is not one of tutorial, history"),
])
def test_model_config_rejects_a_family_inconsistent_with_history_length_in_one_line(name, changes, message):
    with pytest.raises(ConfigError) as error:
        NAMED_CONFIGS[name].replace(**changes)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_named_configs_name_their_family_and_a_family_switch_is_two_settings():
    assert (NAMED_CONFIGS["tutorial"].family, NAMED_CONFIGS["default"].family) == ("tutorial", "history")
    assert ModelConfig() == NAMED_CONFIGS["tutorial"]
    assert NAMED_CONFIGS["default"].replace(family="tutorial", history_length=0).family == "tutorial"

    def model(*argv):
        return cli.config_from_args(cli.parser().parse_args(["run", "--data", "d", *argv])).model

    assert model("--set", "history_length=80").family == "history"  # the default config
    assert model("--set", "family=tutorial", "--set", "history_length=0").family == "tutorial"
    assert model("--config", "tutorial", "--set", "family=history", "--set", "history_length=20").history_length == 20
    with pytest.raises(ConfigError, match="family: 'tutorial' reads no history, but history_length is 50"):
        model("--set", "family=tutorial")


@pytest.mark.parametrize("name", sorted(NAMED_CONFIGS))
def test_a_model_config_written_before_families_reads_back_with_the_family_its_history_length_meant(name):
    old = NAMED_CONFIGS[name].to_custom_config()
    del old["family"]  # a compiled spec's model_config or a metrics.json from before ModelConfig.family
    assert ModelConfig.from_custom_config(old) == NAMED_CONFIGS[name]


def test_configs_and_the_registry_load_without_tensorflow():
    code = ("import sys, app.cli, pipeline.config, trainer.families\n"
            "trainer.config.NAMED_CONFIGS['default'].replace(family='tutorial', history_length=0)\n"
            "print('tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
