"""Exception classes.

Every ``SsnasError`` is a *user* error: the CLI prints its message on one line
and exits with status 2. Messages say what was found, what was expected and
what to do.
"""

from __future__ import annotations

import os


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


def read_text(path: str | os.PathLike[str], flag: str) -> str:
    """The UTF-8 text of the file an option names; a missing, unreadable, folder or non-text file is a
    ``ConfigError`` that names the option."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except IsADirectoryError as err:
        raise ConfigError(f"{flag} {path} is a folder: give the file itself") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{flag} {path} is not UTF-8 text (byte {err.start}: {err.reason}): give the text file "
                          "it expects, not a binary or re-encoded one") from err
    except OSError as err:
        raise ConfigError(f"{flag} {path} cannot be read ({err.strerror or err})") from err
