"""The one base class of every error a user can fix; dependency-free.

The command line catches `UserError` (anywhere in an exception's cause chain)
and prints its message without a traceback; anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    """An error the user can fix: the message names the input and what to do."""


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; raised when the config is constructed."""


def check_choice(what: str, value, choices) -> None:
    """Raises ConfigError unless `value` is one of `choices`, listing them."""
    if value not in choices:
        raise ConfigError(f"{what}: {value!r} is not one of {', '.join(map(str, choices))}")
