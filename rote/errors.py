"""Errors a user can cause.

Anything raised as a ``RoteError`` is the user's to fix: the CLI prints its
message as one line on stderr and exits with status 2, without a traceback.
Everything else is a bug in rote and keeps its traceback.
"""


class RoteError(Exception):
    """A problem with the user's input, settings or environment."""


class ConfigError(RoteError):
    """A setting that does not parse or is out of range."""


class DataError(RoteError):
    """Data that is missing, corrupt or cannot be obtained."""
