"""Benchmark search steps: images/s and peak memory of the engine's own ``step`` (not a test).

Runs on torch alone (no mlflow/optuna), on synthetic uint8 images held on the device:

    python scripts/bench_search.py --device cpu --batch-size 32 --width 16
    python scripts/bench_search.py --device cuda --batch-size 32 256 --steps 30

images/s counts the images of the weight batch per step (each step also makes
two views of an alpha batch of the same size), as the DESIGN.md reference does.
Prints one JSON object per configuration.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ssnas_core.config import RunConfig, with_overrides  # noqa: E402
from ssnas_core.data.synthetic import make_synthetic  # noqa: E402
from ssnas_core.search.setup import build_search  # noqa: E402
from ssnas_core.search_space.network import count_parameters  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(args: argparse.Namespace, batch_size: int) -> dict[str, object]:
    n = batch_size * 2 * (args.steps + args.warmup)
    data = make_synthetic(n_train=n, n_val=8, n_test=8, size=args.size, channels=args.channels, seed=0)
    overrides = {"device": args.device, "search.batch_size": batch_size, "search.width": args.width,
                 "search.arch_order": args.arch_order, "search.amp": args.amp,
                 "search.channels_last": args.channels_last, "search.relaxation": args.relaxation,
                 "search.ssl": args.ssl, "search.epochs": 1, "data.size": args.size}
    setup = build_search(with_overrides(RunConfig(), overrides), dataset=data)
    engine, device = setup.engine, setup.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    aug = torch.Generator(device=device).manual_seed(0)
    batches = list(engine._batches(0))
    for batch in batches[: args.warmup]:
        engine.step(batch, 0.025, aug)
    _sync(device)
    start = time.perf_counter()
    for batch in batches[args.warmup: args.warmup + args.steps]:
        engine.step(batch, 0.025, aug)
    _sync(device)
    seconds = time.perf_counter() - start
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "device": str(device), "name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "batch_size": batch_size, "width": args.width, "size": args.size,
        "channels": args.channels, "arch_order": args.arch_order, "amp": args.amp,
        "channels_last": args.channels_last, "steps": args.steps,
        "ms_per_step": round(1000 * seconds / args.steps, 1),
        "images_per_s": round(batch_size * args.steps / seconds, 2),
        "peak_memory_mb": round(peak / 2**20, 1),
        "supernet_params": count_parameters(engine.supernet),
    }


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
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for batch_size in args.batch_size:
        print(json.dumps(bench(args, batch_size)), flush=True)


if __name__ == "__main__":
    main()
