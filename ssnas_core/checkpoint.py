"""Atomic, integrity-checked checkpoints.

File layout: ``MAGIC`` (8 bytes) + sha256 of the payload (64 hex bytes) + a
``torch.save`` payload. ``save_checkpoint`` writes a temp file in the same
folder, fsyncs it, moves the previous ``last`` to ``prev`` and renames the temp
file onto ``last`` (``os.replace`` is atomic), then fsyncs the folder. A crash
at any point leaves ``last`` or ``prev`` loadable; a temp file is never read.
``load_checkpoint`` verifies the sha256 (``torch.load`` skips zip CRC checks)
and loads with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from ssnas_core.errors import CheckpointError, first_line

MAGIC = b"SSNASCK1"
SCHEMA_VERSION = 1
LAST, PREV = "last.ckpt", "prev.ckpt"


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(folder: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` as ``folder/last.ckpt``, keeping the previous one as ``prev.ckpt``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({**state, "schema_version": SCHEMA_VERSION}, buffer)
    payload = buffer.getvalue()
    tmp = folder / f".{LAST}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as fh:
            fh.write(MAGIC + hashlib.sha256(payload).hexdigest().encode() + payload)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:  # e.g. ENOSPC: the last good checkpoint is untouched
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write a checkpoint in {folder} ({err.strerror or err}): the last good one "
                              "is kept; free space or fix permissions, then --resume") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    last = folder / LAST
    if last.exists():
        os.replace(last, folder / PREV)
    os.replace(tmp, last)
    _fsync_dir(folder)
    return last


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load one checkpoint file, verifying magic, sha256 and schema.

    Raises:
        CheckpointError: naming the path and what is wrong with it.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror})") from err
    if len(data) < 72 or data[:8] != MAGIC:
        raise CheckpointError(f"checkpoint {path} is not an ssnas checkpoint or is truncated ({len(data)} bytes)")
    payload = data[72:]
    if hashlib.sha256(payload).hexdigest().encode() != data[8:72]:
        raise CheckpointError(f"checkpoint {path} is corrupt: sha256 mismatch ({len(data)} bytes); "
                              "delete it to resume from prev.ckpt")
    try:
        state: dict[str, Any] = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for bad payloads
        raise CheckpointError(f"checkpoint {path} cannot be unpickled safely: {first_line(err)}") from err
    if state.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(f"checkpoint {path} has schema {state.get('schema_version')}, "
                              f"this ssnas reads schema {SCHEMA_VERSION}")
    return state


def load_checkpoint(folder: str | Path, fallback_prev: bool = True) -> dict[str, Any]:
    """Load ``folder/last.ckpt``; if it is missing or corrupt and ``fallback_prev``, ``prev.ckpt`` with a warning.

    Raises:
        CheckpointError: when no loadable checkpoint exists.
    """
    folder = Path(folder)
    last, prev = folder / LAST, folder / PREV
    if not last.exists() and not prev.exists():
        raise CheckpointError(f"no checkpoint in {folder}: expected {LAST}; the run never finished an epoch")
    try:
        return read_checkpoint(last)
    except CheckpointError as err:
        if not (fallback_prev and prev.exists()):
            raise
        warnings.warn(f"{err}; resuming from {prev}", stacklevel=2)
        return read_checkpoint(prev)
