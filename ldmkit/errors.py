"""The one exception family ldmkit raises for bad input; the CLI prints these without a traceback."""


class LdmkitError(Exception):
    """A problem with the user's input (config, file, checkpoint, shape) and how to fix it."""


class ConfigError(LdmkitError, ValueError):
    """A config key that does not exist, or a value of the wrong type."""


class CheckpointError(LdmkitError):
    """A checkpoint that is missing, corrupt, unsafe, or made for another architecture."""


class DataError(LdmkitError):
    """A dataset or image that cannot be read."""


class ShapeError(LdmkitError, ValueError):
    """A tensor or image whose shape a model cannot take; the message says which shapes work."""
