"""Like-for-like results on PneumoniaMNIST: architectures x fine-tune losses x seeds, resumable across sessions.

What it runs (``scripts/results.sh`` calls it with the budgets below):

* For each imbalance factor and searched architecture (ours = FairDARTS + Barlow Twins, SSNAS = DARTS +
  SimCLR, DARTS supervised = DARTS + CE), the genotype of a recorded search in
  ``docs/results/searches/<arch>-rho<rho>/`` (with its ``search_summary.json``), or else a new search of
  ``--search-stop`` epochs of a ``--search-epochs`` cosine schedule, recorded there when it ends.
* For each architecture (the searched ones and ResNet-18), loss and seed, one fine-tune of ``--ft-epochs``
  epochs. ``focal-la`` runs with ``--tau-posthoc auto``, so it also gives the "focal-la + post-hoc tau"
  column (its plain test figures are logged as ``test_raw/*``).
* After every finished run, ``ssnas report --runs-file docs/results/runs.jsonl`` adds it to the runs file
  and rewrites ``docs/results/pneumonia/`` (report.md, like_for_like.csv, plots). A (architecture, rho,
  loss, seed) already in the runs file is skipped, so a later working period continues where the last one
  stopped (commit the runs file and searches/ before the period ends). A fine-tune of a recorded
  genotype takes its method name (``fairdarts-bt``, ``darts-simclr``, ``darts-ce``) from the search's
  ``config.json`` beside it.

Runs go ``--jobs`` at a time, each on one thread (two one-thread processes beat one two-thread process on
these 2 cores). ``--dry-run`` prints the plan.

    .venv/bin/python scripts/results.py --rhos 10 --archs ours ssnas --seeds 0 --ft-epochs 30 --jobs 2
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SSNAS = [sys.executable, "-m", "ssnas_core.cli"]
SEARCHED = {"ours": ("sigmoid", "barlow-twins", "fairdarts-bt"), "ssnas": ("softmax", "simclr", "darts-simclr"),
            "darts": ("softmax", "ce", "darts-ce")}
BASELINES = {"resnet18": "resnet18"}
EXPERIMENT = "results"


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rhos", nargs="+", default=["10", "1"], help="imbalance factors (1: as released)")
    p.add_argument("--archs", nargs="+", default=["ours", "ssnas", "darts", "resnet18"],
                   choices=[*SEARCHED, *BASELINES])
    p.add_argument("--losses", nargs="+", default=["ce", "ce-la", "focal-la"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--search-epochs", type=int, default=100, help="length of the search's cosine schedule (paper)")
    p.add_argument("--search-stop", type=int, default=15,
                   help="epochs actually searched (the recorded rho-10 search converged at epoch 14 of 100)")
    p.add_argument("--ft-epochs", type=int, default=30, help="fine-tune epochs (cosine schedule; paper: 600)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--baseline-amp", choices=("none", "bf16"), default="none",
                   help="mixed precision of the baselines' fine-tunes (bf16: ResNet-18 about 2.5x faster on a CPU "
                        "with AMX; recorded as the run's finetune.amp)")
    p.add_argument("--data-root", default=os.environ.get("SSNAS_DATA_ROOT", str(REPO.parent / "shared/data/medmnist")))
    p.add_argument("--work", default="/tmp/ssnas-results", help="MLflow store and run folders (not kept)")
    p.add_argument("--out", default=str(REPO / "docs/results"), help="runs.jsonl, searches/ and pneumonia/ here")
    p.add_argument("--dry-run", action="store_true")
    return p.parse_args()


def _done(runs_file: Path) -> set[tuple[str, str, str, str]]:
    """(architecture, rho, loss, seed) of every run already in the runs file."""
    names = {method: arch for arch, (_, _, method) in SEARCHED.items()}
    done = set()
    if runs_file.exists():
        for line in runs_file.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                loss, method = r["params"].get("finetune.loss", ""), r["tags"].get("ssnas.method", "")
                arch = names.get(method) or method.removesuffix(f"-{loss}")
                rho = f"{float(r['tags'].get('ssnas.imbalance_factor', '1')):g}"
                done.add((arch, rho, loss, r["params"].get("seed", "")))
    return done


def _run(cmd: list[str], log: Path) -> str:
    """Run one ssnas command on one thread; returns the run id it printed. Raises on failure."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=fh, text=True, env=env, cwd=log.parent)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[3:6])} ... failed ({proc.returncode}); see {log}")
    print(f"  done in {time.time() - start:.0f} s: {' '.join(cmd[3:])}", file=sys.stderr)
    return proc.stdout.strip().splitlines()[-1]


def main() -> None:
    a = _args()
    out, work = Path(a.out), Path(a.work)
    runs_file = out / "runs.jsonl"
    uri = f"sqlite:///{work / 'mlflow.db'}"
    common = ["--dataset", "pneumoniamnist", "--data-root", a.data_root, "--tracking-uri", uri,
              "--experiment", EXPERIMENT, "--work-dir", str(work / "runs"), "--device", "cpu"]
    done = _done(runs_file)
    searches = [(arch, rho) for rho in a.rhos for arch in a.archs if arch in SEARCHED]
    todo_search = [(arch, rho) for arch, rho in searches
                   if not (out / "searches" / f"{arch}-rho{rho}" / "genotype.json").exists()]
    finetunes = [(arch, rho, loss, str(seed)) for rho in a.rhos for arch in a.archs for seed in a.seeds
                 for loss in a.losses if (arch, rho, loss, str(seed)) not in done]
    print(f"searches to run: {todo_search or 'none'}; recorded: "
          f"{sorted(set(searches) - set(todo_search)) or 'none'}", file=sys.stderr)
    print(f"fine-tunes to run: {len(finetunes)} ({len(done)} already in {runs_file})", file=sys.stderr)
    if a.dry_run:
        for f in finetunes:
            print("  finetune", *f, file=sys.stderr)
        return

    def search(arch: str, rho: str) -> None:
        relaxation, ssl, _ = SEARCHED[arch]
        run = _run([*SSNAS, "search", *common, "--imbalance-factor", rho, "--batch-size", "32", "--seed", "0",
                    "--epochs", str(a.search_epochs), "--search.stop-after", str(a.search_stop),
                    "--relaxation", relaxation, "--ssl", ssl], work / "logs" / f"search-{arch}-rho{rho}.log")
        record = out / "searches" / f"{arch}-rho{rho}"
        record.mkdir(parents=True, exist_ok=True)
        art = work / "runs" / run / "artifacts"
        for name in ("genotype.json", "search_summary.json", "config.json", "alphas/trajectory.csv"):
            shutil.copy(art / name, record / Path(name).name)

    def finetune(arch: str, rho: str, loss: str, seed: str) -> None:
        base = [*common, "--imbalance-factor", rho, "--seed", seed, "--epochs", str(a.ft_epochs), "--loss", loss,
                "--tau-posthoc", "auto" if loss == "focal-la" else "none"]
        log = work / "logs" / f"ft-{arch}-rho{rho}-{loss}-s{seed}.log"
        if arch in SEARCHED:
            record = out / "searches" / f"{arch}-rho{rho}"
            _run([*SSNAS, "finetune", "--genotype", str(record / "genotype.json"), *base], log)
        else:
            _run([*SSNAS, "baseline", "--model", BASELINES[arch], *base, "--amp", a.baseline_amp], log)

    with cf.ThreadPoolExecutor(a.jobs) as pool:
        for f in cf.as_completed([pool.submit(search, *s) for s in todo_search]):
            f.result()
        jobs = {pool.submit(finetune, *f): f for f in finetunes}
        for f in cf.as_completed(jobs):
            try:
                f.result()
            except RuntimeError as err:
                print(f"ssnas results: {err}", file=sys.stderr)
                continue
            _report(uri, runs_file, out)


def _report(uri: str, runs_file: Path, out: Path) -> None:
    """Add the store's finished runs to the runs file and rewrite the report from all of it."""
    subprocess.run([*SSNAS, "report", "--experiment", EXPERIMENT, "--tracking-uri", uri, "--runs-file",
                    str(runs_file), "--out", str(out / "pneumonia")], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


if __name__ == "__main__":
    main()
