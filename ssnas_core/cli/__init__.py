"""The ``ssnas`` command line: flags parsed into ``ssnas_core.api`` calls (runs are composed in
``ssnas_core.workflows``), plus the platform, registry, report and run-maintenance commands.

Bad input (any ``SsnasError``) prints one line ``ssnas: error: ...`` and exits
with status 2; a diverged run exits 1 with its MLflow run marked FAILED; an
interrupt (Ctrl-C, SIGTERM) marks the run KILLED and exits 130/143.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings
from collections import Counter
from typing import Any, NoReturn, Sequence

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


def _finetune_parser(sub: Any) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune a searched architecture with labels (focal loss + logit adjustment)",
        description="Build the derived network of a search run (same depth and width as its supernet), inherit "
                    "the searched weights of the chosen operations, add a linear head and train it with focal loss "
                    "on logit-adjusted logits. The best model on val is evaluated on test, logged with "
                    "mlflow.pytorch and registered as ssnas-<dataset>; alias champion moves only on improvement.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--search-run", metavar="RUN_ID", help="the search run whose genotype and weights to use")
    src.add_argument("--genotype", metavar="FILE", help="a genotype.json instead of a search run")
    p.add_argument("--weights", metavar="FILE", help="with --genotype: a supernet.pt to inherit weights from")
    p.add_argument("--width", type=int, help="initial channels (default: the search run's, else 16)")
    p.add_argument("--cells", type=int, help="cells (default: the search run's, else 3)")
    add_config_flags(p, ("", "data", "finetune", "tracking"))


def _baseline_parser(sub: Any) -> None:
    from ssnas_core.baselines.models import BASELINES

    p = sub.add_parser(
        "baseline", help="train a baseline network (ResNet-18/50/32) on the fine-tune engine",
        description="Train a baseline with the same data, losses, metrics and tracking as `ssnas finetune`: "
                    "ResNet-18/50 (torchvision, 3x3 stride-1 stem at 28-64 px as in the MedMNIST v2 benchmark) or "
                    "the CIFAR ResNet-32 of LDAM-DRW. The model is logged with mlflow.pytorch (not registered).")
    p.add_argument("--model", required=True, choices=sorted(BASELINES), help="the baseline network")
    add_config_flags(p, ("", "data", "finetune", "tracking"))


def _report_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report", help="method-vs-baseline table and plots for an experiment",
        description="Collect the finished finetune and baseline runs of an MLflow experiment into one table (one "
                    "row per method: params, test ACC, AUC, error, balanced accuracy, macro-F1, per-class error), "
                    "plot per-class error by method and the alpha trajectories of its search runs, write them to "
                    "--out and log them as a `report` run.")
    p.add_argument("--experiment", required=True, help="the MLflow experiment, e.g. ssnas-pneumoniamnist")
    p.add_argument("--mode", choices=("mean", "best"), default="mean",
                   help="mean +- std over runs of a method (seeds), or its best run on val (default: mean)")
    p.add_argument("--out", default="", help="output folder (default: report-<experiment>)")
    p.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///./mlflow.db)")
    p.add_argument("--runs-file", default="", help="a JSON-lines file of runs kept with the results: the "
                   "experiment's finished runs are added to it and the report covers all of its runs, so "
                   "results made with several MLflow stores add up (scripts/results.sh uses it)")


def _study_parser(sub: Any) -> None:
    p = sub.add_parser("study", help="Optuna studies: create/resume one, or join it as a worker",
                       description="`study run NAME` creates or resumes a study and runs trials; `study worker NAME` "
                                   "joins an existing study from any process or machine sharing --storage. "
                                   "Use PostgreSQL for several workers; SQLite serves one.")
    ssub = p.add_subparsers(dest="study_command", required=True, metavar="SUBCOMMAND")
    for cmd, text in (("run", "create or resume a study and run trials"), ("worker", "join an existing study")):
        s = ssub.add_parser(cmd, help=text, description=text)
        s.add_argument("name", metavar="NAME", help="the study: tune_finetune, tune_search or compare_methods")
        s.add_argument("--storage", default=os.environ.get("OPTUNA_STORAGE") or "sqlite:///ssnas-studies.db",
                       help="Optuna storage URL (default: $OPTUNA_STORAGE, else sqlite:///ssnas-studies.db; for "
                            "many workers postgresql+psycopg://user@host:5432/db, best given in $OPTUNA_STORAGE "
                            "so a password stays off the command line)")
        s.add_argument("--study-name", default="", help="name in the storage (default: NAME-<dataset>)")
        s.add_argument("--n-trials", type=int, default=None, help="finished trials the study should reach "
                       "(default: the study's budget)")
        s.add_argument("--timeout", type=float, default=None, help="stop this process after this many seconds")
        s.add_argument("--sampler", default="tpe", choices=("tpe", "random", "grid"), help="(default: tpe)")
        s.add_argument("--pruner", default="median", choices=("median", "hyperband", "none"),
                       help="prune on the per-epoch val metric (default: median)")
        s.add_argument("--heartbeat", type=int, default=10, help="seconds between worker heartbeats; a trial "
                       "silent for 3x this is failed and retried (default: 10)")
        s.add_argument("--search-run", metavar="RUN_ID", default=None, help="the search run to fine-tune")
        s.add_argument("--genotype", metavar="FILE", default=None, help="a genotype.json instead")
        s.add_argument("--weights", metavar="FILE", default=None, help="with --genotype: supernet.pt")
        s.add_argument("--width", type=int, default=None, help="initial channels (default: the search run's)")
        s.add_argument("--cells", type=int, default=None, help="cells (default: the search run's)")
        s.add_argument("--seeds", type=int, default=3, help="compare_methods: seeds per method (default: 3)")
        add_config_flags(s, ("", "data", "finetune", "search", "tracking"), long_only=("search",))


def _platform_parser(sub: Any) -> None:
    p = sub.add_parser("platform", help="start/stop the MLflow server and optuna-dashboard without Docker",
                       description="Run the compose stack's MLflow server (tracking, registry, proxied artifacts) "
                                   "and optuna-dashboard as local processes, on SQLite files in --state or on the "
                                   "PostgreSQL databases given. Prints the URLs.")
    psub = p.add_subparsers(dest="platform_command", required=True, metavar="SUBCOMMAND")
    u = psub.add_parser("up", help="start the services and wait until they answer")
    u.add_argument("--state", default=".ssnas-platform", help="folder for databases, artifacts, logs, pids")
    u.add_argument("--mlflow-backend", default="", help="MLflow backend store URI (default: SQLite in --state), "
                   "e.g. postgresql+psycopg://user@127.0.0.1:5432/mlflow")
    u.add_argument("--optuna-storage", default="", help="Optuna storage URL (default: SQLite in --state)")
    u.add_argument("--mlflow-port", type=int, default=5000, help="(default: 5000)")
    u.add_argument("--dashboard-port", type=int, default=8080, help="(default: 8080)")
    u.add_argument("--basic-auth", action="store_true", help="MLflow's basic-auth app: every request needs a "
                   "user; admin password from $SSNAS_ADMIN_PASSWORD")
    d = psub.add_parser("down", help="stop what `up` started")
    d.add_argument("--state", default=".ssnas-platform", help="the folder `up` used")


def _models_parser(sub: Any) -> None:
    p = sub.add_parser("models", help="registered models")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="SUBCOMMAND")
    d = msub.add_parser("download", help="download a registered model and its genotype",
                        description="Write the registered model into --out. Load it without unpickling with "
                                    "`ssnas_core.finetune.portable.load_model(OUT)` (architecture rebuilt from "
                                    "model_config.json, tensors read with torch.load(weights_only=True) after a "
                                    "sha256 check), or with `mlflow.pytorch.load_model(OUT/model)`, which loads the "
                                    "torch.export program data/model.pt2 (checked free of pickle payloads; it "
                                    "trusts torch's deserializer). Either maps float32 pixels (B, C, H, W) "
                                    "in 0-255 to probabilities (B, K).")
    d.add_argument("spec", metavar="NAME[@ALIAS]", help="e.g. ssnas-pneumoniamnist@champion, or NAME/VERSION")
    d.add_argument("--out", required=True, help="folder to write the model into")
    d.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///./mlflow.db)")


def _runs_parser(sub: Any) -> None:
    p = sub.add_parser("runs", help="maintenance of MLflow runs")
    rsub = p.add_subparsers(dest="runs_command", required=True, metavar="SUBCOMMAND")
    r = rsub.add_parser("reconcile", help="mark runs left RUNNING by a dead process as KILLED",
                        description="A run records its owner (host:pid) in tag ssnas.owner. A RUNNING run whose owner "
                                    "on this host is gone (killed, crashed, machine restarted) is marked KILLED with "
                                    "the reason in ssnas.end_reason; a search so ended resumes with --resume. Runs "
                                    "owned on other hosts are listed and left alone.")
    r.add_argument("--experiment", default="", help="only this experiment (default: all)")
    r.add_argument("--dry-run", action="store_true", help="list what would change, change nothing")
    r.add_argument("--tracking-uri", default="", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                   "sqlite:///./mlflow.db)")


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the problem and where the options are listed), not after the whole
    usage block; subcommands' parsers are of this class too (``add_subparsers`` makes them with it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}; see `{self.prog} --help`\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # Record each command's parser with what it left unparsed (its own and its subcommand's), innermost
        # first: argparse reports unknown options from the top-level parser, which would send `ssnas search
        # --nosuch` to `ssnas --help` instead of `ssnas search --help`, while `ssnas --nosuch search` belongs to
        # `ssnas --help`.
        parsed, extras = super().parse_known_args(args, namespace)
        parsed._ssnas_parsers = [*getattr(parsed, "_ssnas_parsers", []), (self, list(extras))]
        return parsed, extras

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        parsed, extras = self.parse_known_args(args, namespace)
        chain = vars(parsed).pop("_ssnas_parsers", [])
        if extras:
            # The outermost command that left arguments of its own unparsed (more than its subcommand left).
            for depth in reversed(range(len(chain))):
                parser, left = chain[depth]
                own = list((Counter(left) - Counter(chain[depth - 1][1] if depth else [])).elements())
                if own:
                    parser.error(f"unrecognized arguments: {' '.join(own)}")
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ssnas", description="Self-supervised neural architecture search on imbalanced image datasets.")
    parser.add_argument("--version", action="version", version=f"ssnas {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _search_parser(sub)
    _finetune_parser(sub)
    _baseline_parser(sub)
    _report_parser(sub)
    _study_parser(sub)
    _platform_parser(sub)
    _models_parser(sub)
    _runs_parser(sub)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      line: str | None = None) -> str:
    return f"ssnas: warning: {message}\n"


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so runs end KILLED with their checkpoint kept."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise _Terminated()


def _redeliver_swallowed_interrupts(unraisable: Any) -> None:
    """``sys.unraisablehook``: an interrupt raised inside a finaliser is delivered again.

    Python runs a signal's handler at the next bytecode boundary, which can be inside a ``__del__`` or a
    weakref callback (SQLAlchemy's, during a garbage collection); an exception raised there is printed as
    "Exception ignored" and dropped, so the run went on as if never signalled (seen: a SIGTERM during an
    epoch, and the search finished all 50 epochs). The signal is sent again from a helper thread a moment
    later (raising it here would run the handler inside this hook, which drops it too).
    """
    exc = unraisable.exc_value
    if isinstance(exc, _Terminated):
        again = signal.SIGTERM
    elif isinstance(exc, KeyboardInterrupt) and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        again = signal.SIGINT
    else:
        sys.__unraisablehook__(unraisable)
        return
    timer = threading.Timer(0.01, os.kill, (os.getpid(), again))
    timer.daemon = True
    timer.start()


def install_interrupt_handlers() -> None:
    """SIGTERM raises ``_Terminated`` (runs end KILLED, exit 143); interrupts lost in finalisers come again."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.unraisablehook = _redeliver_swallowed_interrupts


# What an interrupted command's user can do next (only a search resumes; a killed study trial is retried by
# the study, a killed fine-tune is run again).
_RESUME = {"search": "; resume with --resume RUN_ID",
           "study": "; start the same `ssnas study` command again to continue the study"}


def os_error_line(err: OSError, command: str) -> str:
    """One line for an OSError that reached the CLI: what failed, on which path, and the fix that fits it
    (a file where a folder belongs is not cured by freeing space)."""
    import errno

    where = f" ({err.filename})" if err.filename else ""
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        fix = "a file stands where a folder is needed: give another path or move that file"
    elif isinstance(err, IsADirectoryError):
        fix = "a folder stands where a file is needed: give a file path"
    elif isinstance(err, PermissionError):
        fix = "fix its permissions or give another path"
    elif err.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        fix = "free space"
    else:
        fix = "check the path, free space or fix permissions"
    if command == "search":
        fix += "; an interrupted search continues with --resume"
    return f"{err.strerror or err}{where}: {fix}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    install_interrupt_handlers()
    warnings.filterwarnings("ignore", message=".*pkg_resources.*")
    warnings.formatwarning = _one_line_warning
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        if args.command in ("search", "finetune", "baseline"):  # the CLI is a thin layer over ssnas_core.api
            from ssnas_core import api

            given = given_overrides(args)
            if args.command == "search":
                print(api.search(given, resume=args.resume).run_id)
            elif args.command == "finetune":
                print(api.finetune(given, search_run=args.search_run, genotype=args.genotype, weights=args.weights,
                                   width=args.width, cells=args.cells).run_id)
            else:
                print(api.baseline(args.model, given).run_id)
            return 0
        if args.command == "report":
            from ssnas_core.cli.report_cmd import run_report

            print(run_report(args.experiment, args.tracking_uri, args.out, args.mode, args.runs_file))
            return 0
        if args.command == "study":
            from ssnas_core import api

            api.study(args.name, given_overrides(args), storage=args.storage, create=args.study_command == "run",
                      study_name=args.study_name, n_trials=args.n_trials, timeout=args.timeout, sampler=args.sampler,
                      pruner=args.pruner, seeds=args.seeds, search_run=args.search_run, genotype=args.genotype,
                      weights=args.weights, width=args.width, cells=args.cells, heartbeat=args.heartbeat)
            return 0
        if args.command == "platform":
            from pathlib import Path

            from ssnas_core.cli import platform_cmd

            if args.platform_command == "down":
                print("stopped: " + (", ".join(platform_cmd.down(Path(args.state))) or "nothing was running"))
                return 0
            info = platform_cmd.up(Path(args.state), args.mlflow_backend, args.optuna_storage, args.mlflow_port,
                                   args.dashboard_port, args.basic_auth)
            print(f"MLflow: {info['mlflow']}  (backend {info['mlflow_backend']})\n"
                  f"optuna-dashboard: {info['dashboard']}  (storage {info['optuna_storage']})\n"
                  f"healthy after {info['seconds']} s; export MLFLOW_TRACKING_URI={info['mlflow']}")
            return 0
        if args.command == "runs":
            from ssnas_core.cli.reconcile_cmd import reconcile
            from ssnas_core.tracking.mlflow_store import default_tracking_uri

            rows = reconcile(args.tracking_uri or default_tracking_uri(), args.experiment, args.dry_run)
            print(f"{sum(r['action'].startswith('KILLED') for r in rows)} run(s) marked KILLED"
                  + (" (dry run: none changed)" if args.dry_run else "") + f", {len(rows)} RUNNING found")
            return 0
        if args.command == "models":
            from ssnas_core.cli.models_cmd import download

            print(download(args.spec, args.out, args.tracking_uri))
            return 0
        parser.error(f"unknown command {args.command}")
    except SsnasError as err:
        print(f"ssnas: error: {' '.join(str(err).split())}", file=sys.stderr)  # one line, whatever it embeds
        return 2
    except OSError as err:  # disk full, permissions, a vanished folder: one line, not a traceback
        print(f"ssnas: error: {os_error_line(err, args.command)}", file=sys.stderr)
        return 2
    except DivergenceError as err:
        print(f"ssnas: run failed: {err}", file=sys.stderr)
        return 1
    except _Terminated:
        print("ssnas: terminated" + _RESUME.get(args.command, ""), file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("ssnas: interrupted" + _RESUME.get(args.command, ""), file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
