"""One exception type per failure a user can cause; the CLI prints each as one line."""


class UarError(Exception):
    """Base class: a problem with the user's input, config, model or environment."""


class ConfigError(UarError):
    """A config key has a bad value (the message names the key and the allowed values)."""


class SourceError(UarError):
    """A video source cannot be opened or read."""


class SinkError(UarError):
    """An output (video, events) cannot be written."""


class ModelError(UarError):
    """A model directory, manifest or weights file is missing, corrupt or inconsistent."""


class DataError(UarError):
    """A dataset file is missing or not in the FER+ layout."""


class InputError(UarError, ValueError):
    """An argument of the Python API is not what it accepts (e.g. ``Analyzer.analyze(None)``,
    an empty array, a nested list); the message says what was expected."""
