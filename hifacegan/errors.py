"""The errors hifacegan raises for user mistakes: each carries a one-line message naming the file,
option or key at fault, which the CLI prints as ``error: ...`` with exit code 2."""


class HiFaceGANError(Exception):
    """Base class for user-facing errors."""


class ConfigError(HiFaceGANError):
    """A bad training option or config file value."""


class CheckpointError(HiFaceGANError):
    """A checkpoint that cannot be read, is not ours, or does not fit the model."""


class DataError(HiFaceGANError):
    """Training or evaluation data that cannot be used."""
