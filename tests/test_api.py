"""ssnas_core.api: the engines from Python, with any tracker, returning result objects."""

from __future__ import annotations

import optuna
import pytest
from mlflow import MlflowClient

from ssnas_core import api
from ssnas_core.config import RunConfig, with_overrides
from ssnas_core.errors import ConfigError
from ssnas_core.search_space.supernet import Supernet
from ssnas_core.tracking.base import InMemoryTracker, NullTracker

TINY = {"dataset": "synthetic", "limit_train": 64, "batch_size": 8, "width": 4, "search__projector": "32-32",
        "device": "cpu"}


def test_options_resolve_plain_names_per_command_and_refuse_the_rest(tmp_path) -> None:
    assert api.options(None, "search", epochs=3, dataset="synthetic") == {"search.epochs": 3,
                                                                         "data.dataset": "synthetic"}
    assert api.options({"seed": 1}, "finetune", epochs=3, finetune__lr=0.1) == {
        "seed": 1, "finetune.epochs": 3, "finetune.lr": 0.1}
    cfg = with_overrides(RunConfig(), {"search.epochs": 7})
    assert api.options(cfg, "search") == {"search.epochs": 7}  # a RunConfig gives what differs from defaults
    (tmp_path / "c.yaml").write_text("search:\n  epochs: 5\nseed: 2\n")
    assert api.options(tmp_path / "c.yaml", "search", seed=3) == {"search.epochs": 5, "seed": 3}  # keywords win
    with pytest.raises(ConfigError, match="search.epochs or finetune.epochs"):
        api.options(None, "study", epochs=3)
    with pytest.raises(ConfigError, match="unknown option 'epoch'"):
        api.options(None, "search", epoch=3)
    with pytest.raises(ConfigError, match="unknown option"):
        api.options({"search.nope": 1}, "search")


def test_search_then_finetune_into_in_memory_trackers(workdir) -> None:
    searched = InMemoryTracker()
    found = api.search(tracker=searched, epochs=1, **TINY)
    assert searched.status == "FINISHED" and searched.tags["ssnas.stage"] == "search"
    assert searched.tags["mlflow.runName"] == "search-fairdarts-bt-synthetic-rho1-s0"
    assert searched.params["search.epochs"] == 1 and "search/decided/normal" in searched.metrics
    assert [i.context for i in searched.inputs] == ["train"] and searched.inputs[0].profile["num_images"] == 64
    assert found.genotype.n_nodes == 4 and found.summary["epochs"] == 1
    assert found.fallback_nodes == sum(found.summary["fallback_nodes"].values())
    assert found.genotype_file.exists() and found.weights_file.exists()
    assert not (workdir / "mlflow.db").exists()  # nothing went to MLflow

    tuned_into = InMemoryTracker()
    tuned = api.finetune(genotype=found.genotype_file, weights=found.weights_file, tracker=tuned_into, epochs=1,
                         batch_size=16, device="cpu", dataset="synthetic")
    assert tuned_into.status == "FINISHED" and tuned_into.tags["ssnas.stage"] == "finetune"
    assert tuned.metric == "balanced_acc" and 0.0 <= tuned.test["balanced_acc"] <= 1.0
    assert tuned_into.metrics["test/acc"][-1][1] == pytest.approx(tuned.test["acc"])
    assert {i.context for i in tuned_into.inputs} == {"train", "val", "test"}
    assert any(name.startswith("test/") for name in tuned_into.artifacts)
    assert not (workdir / "mlflow.db").exists()  # no model logged or registered without MLflow


def test_a_fine_tune_from_scratch_is_reproduced_by_its_seed(workdir) -> None:
    # Its initialisation was once drawn unseeded: two runs of seed 0 (DARTS cell, rho 10) gave 0.919 and 0.930.
    (workdir / "g.json").write_text(Supernet(1, 4).genotype().to_json())
    runs = {}
    for i, seed in enumerate((0, 0, 1)):
        runs[i] = api.finetune(genotype="g.json", tracker=NullTracker(), epochs=1, loss="ce", seed=seed,
                               **{k: v for k, v in TINY.items() if k != "search__projector"}).test
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_an_mlflow_tracker_given_to_a_fine_tune_receives_its_model_and_registration(workdir) -> None:
    """The model goes to the given tracker's store, not to the configuration's (here the default ./mlflow.db)."""
    from ssnas_core.tracking.mlflow_adapter import MlflowTracker

    (workdir / "g.json").write_text(Supernet(1, 4).genotype().to_json())
    elsewhere = f"sqlite:///{workdir / 'lab.db'}"
    tracker = MlflowTracker.start(elsewhere, "notebook", "mine", {})
    api.finetune(genotype="g.json", tracker=tracker, epochs=1, loss="ce",
                 **{k: v for k, v in TINY.items() if k != "search__projector"})
    client = MlflowClient(elsewhere)
    (output,) = client.get_run(tracker.run_id).outputs.model_outputs
    assert client.get_logged_model(output.model_id).status == "READY"
    assert client.get_model_version_by_alias("ssnas-synthetic", "champion").run_id == tracker.run_id
    assert not (workdir / "mlflow.db").exists()


def test_baseline_with_no_tracker_and_a_study_on_sqlite(workdir) -> None:
    result = api.baseline("resnet32", tracker=NullTracker(), dataset="synthetic", epochs=1, batch_size=32,
                          device="cpu")
    assert 0.0 <= result.test["auc"] <= 1.0 and len(result.run_id) == 32

    (workdir / "g.json").write_text(Supernet(1, 4).genotype().to_json())
    storage = f"sqlite:///{workdir / 'o.db'}"
    done = api.study("tune_finetune", storage=storage, study_name="api", genotype="g.json", n_trials=2,
                     pruner="none", dataset="synthetic", limit_train=64, finetune__batch_size=16,
                     finetune__epochs=1, device="cpu", width=4)
    assert done.study == "api" and done.n_complete == 2 and done.best_value is not None
    assert done.best_params == optuna.load_study(study_name="api", storage=storage).best_params
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")  # the study's trials are MLflow runs
    exp = client.get_experiment_by_name("ssnas-study-api")
    trials = [r for r in client.search_runs([exp.experiment_id]) if "ssnas.optuna_trial" in r.data.tags]
    assert len(trials) == 2 and all(r.info.status == "FINISHED" for r in trials)
