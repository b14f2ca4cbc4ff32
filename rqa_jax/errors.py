"""The project's own exception types: errors in what the user gave (files, model dirs, flags,
config values), as opposed to bugs. The ``rqa`` command prints these as one line and exits 1;
anything else is a bug and shows its traceback.

Each type also subclasses the built-in it replaces (``ValueError``, ``KeyError``,
``FileNotFoundError``), so code that catches the built-in keeps working."""

from __future__ import annotations


class RqaError(Exception):
    """Base class: an error in the user's input, reported without a traceback."""


class UserInputError(RqaError, ValueError):
    """A value the user gave (a flag, a config value, a file's content) is not usable."""


class ConfigError(UserInputError):
    """A config file, its argument or a ``--config.key=value`` override is not usable."""


class ModelKindError(UserInputError):
    """A model dir of the wrong kind: a re-ranker where a dual encoder is needed, or back."""


class MissingIdError(RqaError, KeyError):
    """An id (query, passage) named by one input is missing from another."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class UserFileNotFoundError(RqaError, FileNotFoundError):
    """A file or dir the user named does not exist or is incomplete."""
