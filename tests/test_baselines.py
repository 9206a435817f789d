"""Baselines: the networks and `ssnas baseline` on the fine-tune engine."""

from __future__ import annotations

import pytest
import torch
from mlflow import MlflowClient

from ssnas_core.baselines.models import BASELINES, create_baseline
from ssnas_core.cli import main
from ssnas_core.errors import ConfigError
from ssnas_core.search_space.network import count_parameters


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("c_in", [1, 3])
def test_baselines_take_small_images_and_give_finite_logits(name, c_in) -> None:
    model = create_baseline(name, c_in, 7, 28).eval()
    out = model(torch.randn(2, c_in, 28, 28))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


def test_parameter_counts_match_the_literature() -> None:
    assert count_parameters(create_baseline("resnet32", 3, 10, 32)) == pytest.approx(0.46e6, rel=0.02)
    assert count_parameters(create_baseline("resnet18", 3, 10, 32)) == pytest.approx(11.17e6, rel=0.01)
    with pytest.raises(ConfigError, match="resnet18"):
        create_baseline("vgg16", 1, 2, 28)


def test_every_way_of_building_a_network_for_a_fine_tune_draws_its_initialisation_from_the_seed() -> None:
    """The CLI, the API and a study's trials all build through these: the same seed gives the same weights."""
    from ssnas_core.data.synthetic import make_synthetic
    from ssnas_core.finetune.setup import build_baseline, build_derived
    from ssnas_core.search_space.supernet import Supernet

    data = make_synthetic(n_train=16, n_val=8, n_test=8, seed=0)
    genotype = Supernet(1, 4).genotype()
    builds = {"baseline": lambda seed: build_baseline("resnet32", data, seed=seed),
              "derived": lambda seed: build_derived(genotype, data, 4, 3, None, seed=seed)[0]}
    for kind, build in builds.items():
        first = build(3).state_dict()
        torch.rand(100)  # whatever ran before must not matter
        again, other = build(3).state_dict(), build(4).state_dict()
        assert all(torch.equal(first[k], again[k]) for k in first), kind
        assert not all(torch.equal(first[k], other[k]) for k in first), kind


def test_baseline_command_tracks_a_run_without_registering(workdir, capsys) -> None:
    args = ["baseline", "--model", "resnet32", "--loss", "ldam-drw", "--dataset", "synthetic", "--epochs", "1",
            "--batch-size", "32", "--device", "cpu"]
    assert main(args) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["ssnas.stage"] == "baseline" and run.data.tags["ssnas.method"] == "resnet32-ldam-drw"
    assert "test/balanced_acc" in run.data.metrics and run.data.params["finetune.loss"] == "ldam-drw"
    (output,) = run.outputs.model_outputs  # an MLflow 3 LoggedModel, listed under the run's Logged models
    model = client.get_logged_model(output.model_id)
    assert model.source_run_id == run_id and model.status == "READY" and model.tags["ssnas.loss"] == "ldam-drw"
    assert "MLmodel" in {a.path for a in client.list_logged_model_artifacts(output.model_id)}
    assert client.search_registered_models() == []
