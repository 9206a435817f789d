"""One config: flattening, overrides, validation, generated flags."""

import pytest

from ssnas_core.cli import build_parser
from ssnas_core.cli.args import given_overrides
from ssnas_core.config import RunConfig, flatten, from_flat, with_overrides
from ssnas_core.errors import ConfigError


def test_paper_defaults() -> None:
    flat = flatten(RunConfig())
    assert flat["search.lr"] == 0.025 and flat["search.momentum"] == 0.9
    assert flat["search.weight_decay"] == 3e-4 and flat["search.batch_size"] == 32
    assert flat["search.epochs"] == 100 and flat["search.cells"] == 3 and flat["search.nodes"] == 4
    assert flat["search.relaxation"] == "sigmoid" and flat["search.ssl"] == "barlow-twins"


def test_overrides_by_dotted_key_and_round_trip() -> None:
    cfg = with_overrides(RunConfig(), {"search.lambda_bt": "0.01", "seed": 3, "data.limit_train": 100})
    assert cfg.search.lambda_bt == 0.01 and cfg.seed == 3 and cfg.data.limit_train == 100
    assert from_flat(flatten(cfg)) == cfg


@pytest.mark.parametrize("overrides, message", [
    ({"search.lambda": 1.0}, "unknown option"),
    ({"search.epochs": "many"}, "expected a int"),
    ({"search.relaxation": "gumbel"}, "choose one of"),
    ({"data.imbalance_factor": 0.1}, "largest/smallest"),
    ({"search.batch_size": 1}, "at least 2"),
])
def test_bad_overrides_are_refused(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        with_overrides(RunConfig(), overrides)


def test_short_and_long_flags_reach_the_same_field() -> None:
    parser = build_parser()
    ns = parser.parse_args(["search", "--epochs", "5", "--search.lambda-bt", "0.02", "--no-tracking"])
    given = given_overrides(ns)
    assert given == {"search.epochs": 5, "search.lambda_bt": 0.02, "tracking.enabled": False}


def test_every_field_has_help() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["search"].format_help()  # type: ignore[union-attr]
    for flag in ["--dataset", "--data-root", "--imbalance-factor", "--limit-train", "--epochs", "--batch-size",
                 "--width", "--cells", "--nodes", "--relaxation", "--ssl", "--lambda-bt", "--w01", "--seed",
                 "--device", "--experiment", "--tracking-uri", "--resume"]:
        assert flag in text


def test_a_config_file_sets_options_and_the_command_line_wins(workdir, capsys) -> None:
    from mlflow import MlflowClient

    from ssnas_core.cli import main

    (workdir / "search.yaml").write_text("data.dataset: synthetic\ndata.limit-train: 64\nsearch:\n  batch_size: 8\n"
                                         "  width: 4\n  projector: 32-32\n  epochs: 5\ndevice: cpu\nseed: 3\n")
    assert main(["search", "--config", str(workdir / "search.yaml"), "--epochs", "1"]) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    params = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}").get_run(run_id).data.params
    assert params["search.width"] == "4" and params["seed"] == "3" and params["search.epochs"] == "1"
    (workdir / "bad.toml").write_text("[search]\nepochs = 2\nwidht = 4\n")
    assert main(["search", "--config", str(workdir / "bad.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown option(s) ['search.widht']" in err[0]
    (workdir / "broken.yaml").write_text("search: [unclosed\n")
    assert main(["search", "--config", str(workdir / "broken.yaml")]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
