"""User-facing errors.

Anything a user can cause (a bad config, a malformed data file, an unknown model) raises a
subclass of :class:`ForgelineError`. The CLI prints these as one clear message without a stack
trace; anything else is a bug and keeps its traceback.
"""


class ForgelineError(Exception):
    """An error caused by user input, with a message that says what is wrong and where."""


class ConfigError(ForgelineError):
    """The project config is invalid."""


class DataError(ForgelineError):
    """A data file is missing, unreadable or fails validation."""


class RegistryError(ForgelineError):
    """A model version is missing, unsafe to load, or would overwrite an existing one."""


class InputError(ForgelineError):
    """A prediction input is invalid (wrong type, too long, too many)."""


class NotSupportedError(ForgelineError):
    """The model's task does not offer this operation (yet)."""


class CompressionRefused(ForgelineError):
    """A compressed model failed its parity or accuracy check and was not registered."""
