"""Measure the zero-one loss's share of the alpha gradient under each search loss, on one supernet.

The share is ``||grad_alpha w01 * L_01|| / ||grad_alpha s * L_ssl||`` (what ``search/grad_share_01``
logs), with the alphas spread as after some search (``|sigmoid(alpha) - 0.5|`` about ``--spread``).
FairDARTS set ``w01 = 10`` against cross-entropy; ``SearchConfig.ssl_arch_scale`` = auto rescales
the Barlow Twins loss so that its share lands where cross-entropy's does. Run:

    .venv/bin/python scripts/measure_balance.py [--data-root ../shared/data/medmnist] [--batches 8]

Without ``--data-root`` it uses the synthetic dataset (offline).
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch

from ssnas_core.config import RunConfig, with_overrides
from ssnas_core.losses.zero_one import zero_one_loss
from ssnas_core.search.setup import build_search


def shares(ssl: str, scale: str, data_root: str, batches: int, spread: float, seed: int) -> list[float]:
    over = {"search.ssl": ssl, "search.ssl_arch_scale": scale, "device": "cpu", "seed": seed}
    if data_root:
        over |= {"data.dataset": "pneumoniamnist", "data.data_root": data_root, "data.imbalance_factor": 10.0}
    else:
        over |= {"data.dataset": "synthetic"}
    setup = build_search(with_overrides(RunConfig(), over))
    engine = setup.engine
    cfg = engine.cfg
    gen = torch.Generator().manual_seed(seed)
    a = math.log((0.5 + spread) / (0.5 - spread))  # sigmoid(a) = 0.5 + spread
    with torch.no_grad():
        for alpha in engine.supernet.alphas():
            sign = torch.randint(0, 2, alpha.shape, generator=gen).float() * 2 - 1
            alpha.copy_(sign * a * (0.5 + torch.rand(alpha.shape, generator=gen)))
    alphas = engine.supernet.alphas()
    g01 = torch.autograd.grad(cfg.w01 * zero_one_loss(alphas), alphas)
    n01 = torch.linalg.vector_norm(torch.cat([g.flatten() for g in g01]))
    out = []
    aug = torch.Generator().manual_seed(seed)
    engine.objective.train()
    for s, (_, _, xa, ya) in enumerate(engine._batches(0)):
        if s == batches:
            break
        v1, v2 = map(engine._prepare, engine.views(xa, aug))
        loss = engine.objective(v1, v2, ya) * cfg.arch_ssl_scale()
        g = torch.autograd.grad(loss, alphas)
        out.append(float(n01 / torch.linalg.vector_norm(torch.cat([x.flatten() for x in g]))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", default="", help="folder with pneumoniamnist.npz (default: synthetic data)")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--spread", type=float, default=0.03)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"zero-one share of the alpha gradient, |sigmoid - 0.5| ~ {args.spread}, mean +- std over "
          f"{args.batches} batches")
    for ssl, scale in (("ce", "1"), ("barlow-twins", "1"), ("barlow-twins", "auto"), ("simclr", "1")):
        vals = shares(ssl, scale, args.data_root, args.batches, args.spread, args.seed)
        print(f"  {ssl:13s} scale {scale:5s}: {statistics.mean(vals):.3e} +- {statistics.stdev(vals):.1e}")


if __name__ == "__main__":
    main()
