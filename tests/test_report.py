"""`ssnas report`: the table logic on plain runs, and the command on real runs."""

from __future__ import annotations

import math

import pytest
from mlflow import MlflowClient

from ssnas_core.cli import main
from ssnas_core.evaluation.report import summarize, to_markdown

from .conftest import TINY


def _run(method: str, stage: str, acc: float, val: float, loss: str = "focal-la") -> dict:
    return {"run_id": "x", "tags": {"ssnas.method": method, "ssnas.stage": stage, "ssnas.loss": loss,
                                    "ssnas.imbalance_factor": "10.0", "ssnas.n_params": "1000000"},
            "params": {}, "metrics": {"test/acc": acc, "val/balanced_acc": val, "test/error/normal": 1 - acc}}


def test_summary_means_over_seeds_and_picks_the_best_on_val() -> None:
    runs = [_run("fairdarts-bt", "finetune", 0.8, 0.7), _run("fairdarts-bt", "finetune", 0.9, 0.6),
            _run("resnet18-ce", "baseline", 0.85, 0.8, loss="ce")]
    mean = {r["method"]: r for r in summarize(runs, "mean")}
    ours = mean["fairdarts-bt + focal-la (rho=10)"]
    assert ours["n_runs"] == 2 and ours["test/acc"][0] == pytest.approx(0.85)
    assert ours["test/acc"][1] == pytest.approx(math.sqrt(0.005))
    assert ours["params_m"][0] == pytest.approx(1.0)
    best = {r["method"]: r for r in summarize(runs, "best")}
    assert best["fairdarts-bt + focal-la (rho=10)"]["test/acc"] == (0.8, None)  # best val, not best test
    table = to_markdown(summarize(runs, "mean"))
    assert "| resnet18-ce (rho=10) | 1 |" in table and "Error normal" in table


def test_report_command_on_a_search_finetune_and_baseline(workdir, capsys) -> None:
    assert main(["search", *TINY, "--epochs", "1"]) == 0
    search_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["finetune", "--search-run", search_id, "--epochs", "1", "--batch-size", "32"]) == 0
    # a one-epoch search has not converged: the fine-tune says so, and so do its tag and the report
    assert "ssnas finetune: warning: the search did not converge" in capsys.readouterr().err
    fallback = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(search_id).data.tags["ssnas.fallback_nodes"]
    assert int(fallback) > 0
    assert main(["baseline", "--model", "resnet32", "--loss", "ce", "--dataset", "synthetic", "--epochs", "1",
                 "--batch-size", "32"]) == 0
    capsys.readouterr()
    assert main(["report", "--experiment", "ssnas-synthetic", "--out", str(workdir / "rep")]) == 0
    md = (workdir / "rep" / "report.md").read_text()
    assert f"| fairdarts-bt + focal-la | 1 | {fallback} |" in md and "| resnet32-ce | 1 | - |" in md
    assert "Error class_0" in md
    assert (workdir / "rep" / "per_class_error.png").stat().st_size > 1000
    assert list((workdir / "rep").glob("alphas_fairdarts-bt_*.png"))
    assert not [p for p in (workdir / "rep").iterdir() if p.is_dir()]  # no downloads left in the report folder
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("ssnas-synthetic")
    (report,) = client.search_runs([exp.experiment_id], "tags.`ssnas.stage` = 'report'")
    assert {a.path for a in client.list_artifacts(report.info.run_id, "report")} >= {"report/report.md",
                                                                                  "report/report.csv"}


def test_report_on_an_unknown_experiment_exits_2(workdir, capsys) -> None:
    assert main(["report", "--experiment", "nope"]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err
