"""One process owns a run: an exclusive lock in the run's work dir, held while the process lives.

``owner.lock`` is locked with ``flock`` for as long as the owner runs (the kernel drops the lock when
the process dies, however it dies, so a lease cannot go stale on this host), and ``owner.json`` says
who holds it (host, pid). A second ``--resume`` of a run whose owner is alive is refused with one line
naming the host and pid; a dead owner's lease is taken over. A lease written on another host (a
shared work dir) cannot be checked from here: it is refused, and the message says which file to
remove once that process is known to be gone.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from ssnas_core.errors import ConfigError

LOCK, OWNER = "owner.lock", "owner.json"
_held: dict[Path, int] = {}  # run dir -> the locked file descriptor this process holds


def read_owner(run_dir: Path) -> tuple[str, int] | None:
    """``(host, pid)`` from the run's owner.json, or None."""
    try:
        data = json.loads((run_dir / OWNER).read_text())
        return str(data["host"]), int(data["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def acquire(run_dir: Path, run_id: str) -> str:
    """Take the run's lease for this process; returns ``host:pid``.

    Raises:
        ConfigError: another live process owns the run, or a process on another host does.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    key = run_dir.resolve()
    host, pid = socket.gethostname(), os.getpid()
    if key in _held:
        return f"{host}:{pid}"
    fd = os.open(run_dir / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        owner = read_owner(run_dir) or ("this host", "?")
        raise ConfigError(f"run {run_id} is being trained by pid {owner[1]} on host {owner[0]}: wait for it to "
                          "end or stop it, then --resume") from None
    owner = read_owner(run_dir)
    if owner is not None and owner[0] != host:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        raise ConfigError(f"run {run_id} is owned by pid {owner[1]} on host {owner[0]} ({run_dir / OWNER}): resume "
                          "it there, or remove that file once that process is gone")
    tmp = run_dir / f"{OWNER}.{pid}.tmp"
    tmp.write_text(json.dumps({"host": host, "pid": pid}))
    os.replace(tmp, run_dir / OWNER)
    _held[key] = fd
    return f"{host}:{pid}"


def is_held(run_dir: Path) -> bool | None:
    """Whether a live process holds the run's lease (this one included); None when the run has no lock file."""
    lock = run_dir / LOCK
    if not lock.exists():
        return None
    if run_dir.resolve() in _held:
        return True
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def release(run_dir: Path) -> None:
    """Give the lease back if this process holds it."""
    fd = _held.pop(run_dir.resolve(), None)
    if fd is None:
        return
    (run_dir / OWNER).unlink(missing_ok=True)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
