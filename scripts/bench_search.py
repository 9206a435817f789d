"""Benchmark search steps: dispatched operations, images/s and peak memory of the engine's ``step`` (not a test).

Runs on torch alone (no mlflow/optuna), on synthetic uint8 images held on the device:

    python scripts/bench_search.py --device cpu --batch-size 32 --width 16
    python scripts/bench_search.py --device cuda --batch-size 32 256 --steps 30
    python scripts/bench_search.py --against 5d84007 --repeats 3      # side by side with another revision
    python scripts/bench_search.py --stage finetune --against 5d84007 # a fine-tune epoch, side by side

* images/s counts the images of the weight batch per step (each step also makes two views of an
  alpha batch of the same size), as the DESIGN.md reference does.
* ops: aten operations dispatched by one whole step (views, alpha update, weight update), counted
  with a ``TorchDispatchMode``; ``kernels`` leaves out the view and metadata operations (view,
  permute, slice, detach, ...), which launch nothing. Counted at first and second order; on the CPU also
  on the code path CUDA takes (``*_cuda_path``: contiguous tensors, dilated convs unsplit), where issue 11's
  targets (first order <= 3,000 kernels, second order <= 10,000) are counted.
* ``--time-ops`` (CPU): where the time of two more steps goes, per aten operation (and per operation and
  input shapes): each call timed on its own inside the steps, where CPU kernels run synchronously. Inside a step
  a kernel meets cold caches, so these times are what a step pays, not what the kernel costs alone.
* peak memory: the process's maximum resident set on the CPU (each measurement runs in its own
  process with ``--against``), ``max_memory_allocated`` on CUDA.
* ``--tracking``: one epoch's off-step work (checkpoint, batched metrics, genotype and heatmap plots,
  uploads) through a real MLflow SQLite store, and its share of an epoch of ``--epoch-steps`` steps: for a
  regular epoch (``offstep_s``, ``offstep_share``), for the last one, which also draws the alpha trajectory
  (``*_final``; so does every ``TRAJECTORY_PLOT_EVERY``-th, epoch 0 included), and for the first
  (``offstep_s_first``: it also imports matplotlib and the MLflow store's modules, once per process).
* ``--against REV`` checks REV out into a temporary git worktree and runs the same measurement on
  both code trees in alternation (A B A B ...), each in a fresh process, then prints the medians
  and the ratios.

Prints one JSON object per configuration (and a table with ``--against``).
"""

from __future__ import annotations

import argparse
import collections
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VIEW_OPS = frozenset({
    "view", "permute", "_unsafe_view", "detach", "slice", "select", "unsqueeze", "squeeze", "expand", "t",
    "transpose", "alias", "as_strided", "unbind", "split", "split_with_sizes", "unflatten", "reshape",
    "_reshape_alias", "chunk", "diagonal", "narrow", "lift_fresh", "empty", "empty_like", "_to_copy_view",
})


def _build(args: argparse.Namespace, batch_size: int, order: int) -> tuple[Any, Any, list[Any]]:
    import torch

    from ssnas_core.config import RunConfig, with_overrides
    from ssnas_core.data.synthetic import make_synthetic
    from ssnas_core.search.setup import build_search

    n = batch_size * 2 * (args.steps + args.warmup + 1)
    data = make_synthetic(n_train=n, n_val=8, n_test=8, size=args.size, channels=args.channels, seed=0)
    overrides = {"device": args.device, "search.batch_size": batch_size, "search.width": args.width,
                 "search.arch_order": order, "search.amp": args.amp,
                 "search.channels_last": args.channels_last, "search.relaxation": args.relaxation,
                 "search.ssl": args.ssl, "search.epochs": 1, "data.size": args.size}
    setup = build_search(with_overrides(RunConfig(), overrides), dataset=data)
    aug = torch.Generator(device=setup.device).manual_seed(0)
    return setup, aug, list(setup.engine._batches(0))


def count_ops(args: argparse.Namespace, batch_size: int, order: int, cuda_path: bool = False) -> dict[str, int]:
    """Operations dispatched by one search step (after one warm-up step).

    ``cuda_path``: on the CPU, count the code path a CUDA device takes: contiguous tensors (channels_last is
    the CPU's default only), dilated depthwise convs as such (the CPU splits them into phases, with the
    permutes and copies that needs) and the mixing's weight gradients stacked
    (``edge_group.STACK_WEIGHT_GRADS``). Issue 11's targets are counted on this path.
    """
    import torch

    if cuda_path:
        import importlib

        import torch.nn.functional as F

        def plain(x, weight, stride, padding, dilation):  # type: ignore[no-untyped-def]
            return F.conv2d(x, weight, None, stride, padding, dilation, weight.shape[0])

        args = argparse.Namespace(**{**vars(args), "channels_last": "off"})
        patched = {}
        for name in ("primitives", "edge_group"):  # an older revision may have neither
            try:
                module = importlib.import_module(f"ssnas_core.search_space.{name}")
            except ImportError:
                continue
            for attr, value in (("depthwise_conv", plain), ("STACK_WEIGHT_GRADS", True)):  # as off the CPU
                if hasattr(module, attr):
                    patched[(module, attr)] = getattr(module, attr)
                    setattr(module, attr, value)
        try:
            return count_ops(args, batch_size, order)
        finally:
            for (module, attr), original in patched.items():
                setattr(module, attr, original)

    setup, aug, batches = _build(args, batch_size, order)
    setup.engine.step(batches[0], 0.025, aug)
    counted = _dispatched(lambda: setup.engine.step(batches[1], 0.025, aug))
    if setup.device.type == "cuda":
        torch.cuda.synchronize(setup.device)
    return counted


def bench(args: argparse.Namespace, batch_size: int) -> dict[str, object]:
    import torch

    from ssnas_core.search_space.network import count_parameters

    setup, aug, batches = _build(args, batch_size, args.arch_order)
    engine, device = setup.engine, setup.device

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for batch in batches[: args.warmup]:
        engine.step(batch, 0.025, aug)
    sync()
    start = time.perf_counter()
    for batch in batches[args.warmup: args.warmup + args.steps]:
        engine.step(batch, 0.025, aug)
    sync()
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    out: dict[str, object] = {
        "code": str(REPO if not args.code_root else args.code_root), "device": str(device),
        "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "batch_size": batch_size, "width": args.width, "size": args.size,
        "channels": args.channels, "arch_order": args.arch_order, "amp": args.amp,
        "channels_last": args.channels_last, "steps": args.steps,
        "ms_per_step": round(1000 * seconds / args.steps, 1),
        "images_per_s": round(batch_size * args.steps / seconds, 2),
        "peak_memory_mb": round(peak / 2**20, 1),
        "supernet_params": count_parameters(engine.supernet),
    }
    if args.count_ops:
        for order in (1, 2):
            counted = count_ops(args, min(batch_size, 8), order)
            out[f"ops_order{order}"], out[f"kernels_order{order}"] = counted["ops"], counted["kernels"]
            if device.type == "cpu":
                counted = count_ops(args, min(batch_size, 8), order, cuda_path=True)
                out[f"ops_order{order}_cuda_path"] = counted["ops"]
                out[f"kernels_order{order}_cuda_path"] = counted["kernels"]
    if args.time_ops:  # a CUDA call returns before its kernel ends: timing it per call would mislead
        out["time_ops"] = (time_ops(engine, batches[args.warmup: args.warmup + 2], aug) if device.type == "cpu"
                           else "CPU only")
    if args.tracking:
        off = offstep_seconds(engine)
        epoch = args.epoch_steps * seconds / args.steps
        out.update({"offstep_s_first": round(off["first"], 2), "offstep_s": round(off["regular"], 2),
                    "offstep_s_final": round(off["final"], 2), "epoch_s_at_defaults": round(epoch, 1),
                    "offstep_share": round(off["regular"] / epoch, 4),
                    "offstep_share_final": round(off["final"] / epoch, 4)})
    return out


def bench_finetune(args: argparse.Namespace, batch_size: int) -> dict[str, object]:
    """A fine-tune epoch of the derived network (a fixed genotype) on synthetic images: images/s, ops per step."""
    import torch

    from ssnas_core.config import RunConfig, with_overrides
    from ssnas_core.data.synthetic import make_synthetic
    from ssnas_core.finetune.setup import build_derived, build_finetune
    from ssnas_core.search_space.genotype import Genotype

    n = batch_size * (args.steps + 1)
    data = make_synthetic(n_train=n, n_val=batch_size, n_test=8, size=args.size, channels=args.channels, seed=0)
    cfg = with_overrides(RunConfig(), {"device": args.device, "finetune.batch_size": batch_size,
                                       "finetune.epochs": 2, "finetune.channels_last": args.channels_last,
                                       "finetune.amp": args.amp, "data.size": args.size})
    genotype = Genotype.from_json(GENOTYPE)
    seeded = {"seed": 0} if "seed" in inspect.signature(build_derived).parameters else {}  # older revisions: none
    model, _ = build_derived(genotype, data, args.width, 3, None, **seeded)
    setup = build_finetune(cfg, model, data, [])
    engine, device = setup.engine, setup.device
    engine.run_epoch()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    engine.run_epoch()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    out: dict[str, object] = {
        "code": str(args.code_root or REPO), "stage": "finetune", "batch_size": batch_size,
        "threads": torch.get_num_threads(), "steps": engine.steps_per_epoch,
        "ms_per_step": round(1000 * seconds / engine.steps_per_epoch, 1),
        "images_per_s": round(engine.steps_per_epoch * batch_size / seconds, 2),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if args.count_ops:  # a whole epoch (view, step, the epoch's one sync), per step
        ops = _dispatched(engine.run_epoch)
        out["ops_per_step"] = round(ops["ops"] / engine.steps_per_epoch)
        out["kernels_per_step"] = round(ops["kernels"] / engine.steps_per_epoch)
    return out


def _op_log(fn: Any, timed: bool = False) -> dict[str, collections.Counter[str]]:
    """Run ``fn()`` and log the aten operations it dispatches: ``calls`` per name; with ``timed`` also the
    seconds of each call per name (``seconds``) and per name and first three input shapes (``shaped``, with its
    ``shaped_calls``). Timing a call is only meaningful where it returns when its kernel is done (the CPU)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    log: dict[str, collections.Counter[str]] = {
        k: collections.Counter() for k in ("calls", "seconds", "shaped", "shaped_calls")}

    class Log(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            name = func.overloadpacket.__name__
            log["calls"][name] += 1
            if not timed:
                return func(*args, **(kwargs or {}))
            start = time.perf_counter()
            out = func(*args, **(kwargs or {}))
            spent = time.perf_counter() - start
            key = f"{name} {[tuple(a.shape) for a in args if hasattr(a, 'shape')][:3]}"
            log["seconds"][name] += spent
            log["shaped"][key] += spent
            log["shaped_calls"][key] += 1
            return out

    with Log():
        fn()
    return log


def time_ops(engine: Any, batches: list[Any], aug: Any, top: int = 20) -> dict[str, Any]:
    """Seconds per step by aten operation over ``batches`` (CPU: each call returns when its kernel is done)."""
    def steps() -> None:
        for batch in batches:
            engine.step(batch, 0.025, aug)

    start = time.perf_counter()
    log = _op_log(steps, timed=True)
    n = len(batches)
    wall = (time.perf_counter() - start) / n
    total = sum(log["seconds"].values())
    calls = log["shaped_calls"]
    return {"step_s": round(wall, 3), "in_ops_s": round(total / n, 3),
            "by_op": {k: f"{100 * v / total:.1f}%" for k, v in log["seconds"].most_common(top)},
            "by_op_and_shapes": {k: f"{1000 * v / n:.1f} ms a step, {1000 * v / calls[k]:.2f} ms a call "
                                    f"({calls[k] // n} a step)" for k, v in log["shaped"].most_common(top)}}


def _dispatched(fn: Any) -> dict[str, int]:
    """aten operations ``fn()`` dispatches: all (``ops``) and those that are not views (``kernels``)."""
    ops = _op_log(fn)["calls"]
    total = sum(ops.values())
    return {"ops": total, "kernels": total - sum(v for k, v in ops.items() if k in VIEW_OPS)}


# A fixed genotype for the fine-tune benchmark (every operation type, both cell kinds).
GENOTYPE = """{"normal": [["sep_conv_3x3", 0, 2], ["skip_connect", 1, 2], ["dil_conv_3x3", 0, 3],
 ["sep_conv_5x5", 2, 3], ["max_pool_3x3", 1, 4], ["dil_conv_5x5", 3, 4], ["avg_pool_3x3", 2, 5],
 ["sep_conv_3x3", 4, 5]], "reduce": [["max_pool_3x3", 0, 2], ["sep_conv_5x5", 1, 2], ["skip_connect", 0, 3],
 ["dil_conv_3x3", 2, 3], ["sep_conv_3x3", 1, 4], ["avg_pool_3x3", 3, 4], ["dil_conv_5x5", 0, 5],
 ["skip_connect", 4, 5]], "n_nodes": 4}"""


def offstep_seconds(engine: Any) -> dict[str, float]:
    """Seconds of an epoch's off-step work through a real MLflow store: checkpoint, metrics, plots, uploads.

    ``first``: the first epoch's (with the one-off imports; epoch 0 draws the trajectory); ``regular``: an
    epoch's that draws no trajectory; ``final``: the last epoch's (it draws the trajectory too). All three on the
    report of one real epoch.
    """
    import dataclasses

    from ssnas_core.checkpoint import LAST, save_checkpoint
    from ssnas_core.config import RunConfig, with_overrides
    from ssnas_core.search.artifacts import SearchArtifacts
    from ssnas_core.tracking.mlflow_adapter import MlflowTracker

    try:
        from ssnas_core.workflows.search import _log_epoch
    except ImportError:  # a revision from before ssnas_core.workflows (--against)
        from ssnas_core.cli.search_cmd import _log_epoch  # type: ignore[no-redef]

    with tempfile.TemporaryDirectory() as tmp:
        cfg = with_overrides(RunConfig(), {"search.epochs": 1})
        tracker = MlflowTracker.start(f"sqlite:///{tmp}/mlflow.db", "bench", "bench", {})
        report = engine.run_epoch()
        run_dir = Path(tmp) / "run"
        artifacts = SearchArtifacts(run_dir, tracker, engine.supernet.primitives, engine.supernet.n_nodes)

        def once(epoch: int, final: bool) -> float:
            start = time.perf_counter()
            save_checkpoint(run_dir / "checkpoints", {"engine": engine.state_dict()})
            this = dataclasses.replace(report, epoch=epoch)
            _log_epoch(tracker, this, cfg, engine.supernet.primitives)
            artifacts.epoch(this, engine.alpha_history, final=final)
            tracker.log_artifact(run_dir / "checkpoints" / LAST, "checkpoints")
            return time.perf_counter() - start

        off = {"first": once(0, False), "regular": once(1, False), "final": once(2, True)}
        tracker.end("FINISHED")
    return off


def _child(args: argparse.Namespace, code_root: Path, batch_size: int) -> dict[str, Any]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--code-root", str(code_root), "--batch-size",
            str(batch_size)]
    for flag in ("device", "width", "size", "channels", "steps", "warmup", "arch_order", "relaxation", "ssl",
                 "amp", "channels_last", "threads", "stage", "epoch_steps"):
        argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    for flag in ("count_ops", "time_ops", "tracking"):
        if getattr(args, flag):
            argv.append(f"--{flag.replace('_', '-')}")
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip().splitlines()
    return dict(json.loads(out[-1]))


def against(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "other"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(other), args.against],
                       check=True, capture_output=True)
        try:
            for batch_size in args.batch_size:
                runs: dict[str, list[dict[str, Any]]] = {"this": [], args.against: []}
                for _ in range(args.repeats):  # A B A B: drift on a shared machine hits both alike
                    runs["this"].append(_child(args, REPO, batch_size))
                    runs[args.against].append(_child(args, other, batch_size))
                _table(runs, args.against, batch_size)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(other)],
                           check=False, capture_output=True)


def _table(runs: dict[str, list[dict[str, Any]]], rev: str, batch_size: int) -> None:
    keys = ["images_per_s", "ms_per_step", "peak_memory_mb", "ops_per_step", "kernels_per_step",
            "ops_order1", "kernels_order1", "ops_order2",
            "kernels_order2", "ops_order1_cuda_path", "kernels_order1_cuda_path", "ops_order2_cuda_path",
            "kernels_order2_cuda_path", "offstep_s", "offstep_share", "offstep_s_final", "offstep_share_final"]
    print(f"\nbatch {batch_size}: median of {len(runs['this'])} runs each, alternated")
    print(f"| | this tree | {rev} | ratio |")
    print("|---|---|---|---|")
    for key in keys:
        if key not in runs["this"][0]:
            continue
        a = statistics.median(r[key] for r in runs["this"])
        b = statistics.median(r[key] for r in runs[rev])
        print(f"| {key} | {a:g} | {b:g} | {a / b:.2f}x |")
    print(json.dumps({"this": runs["this"], rev: runs[rev]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--batch-size", type=int, nargs="+", default=[32], help="one or more batch sizes")
    p.add_argument("--width", type=int, default=16, help="initial channels C")
    p.add_argument("--size", type=int, default=28, help="image size")
    p.add_argument("--channels", type=int, default=1, help="image channels")
    p.add_argument("--steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--arch-order", type=int, default=1, choices=(1, 2))
    p.add_argument("--relaxation", default="sigmoid", choices=("sigmoid", "softmax"))
    p.add_argument("--ssl", default="barlow-twins", choices=("barlow-twins", "simclr", "ce"))
    p.add_argument("--amp", default="none", choices=("none", "bf16"))
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--stage", default="search", choices=("search", "finetune"),
                   help="search: one search step; finetune: a fine-tune epoch of a fixed derived network")
    p.add_argument("--count-ops", action="store_true", help="also count dispatched operations per step")
    p.add_argument("--time-ops", action="store_true",
                   help="search stage on the CPU: time two more steps per aten operation (where a step's time goes)")
    p.add_argument("--tracking", action="store_true",
                   help="also time an epoch's off-step work with MLflow, as a share of an epoch of --epoch-steps")
    p.add_argument("--epoch-steps", type=int, default=60,
                   help="steps of the epoch the off-step share refers to (60: PneumoniaMNIST at rho 10, batch 32)")
    p.add_argument("--against", metavar="REV", help="compare with this git revision, side by side")
    p.add_argument("--repeats", type=int, default=3, help="with --against: runs of each tree")
    p.add_argument("--code-root", default="", help=argparse.SUPPRESS)  # which ssnas_core to import
    args = p.parse_args()
    if args.time_ops and args.stage != "search":
        p.error("--time-ops times search steps: drop it or use --stage search")
    if args.against:
        against(args)
        return
    sys.path.insert(0, str(args.code_root or REPO))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for batch_size in args.batch_size:
        measure = bench_finetune if args.stage == "finetune" else bench
        print(json.dumps(measure(args, batch_size)), flush=True)


if __name__ == "__main__":
    main()
