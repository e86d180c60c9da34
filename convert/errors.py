"""The converter's errors: what the command line reports in one line, and the signals (Ctrl-C, SIGTERM) that stop it."""

from __future__ import annotations

import signal


class InputError(ValueError):
    """Bad input: the message names the file, the node/column and the row."""


class ConvertError(RuntimeError):
    """The conversion failed (bad input, unwritable output, failed pipeline); nothing was published."""


class PublishError(RuntimeError):
    """The output could not be written or moved into place."""


SIGNALS: list[int] = []  # the signals (SIGINT, SIGTERM) the command line received while converting


def raise_if_signalled() -> None:
    """Before anything is published: a Ctrl-C or SIGTERM stops the conversion even where a library caught the
    exception its handler raised (KeyboardInterrupt for SIGINT, SystemExit for SIGTERM)."""
    if signal.SIGINT in SIGNALS:
        raise KeyboardInterrupt
    if SIGNALS:
        raise SystemExit(128 + SIGNALS[0])
