"""Errors that the CLI reports as one line, each with its documented exit code."""


class EegzError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""
    exit_code = 2


class FormatError(EegzError):
    """A .eegz file is not valid: wrong magic, unknown version, truncated, or a checksum mismatch."""
    exit_code = 3


class ModelError(EegzError):
    """The neural model a file needs is missing or does not match, or a model file is damaged."""
    exit_code = 4


class OutputExistsError(EegzError):
    """The output file exists and --force was not given."""
    exit_code = 5


class OutputError(EegzError):
    """An output could not be written: no space left, a quota or file-size limit, read-only storage. The
    temporary file is removed, so nothing is left at the output path."""
    exit_code = 7


class VerifyError(EegzError):
    """`eegz verify` found a sample outside the recorded error bound."""
    exit_code = 6
