"""Errors of the training scripts."""

from __future__ import annotations


class SetupError(RuntimeError):
    """Something a run needs (a dataset, a weights file, a checkpoint) is missing or wrong.

    Raised before any training step, so a wrong path costs seconds, not hours; the command lines print the
    message and exit with status 2.
    """
