"""Exception classes.

Every ``SsnasError`` is a *user* error: the CLI prints its message on one line
and exits with status 2. Messages say what was found, what was expected and
what to do.
"""

from __future__ import annotations


class SsnasError(Exception):
    """Base class of errors caused by bad input; the CLI exits with status 2."""


class ConfigError(SsnasError, ValueError):
    """An unknown option, a wrong type or an out-of-range value."""


class DatasetError(SsnasError):
    """A data file that is missing, corrupt or of the wrong structure."""


class CheckpointError(SsnasError):
    """A checkpoint that is missing, corrupt or belongs to another configuration."""


class TrackingError(SsnasError):
    """The tracking store cannot be reached or refuses the request."""


class DivergenceError(RuntimeError):
    """A loss or a parameter became NaN or infinite during training."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class TrialStopped(Exception):
    """Raised by an epoch hook to stop a run early (a pruned study trial); the run ends KILLED, tagged."""

    def __init__(self, epoch: int, reason: str = "PRUNED") -> None:
        super().__init__(f"stopped after epoch {epoch}: {reason}")
        self.epoch = epoch
        self.reason = reason


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty): for one-line user errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
