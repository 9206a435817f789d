"""`ssnas search` end to end on synthetic data, read back through MlflowClient."""

from __future__ import annotations

import os

import torch
from mlflow import MlflowClient

from ssnas_core.cli import main
from ssnas_core.config import SEARCH_SECTIONS, RunConfig, flatten
from ssnas_core.search_space.primitives import FAIRDARTS_PRIMITIVES as PRIMITIVES

from .conftest import TINY


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def test_one_epoch_search_fulfils_the_mlflow_contract(workdir, capsys) -> None:
    assert main(["search", *TINY, "--epochs", "2"]) == 0
    captured = capsys.readouterr()
    run_id = captured.out.strip().splitlines()[-1]
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "ssnas-synthetic"
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI's training-runs view
    tags = run.data.tags
    assert tags["ssnas.stage"] == "search" and tags["ssnas.method"] == "fairdarts-bt"
    assert tags["ssnas.dataset"] == "synthetic" and tags["ssnas.imbalance_factor"] == "1.0"
    # readable at a glance: a run name, MLflow's own context tags, versions and the device actually used
    assert run.info.run_name == "search-fairdarts-bt-synthetic-rho1-s0"
    assert tags["mlflow.user"] and tags["mlflow.source.name"] and tags["mlflow.source.type"] == "LOCAL"
    import torch

    assert tags["ssnas.torch_version"] == torch.__version__ and tags["ssnas.device"] == "cpu"
    assert tags["ssnas.owner"].endswith(f":{os.getpid()}")
    # alpha heatmaps as images with a step (the UI's image slider): one per cell and epoch
    images = [a.path for a in client.list_artifacts(run_id, "images")]
    assert len([p for p in images if "alphas_normal" in p and p.endswith(".png")]) == 2, images
    assert set(flatten(RunConfig(), sections=SEARCH_SECTIONS)) == set(run.data.params)
    assert run.data.params["search.width"] == "4"

    metrics = run.data.metrics
    for key in ["search/loss_bt", "search/loss_zero_one", "search/loss_arch", "search/lr",
                "search/skip_count/normal", "search/skip_count/reduce"]:
        assert key in metrics, key
    alpha_keys = {k for k in metrics if k.startswith("alpha/")}
    assert len(alpha_keys) == 2 * 14 * len(PRIMITIVES)
    assert "alpha/normal/0-2/sep_conv_3x3" in alpha_keys and "alpha/reduce/4-5/skip_connect" in alpha_keys
    steps = [m.step for m in client.get_metric_history(run_id, "search/loss_bt")]
    assert steps == list(range(8))  # 4 steps per epoch, 2 epochs
    assert not any(k.endswith("/none") for k in alpha_keys)  # FairDARTS' 7 operations
    assert [m.step for m in client.get_metric_history(run_id, "alpha/normal/0-2/max_pool_3x3")] == [0, 1]
    for cell in ("normal", "reduce"):  # convergence, every epoch
        assert [m.step for m in client.get_metric_history(run_id, f"search/decided/{cell}")] == [0, 1]
        assert [m.step for m in client.get_metric_history(run_id, f"search/fallback_nodes/{cell}")] == [0, 1]
    assert [m.step for m in client.get_metric_history(run_id, "search/grad_share_01")] == [0, 1]
    fallback = int(metrics["search/fallback_nodes/normal"] + metrics["search/fallback_nodes/reduce"])
    assert tags["ssnas.fallback_nodes"] == str(fallback)
    genotype = tags["ssnas.genotype"]  # readable: "normal: <op> <from>-><to>, ...; reduce: ..."
    assert genotype.startswith("normal: ") and "; reduce: " in genotype and "->" in genotype
    warned = "the search did not converge" in captured.err
    assert warned == (fallback > 0)
    assert run.data.params["search.arch_lr"] == "0.003" and run.data.params["search.arch_betas"] == "0.9,0.999"
    assert metrics["search/n_params_supernet_with_head"] > metrics["search/n_params_supernet"]

    files = _artifacts(client, run_id)
    for path in ["alphas/trajectory.csv", "alphas/normal.png", "alphas/reduce.png", "alphas/trajectory.png",
                 "genotypes/epoch_000.json", "genotypes/epoch_000_normal.png", "genotypes/epoch_001_reduce.png",
                 "genotype.json", "supernet.pt", "checkpoints/last.ckpt", "config.json"]:
        assert path in files, path
    local = client.download_artifacts(run_id, "alphas/trajectory.csv", str(workdir))
    rows = open(local).read().splitlines()
    assert rows[0] == "epoch,cell,edge,op,weight" and len(rows) == 1 + 2 * 2 * 14 * len(PRIMITIVES)


def test_the_two_views_differ_during_search(workdir, monkeypatch) -> None:
    from ssnas_core.search import engine as engine_module

    seen: list[float] = []
    original = engine_module.SearchEngine.arch_step

    def spy(self, vw, va, lr):
        seen.append(float((vw[0] - vw[1]).abs().mean()))
        return original(self, vw, va, lr)

    monkeypatch.setattr(engine_module.SearchEngine, "arch_step", spy)
    assert main(["search", *TINY, "--epochs", "1", "--no-tracking"]) == 0
    assert len(seen) == 4 and min(seen) > 0.01


def test_search_runs_with_tracking_off_and_all_relaxations(workdir) -> None:
    for extra in (["--relaxation", "softmax", "--ssl", "simclr"], ["--ssl", "ce", "--arch-order", "2"],
                  ["--amp", "bf16", "--channels-last", "off"]):
        assert main(["search", *TINY, "--epochs", "1", "--no-tracking", *extra]) == 0
    assert not (workdir / "mlflow.db").exists()


def test_searched_alphas_move(workdir, capsys) -> None:
    assert main(["search", *TINY, "--epochs", "2", "--no-tracking", "--search.arch-lr", "0.01"]) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    state = torch.load(workdir / "ssnas-runs" / run_id / "artifacts" / "supernet.pt", weights_only=True)
    assert state["alpha_normal"].abs().max() > 0.01


def test_stop_after_runs_the_first_epochs_of_the_schedule(workdir, capsys) -> None:
    import json

    from mlflow import MlflowClient

    assert main(["search", *TINY, "--epochs", "50", "--search.stop-after", "2"]) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    run = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.params["search.epochs"] == "50"
    summary = json.loads((workdir / "ssnas-runs" / run_id / "artifacts" / "search_summary.json").read_text())
    assert summary["epochs"] == 2 and (workdir / "ssnas-runs" / run_id / "artifacts" / "genotype.json").exists()
    lrs = [m.value for m in MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_metric_history(run_id, "search/lr")]
    assert lrs and min(lrs) > 0.02  # the 50-epoch cosine schedule (from 0.025) has barely started to decay
