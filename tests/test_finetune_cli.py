"""`ssnas finetune` and `ssnas models download` end to end on synthetic data."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow.artifacts
import pytest
import torch
from mlflow import MlflowClient

from ssnas_core.cli import main

from .conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
FT = ["--epochs", "2", "--batch-size", "16", "--device", "cpu"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """One tiny search and one fine-tune of it, shared by the tests of this module."""
    work = tmp_path_factory.mktemp("ft")
    old = os.getcwd()
    os.chdir(work)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        assert main(["search", *TINY, "--epochs", "1"]) == 0
        search_id = _last_run(uri, "search")
        assert main(["finetune", "--search-run", search_id, *FT]) == 0
        yield work, uri, search_id, _last_run(uri, "finetune")
    finally:
        os.chdir(old)
        os.environ.pop("MLFLOW_TRACKING_URI", None)


def _last_run(uri: str, stage: str) -> str:
    client = MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(ids, f"tags.`ssnas.stage` = '{stage}'", order_by=["attributes.start_time DESC"])
    return runs[0].info.run_id


def test_finetune_run_fulfils_the_contract(searched) -> None:
    work, uri, search_id, run_id = searched
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["ssnas.stage"] == "finetune" and tags["ssnas.method"] == "fairdarts-bt"
    assert tags["ssnas.search_run_id"] == search_id and tags["ssnas.dataset"] == "synthetic"
    assert run.info.run_name == "finetune-fairdarts-bt-focal-la-synthetic-rho1-s0" and tags["ssnas.device"] == "cpu"
    assert int(tags["ssnas.inherited"].split()[0]) > 0
    # how far its search got, from the search's search_summary.json
    summary = json.loads((work / "ssnas-runs" / search_id / "artifacts" / "search_summary.json").read_text())
    assert summary["epochs"] == 1 and set(summary["fallback_nodes"]) == {"normal", "reduce"}
    assert tags["ssnas.search_epochs"] == "1"
    assert tags["ssnas.fallback_nodes"] == str(sum(summary["fallback_nodes"].values()))
    assert tags["ssnas.decided_fraction"] == "/".join(f"{summary['decided_fraction'][c]:.3f}"
                                                      for c in ("normal", "reduce"))
    assert "search_summary.json" in {a.path for a in client.list_artifacts(search_id)}
    assert run.data.params["finetune.loss"] == "focal-la" and run.data.params["finetune.gamma"] == "2.0"
    m = run.data.metrics
    for key in ["train/loss", "val/acc", "val/auc", "val/balanced_acc", "test/acc", "test/auc", "test/error",
                "test/balanced_acc", "test/macro_f1", "test/many_shot_acc", "test/head_acc", "test/tail_acc"]:
        assert key in m, key
    assert {k for k in m if k.startswith("test/error/")} == {"test/error/class_0", "test/error/class_1"}
    assert [x.step for x in client.get_metric_history(run_id, "train/loss")] == [0, 1]
    files = {a.path for a in client.list_artifacts(run_id, "test")}
    assert {"test/per_class.csv", "test/predictions.csv", "test/confusion_matrix.png", "test/per_class_error.png"} \
        <= files
    assert any(f.startswith("test/synthetic_test_[AUC]") for f in files)
    # an MLflow 3 LoggedModel (the run's Logged models, the experiment's Models tab), registered from models:/
    (output,) = run.outputs.model_outputs
    model = client.get_logged_model(output.model_id)
    assert model.source_run_id == run_id and model.status == "READY" and model.name == "model"
    assert model.tags["ssnas.search_run_id"] == search_id and model.tags["ssnas.genotype"].startswith("normal:")
    assert {"MLmodel", "data"} <= {a.path for a in client.list_logged_model_artifacts(output.model_id)}
    version = client.get_model_version_by_alias("ssnas-synthetic", "champion")
    assert version.run_id == run_id
    assert version.source == f"models:/{output.model_id}"
    # the registry says what a version is: description and tags, and which file the sha256 is of
    assert "fairdarts-bt fine-tuned with focal-la on synthetic" in version.description
    assert version.tags["ssnas.search_run_id"] == search_id and version.tags["ssnas.genotype"].startswith("normal:")
    registered = client.get_registered_model("ssnas-synthetic")
    assert "champion" in registered.description
    assert registered.tags["ssnas.dataset"] == "synthetic" and registered.tags["ssnas.val_metric"] == "val/balanced_acc"
    hashed = tags["ssnas.model_sha256_file"]  # models:/<id>/data/model.pt2: the torch.export program
    assert hashed == f"models:/{output.model_id}/data/model.pt2" and model.tags["ssnas.model_sha256"] == tags[
        "ssnas.model_sha256"]
    assert "data/model.pt2" in {a.path for a in client.list_logged_model_artifacts(output.model_id, "data")}


def test_champion_alias_moves_only_on_improvement(searched) -> None:
    from ssnas_core.tracking.mlflow_registry import register_model

    _, uri, _, run_id = searched
    champion = MlflowClient(uri).get_model_version_by_alias("ssnas-synthetic", "champion")
    current = float(champion.tags["ssnas.val_value"])
    worse, moved = register_model(uri, "ssnas-synthetic", run_id, "val/balanced_acc", current - 0.1)
    assert not moved
    better, moved = register_model(uri, "ssnas-synthetic", run_id, "val/balanced_acc", current + 0.1)
    assert moved and str(MlflowClient(uri).get_model_version_by_alias("ssnas-synthetic", "champion").version) == better


def test_downloaded_model_predicts_in_a_fresh_process(searched, tmp_path) -> None:
    work, uri, _, run_id = searched
    logged = MlflowClient(uri).get_run(run_id).data.metrics["test/acc"]
    out = tmp_path / "dl"
    assert main(["models", "download", "ssnas-synthetic/1", "--out", str(out), "--tracking-uri", uri]) == 0
    mlmodel = (out / "model" / "MLmodel").read_text()  # the LoggedModel's files, saved as a torch.export program
    assert "model_id: m-" in mlmodel and (out / "model" / "data" / "model.pt2").exists()
    code = (
        "import sys, json, mlflow.pytorch, torch\n"
        "from ssnas_core.data.registry import load_dataset\n"
        "from ssnas_core.evaluation.metrics import medmnist_acc\n"
        "from ssnas_core.finetune.portable import load_model\n"
        "ds = load_dataset('synthetic')\n"
        "accs = []\n"
        f"for model in (mlflow.pytorch.load_model({str(out / 'model')!r}), load_model({str(out)!r})):\n"
        "    with torch.no_grad(): score = model(ds.test.images.float()).numpy()\n"
        "    accs.append(medmnist_acc(ds.test.labels.numpy(), score, ds.task))\n"
        "print(json.dumps(accs))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    unpickled, rebuilt = json.loads(proc.stdout.strip().splitlines()[-1])
    assert unpickled == pytest.approx(logged, abs=1e-9) and rebuilt == pytest.approx(logged, abs=1e-9)
    assert (out / "model" / "genotype.json").exists() or any(out.rglob("genotype.json"))


def test_no_inherit_trains_from_scratch(searched, capsys, monkeypatch) -> None:
    work, uri, search_id, _ = searched
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["finetune", "--search-run", search_id, *FT[:2], "--epochs", "1", "--no-inherit",
                 "--no-tracking"]) == 0
    err = capsys.readouterr().err
    assert "0 tensors inherited" in err
    assert re.search(r"ssnas finetune: epoch 1/1: train loss \d\.\d{4}, val balanced_acc \d\.\d{4} \(best", err)
    # the final line names balanced accuracy: ACC alone hides a one-class classifier on imbalanced data
    assert re.search(r"ssnas finetune: test ACC \d\.\d{4} AUC \d\.\d{4} balanced accuracy \d\.\d{4} ", err)


@pytest.mark.parametrize("case", ["unknown run", "bad genotype op", "malformed genotype", "head of 3 classes",
                                  "no architecture"])
def test_bad_input_exits_2(case, searched, tmp_path, capsys, monkeypatch) -> None:
    work, uri, search_id, _ = searched
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    geno = json.loads((work / "ssnas-runs" / search_id / "artifacts" / "genotype.json").read_text())
    args = ["--dataset", "synthetic", *FT]
    if case == "unknown run":
        args += ["--search-run", "feedfacefeedface"]
    elif case == "bad genotype op":
        geno["normal"][0][0] = "conv_7x7"
        (tmp_path / "g.json").write_text(json.dumps(geno))
        args += ["--genotype", str(tmp_path / "g.json")]
    elif case == "malformed genotype":
        (tmp_path / "g.json").write_text("{\"normal\": 3}")
        args += ["--genotype", str(tmp_path / "g.json")]
    elif case == "head of 3 classes":
        (tmp_path / "g.json").write_text(json.dumps(geno))
        torch.save({"head.weight": torch.zeros(3, 16), "head.bias": torch.zeros(3)}, tmp_path / "w.pt")
        args += ["--genotype", str(tmp_path / "g.json"), "--weights", str(tmp_path / "w.pt"), "--width", "4"]
    client = MlflowClient(uri)
    runs_before = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    assert main(["finetune", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("ssnas: error:")]) == 1, err
    runs_after = len(client.search_runs([e.experiment_id for e in client.search_experiments()]))
    assert runs_after == runs_before


def test_multilabel_finetune_uses_sigmoid_forms(tmp_path) -> None:
    from ssnas_core.config import RunConfig, with_overrides
    from ssnas_core.data.synthetic import make_synthetic
    from ssnas_core.evaluation.metrics import classification_metrics
    from ssnas_core.finetune.setup import build_derived, build_finetune
    from ssnas_core.search_space.supernet import Supernet

    data = make_synthetic(n_train=64, n_val=32, n_test=32, n_classes=3, multilabel=True, seed=0)
    cfg = with_overrides(RunConfig(), {"device": "cpu", "finetune.epochs": 1, "finetune.batch_size": 16})
    model, _ = build_derived(Supernet(1, 4).genotype(), data, 4, 3, None, seed=0)
    setup = build_finetune(cfg, model, data, [])
    assert torch.isfinite(torch.tensor(setup.engine.run_epoch()))
    y, score = setup.engine.evaluate("test")
    assert score.shape == (32, 3) and ((score >= 0) & (score <= 1)).all()
    metrics = classification_metrics(y, score, data.task, setup.train_counts)
    assert {"auc/0", "ap/2", "map"} <= set(metrics)
    from ssnas_core.finetune.report import write_outputs

    files = write_outputs(tmp_path, "synthetic", 28, "test", y, score, data.task, data.class_names,
                          setup.train_counts, metrics, "run", plots=True)
    assert (tmp_path / "per_class_error.png") in files  # missed and false alarms per label
    with open(tmp_path / "per_class.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and all(sum(int(r[k]) for k in ("tp", "fn", "fp", "tn")) == 32 for r in rows)
    seen: list[tuple[int, int]] = []  # what the epoch's progress bar is told: every step, in order
    setup.engine.run_epoch(progress=lambda done, total: seen.append((done, total)))
    steps = setup.engine.steps_per_epoch
    assert steps > 1 and seen == [(s, steps) for s in range(1, steps + 1)]


@pytest.mark.parametrize("tau_posthoc", ["auto", "1.5"])
def test_post_hoc_tau_is_logged_saved_and_applied_by_the_downloaded_model(tau_posthoc, searched, tmp_path,
                                                                          monkeypatch) -> None:
    from ssnas_core.finetune.portable import load_model
    from ssnas_core.finetune.serving import ServingModel

    work, uri, search_id, _ = searched
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["finetune", "--search-run", search_id, *FT, "--imbalance-factor", "4", "--loss", "ce-la",
                 "--tau-posthoc", tau_posthoc, "--experiment", f"posthoc-{tau_posthoc}"]) == 0
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(f"posthoc-{tau_posthoc}")
    run = client.search_runs([exp.experiment_id])[0]
    m = run.data.metrics
    assert run.data.params["finetune.loss"] == "ce-la" and run.data.params["finetune.tau_posthoc"] == tau_posthoc
    tau = m["finetune/tau_posthoc"]
    assert tau == 1.5 if tau_posthoc == "1.5" else -2.0 <= tau <= 2.0
    assert {"test_raw/acc", "test_raw/auc", "test_raw/balanced_acc", "test/balanced_acc"} <= set(m)
    out = tmp_path / "dl"
    mlflow.artifacts.download_artifacts(f"models:/{run.outputs.model_outputs[0].model_id}", dst_path=str(out),
                                        tracking_uri=uri)
    config = json.loads(next(out.rglob("model_config.json")).read_text())
    offset = torch.tensor(config["logit_offset"])
    assert offset.shape == (2,) and (tau == 0 or bool(offset[0] > offset[1]) == (tau > 0))  # tau * log prior
    from ssnas_core.data.registry import load_dataset
    from ssnas_core.evaluation.metrics import medmnist_acc

    ds = load_dataset("synthetic")
    model = load_model(out)
    with torch.no_grad():
        score = model(ds.test.images.float()).numpy()
        plain = ServingModel(model.net, model.mean.flatten().tolist(), model.std.flatten().tolist(), False)(
            ds.test.images.float()).numpy()
    assert medmnist_acc(ds.test.labels.numpy(), score, ds.task) == pytest.approx(m["test/acc"], abs=1e-9)
    assert medmnist_acc(ds.test.labels.numpy(), plain, ds.task) == pytest.approx(m["test_raw/acc"], abs=1e-9)


def test_a_genotype_file_carries_its_search_settings_and_summary(searched, tmp_path, monkeypatch) -> None:
    """--genotype alone (no weights): the method name, width and search figures come from the files beside it."""
    import shutil

    work, uri, search_id, _ = searched
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    record = tmp_path / "record"
    record.mkdir()
    for name in ("genotype.json", "config.json", "search_summary.json"):
        shutil.copy(work / "ssnas-runs" / search_id / "artifacts" / name, record / name)
    assert main(["finetune", "--genotype", str(record / "genotype.json"), "--dataset", "synthetic", *FT,
                 "--epochs", "1", "--experiment", "from-a-record"]) == 0
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("from-a-record").experiment_id])[0]
    summary = json.loads((record / "search_summary.json").read_text())
    assert run.data.tags["ssnas.method"] == "fairdarts-bt"  # from config.json, not "genotype"
    assert run.data.tags["ssnas.fallback_nodes"] == str(sum(summary["fallback_nodes"].values()))
    assert run.data.tags["ssnas.search_epochs"] == "1"
    assert run.data.tags["ssnas.inherited"].startswith("0 of")  # no weights given


def test_weights_torch_refuses_give_one_line_not_torchs_message(searched, tmp_path, capsys, monkeypatch) -> None:
    """torch's weights_only refusal is several lines long; the user gets one."""
    import pickle

    work, uri, search_id, _ = searched
    monkeypatch.chdir(work)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (tmp_path / "w.pt").write_bytes(pickle.dumps({"head.weight": object()}))
    genotype = work / "ssnas-runs" / search_id / "artifacts" / "genotype.json"
    capsys.readouterr()
    assert main(["finetune", "--genotype", str(genotype), "--weights", str(tmp_path / "w.pt"), "--dataset",
                 "synthetic", *FT]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    at = [i for i, line in enumerate(err) if line.startswith("ssnas: error:")]
    assert len(at) == 1 and at[0] == len(err) - 1 and "is not a PyTorch weights file" in err[-1], err


def test_runs_record_their_data_as_mlflow_dataset_inputs(searched) -> None:
    """The Dataset column: train/val/test with digests and class counts (same data, same digest: test_lineage.py)."""
    _, uri, search_id, run_id = searched
    client = MlflowClient(uri)

    def inputs(rid: str) -> dict[str, tuple[str, str, dict]]:
        found = {}
        for i in client.get_run(rid).inputs.dataset_inputs:
            context = {t.key: t.value for t in i.tags}["mlflow.data.context"]
            found[context] = (i.dataset.name, i.dataset.digest, json.loads(i.dataset.profile))
        return found

    ft, search = inputs(run_id), inputs(search_id)
    assert set(ft) == {"train", "val", "test"} and set(search) == {"train"}
    assert all(name == "synthetic" for name, _, _ in ft.values())
    assert search["train"][2]["limit_train"] == search["train"][2]["num_images"] == 64  # TINY's --limit-train
    assert search["train"][1] != ft["train"][1]  # the fine-tune trains on all the images: another digest
    assert len({digest for _, digest, _ in ft.values()}) == 3
    profile = ft["train"][2]
    assert sum(profile["class_counts"].values()) == profile["num_images"] > 64
    assert profile["imbalance_factor"] == 1.0 and profile["seed"] == 0
