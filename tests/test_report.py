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
    assert "## Like for like" in md and "| ours (FairDARTS + Barlow Twins) | " in md
    assert (workdir / "rep" / "like_for_like.csv").read_text().count("\n") == 3  # header + 2 architectures
    assert (workdir / "rep" / "per_class_error.png").stat().st_size > 1000
    assert list((workdir / "rep").glob("alphas_fairdarts-bt_*.png"))
    assert not [p for p in (workdir / "rep").iterdir() if p.is_dir()]  # no downloads left in the report folder
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("ssnas-synthetic")
    (report,) = client.search_runs([exp.experiment_id], "tags.`ssnas.stage` = 'report'")
    # a runs file kept with the results: filled once per run, and enough on its own for a later store
    runs_file = workdir / "kept" / "runs.jsonl"
    for _ in range(2):
        assert main(["report", "--experiment", "ssnas-synthetic", "--runs-file", str(runs_file),
                     "--out", str(workdir / "rep2")]) == 0
    assert len(runs_file.read_text().splitlines()) == 2  # the fine-tune and the baseline, once each
    assert main(["report", "--experiment", "results-of-an-earlier-store", "--runs-file", str(runs_file),
                 "--out", str(workdir / "rep3")]) == 0
    assert (workdir / "rep3" / "like_for_like.csv").read_text() == (workdir / "rep2" / "like_for_like.csv").read_text()
    runs_file.write_text(runs_file.read_text() + "not json\n")
    capsys.readouterr()
    assert main(["report", "--experiment", "ssnas-synthetic", "--runs-file", str(runs_file)]) == 2
    assert "runs.jsonl:3 is not a run record" in capsys.readouterr().err
    assert {a.path for a in client.list_artifacts(report.info.run_id, "report")} >= {"report/report.md",
                                                                                  "report/report.csv"}


def test_report_on_an_unknown_experiment_exits_2(workdir, capsys) -> None:
    assert main(["report", "--experiment", "nope"]) == 2
    assert "no MLflow experiment named 'nope'" in capsys.readouterr().err


def _ft(arch: str, loss: str, seed: int, bal: float, stage: str = "finetune", fallback: str = "0",
        posthoc: float | None = None, raw: float | None = None, rho: str = "10.0") -> dict:
    tags = {"ssnas.method": arch if stage == "finetune" else f"{arch}-{loss}", "ssnas.stage": stage,
            "ssnas.loss": loss, "ssnas.imbalance_factor": rho, "ssnas.n_params": "800000"}
    if stage == "finetune":
        tags.update({"ssnas.fallback_nodes": fallback, "ssnas.decided_fraction": "0.939/0.898",
                     "ssnas.search_epochs": "15"})
    metrics = {"test/balanced_acc": bal, "test/acc": bal, "test/auc": 0.9}
    params = {"seed": str(seed), "finetune.tau_posthoc": "none" if posthoc is None else "auto"}
    if posthoc is not None:
        metrics.update({"finetune/tau_posthoc": posthoc, "test_raw/balanced_acc": raw, "test_raw/acc": raw,
                        "test_raw/auc": 0.9})
    return {"run_id": f"{arch}{loss}{seed}{posthoc}", "tags": tags, "params": params, "metrics": metrics}


def test_like_for_like_puts_architectures_in_rows_and_losses_in_columns() -> None:
    from ssnas_core.evaluation.report import like_for_like, like_for_like_markdown

    runs = [_ft("fairdarts-bt", "ce", 0, 0.80), _ft("fairdarts-bt", "ce", 1, 0.90),
            _ft("fairdarts-bt", "ce", 1, 0.10),  # the same seed again: left out
            _ft("darts-simclr", "ce", 0, 0.70),
            _ft("fairdarts-bt", "focal-la", 0, 0.85, posthoc=-0.5, raw=0.60),
            _ft("resnet18", "ce", 0, 0.75, stage="baseline"),
            _ft("darts-ce", "ce-la", 0, 0.5, fallback="0", rho="1.0")]
    grid = like_for_like(runs)
    g = grid["rhos"]["10"]
    assert g["rows"] == ["fairdarts-bt", "darts-simclr", "resnet18"]
    assert g["columns"] == ["ce", "focal-la", "focal-la + post-hoc tau"]
    mean, std, n = g["cells"][("fairdarts-bt", "ce")]["test/balanced_acc"]
    assert n == 2 and mean == pytest.approx(0.85) and std == pytest.approx(math.sqrt(0.005))
    assert g["cells"][("fairdarts-bt", "focal-la")]["test/balanced_acc"][0] == pytest.approx(0.60)  # raw
    assert g["cells"][("fairdarts-bt", "focal-la + post-hoc tau")]["test/balanced_acc"][0] == pytest.approx(0.85)
    assert g["fallback"] == {"fairdarts-bt": "0", "darts-simclr": "0", "resnet18": "-"}
    assert list(grid["rhos"]) == ["10", "1"]  # the long-tailed set first
    md = like_for_like_markdown(runs)
    assert "| ours (FairDARTS + Barlow Twins) | 0.80 | 0 | 0.939/0.898 | 15 | 0.850 +- 0.071 (2) | 0.600 (1) | " \
           "0.850 (1) |" in md
    assert "| ResNet-18 | 0.80 | - | - | - | 0.750 (1) | - | - |" in md


def test_like_for_like_says_which_cells_ran_under_bf16() -> None:
    """A cell's seeds fine-tuned under bf16 autocast (``finetune.amp``) are counted beside the seed count."""
    from ssnas_core.evaluation.report import like_for_like, like_for_like_markdown

    runs = [_ft("resnet18", "ce", seed, 0.8, stage="baseline") for seed in range(3)]
    runs += [_ft("resnet18", "ce-la", seed, 0.9, stage="baseline") for seed in range(2)]
    for run in runs[:3] + runs[4:]:
        run["params"]["finetune.amp"] = "bf16"
    runs.append(_ft("fairdarts-bt", "ce", 0, 0.7))  # no finetune.amp recorded: float32
    grid = like_for_like(runs)["rhos"]["10"]
    assert grid["bf16"] == {("resnet18", "ce"): 3, ("resnet18", "ce-la"): 1, ("fairdarts-bt", "ce"): 0}
    md = like_for_like_markdown(runs)
    assert "| ResNet-18 | 0.80 | - | - | - | 0.800 +- 0.000 (3, bf16) | 0.900 +- 0.000 (2, 1 bf16) |" in md
    assert "| ours (FairDARTS + Barlow Twins) | 0.80 | 0 | 0.939/0.898 | 15 | 0.700 (1) | - |" in md


def test_like_for_like_shows_each_seeds_best_val_epoch_against_the_fine_tune_length() -> None:
    from ssnas_core.evaluation.report import like_for_like_markdown

    runs = []
    for seed, best in ((0, 29), (1, 12)):  # logged 0-based: epochs 30 and 13 of 30
        run = _ft("fairdarts-bt", "ce", seed, 0.8)
        run["metrics"]["best_epoch"] = float(best)
        run["params"]["finetune.epochs"] = "30"
        runs.append(run)
    runs.append(_ft("darts-simclr", "ce", 0, 0.7))  # nothing recorded
    md = like_for_like_markdown(runs)
    assert "### Best val epoch of each seed, imbalance factor 10" in md
    assert "| ours (FairDARTS + Barlow Twins) | 13, 30 of 30 |" in md
    assert "| SSNAS (DARTS + SimCLR) | - |" in md


def test_per_method_table_names_post_hoc_runs_as_such() -> None:
    from ssnas_core.evaluation.report import method_label

    assert method_label(_ft("fairdarts-bt", "focal-la", 0, 0.85, posthoc=-0.8, raw=0.88)) == \
        "fairdarts-bt + focal-la + post-hoc tau (rho=10)"
    assert method_label(_ft("fairdarts-bt", "focal-la", 0, 0.88)) == "fairdarts-bt + focal-la (rho=10)"


def test_per_method_table_names_the_imbalance_factor_of_every_row_when_runs_mix_factors() -> None:
    from ssnas_core.evaluation.report import summarize

    released = [_ft("fairdarts-bt", "ce-la", 0, 0.9, rho="1.0")]
    assert [r["method"] for r in summarize(released)] == ["fairdarts-bt + ce-la"]  # one factor: no need to say
    mixed = [*released, _ft("fairdarts-bt", "ce-la", 0, 0.8)]
    assert [r["method"] for r in summarize(mixed)] == ["fairdarts-bt + ce-la (rho=1)",
                                                       "fairdarts-bt + ce-la (rho=10)"]
