"""Errors that the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations


class XmodalError(Exception):
    """A problem with the user's input (config, file, checkpoint, data): report it in one line."""


class ConfigError(XmodalError):
    """An unknown key, a wrong type or a bad value in a config or a ``--set`` override."""


class CheckpointError(XmodalError):
    """A checkpoint that is unsafe (a pickle), incomplete, or does not match the model."""


class DataError(XmodalError):
    """A dataset that is missing, fails its checksum, or has too many unusable samples."""
