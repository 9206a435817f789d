"""The ``ssnas`` command line: the composition root.

Bad input (any ``SsnasError``) prints one line ``ssnas: error: ...`` and exits
with status 2; a diverged run exits 1 with its MLflow run marked FAILED; an
interrupt (Ctrl-C, SIGTERM) marks the run KILLED and exits 130/143.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import warnings
from typing import Any, Sequence

from ssnas_core import __version__
from ssnas_core.cli.args import add_config_flags, given_overrides
from ssnas_core.errors import DivergenceError, SsnasError


def _search_parser(sub: Any) -> None:
    p = sub.add_parser(
        "search", help="architecture search without labels (FairDARTS + Barlow Twins by default)",
        description="Search a cell architecture on the training images without using labels: a DARTS supernet "
                    "trained by bi-level optimisation on two stratified halves of the training set, with the "
                    "Barlow Twins loss on two augmented views and FairDARTS sigmoid relaxation. Prints the MLflow "
                    "run id; the genotype is its genotype.json artifact.",
    )
    p.add_argument("--resume", metavar="RUN_ID", default=None,
                   help="continue an interrupted search from its last checkpoint, into the same MLflow run")
    add_config_flags(p, ("", "data", "search", "tracking"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssnas", description="Self-supervised neural architecture search on imbalanced image datasets.")
    parser.add_argument("--version", action="version", version=f"ssnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _search_parser(sub)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    return f"ssnas: warning: {message}\n"


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so runs end KILLED with their checkpoint kept."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
    warnings.formatwarning = _one_line_warning
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.command == "search":
            from ssnas_core.cli.search_cmd import run_search

            run_id = run_search(given_overrides(args), resume=args.resume)
            print(run_id)
            return 0
        parser.error(f"unknown command {args.command}")
    except SsnasError as err:
        print(f"ssnas: error: {err}", file=sys.stderr)
        return 2
    except DivergenceError as err:
        print(f"ssnas: run failed: {err}", file=sys.stderr)
        return 1
    except _Terminated:
        print("ssnas: terminated; resume with --resume RUN_ID", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("ssnas: interrupted; resume with --resume RUN_ID", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
