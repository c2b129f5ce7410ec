"""Errors a user can act on. The CLI prints their message on one line and exits 2."""


class NmtError(Exception):
    """Base class: a problem with the user's input, files or configuration."""


class ConfigError(NmtError):
    """A bad configuration key or value."""


class DataError(NmtError):
    """A bad or missing data file; the message names the file and, where known, the line."""


class CheckpointError(NmtError):
    """A missing, corrupt or incompatible checkpoint or model directory."""
