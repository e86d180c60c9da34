"""The converter's errors: what the command line reports in one line (exit 2), and nothing else."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: the message names the file, the node/column and the row."""


class ConvertError(RuntimeError):
    """The conversion failed (bad input, unwritable output, failed pipeline); nothing was published."""


class PublishError(RuntimeError):
    """The output could not be written or moved into place."""
