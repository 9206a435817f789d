"""A progress bar for long work: tqdm when installed, otherwise silent."""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator


@contextlib.contextmanager
def progress_bar(total: int, desc: str) -> Iterator[Callable[[int, int], None]]:
    """Yield ``update(done, total)``; draws on stderr only when it is a terminal or tqdm is forced."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency of the CLI extras
        yield lambda done, total: None
        return
    bar = tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True,
               disable=not sys.stderr.isatty())

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        bar.close()
