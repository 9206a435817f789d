"""Bad input: one line naming the problem and the fix, exit status 2, no MLflow run left behind."""

from __future__ import annotations

import numpy as np
import pytest

from ssnas_core.cli import main
from ssnas_core.data.synthetic import make_synthetic, write_npz

from .conftest import TINY


def _corrupt(root):
    (root / "pneumoniamnist.npz").write_bytes(b"not a zip file at all")


def _wrong_shapes(root):
    write_npz(make_synthetic(n_train=32, n_val=8, n_test=8), root / "pneumoniamnist.npz")


CASES = {
    "unknown dataset": (["--dataset", "nosuchmnist"], None, "nosuchmnist"),
    "imbalance factor < 1": (["--imbalance-factor", "0.5"], None, "largest/smallest"),
    "missing data file": (["--dataset", "pneumoniamnist", "--data-root", "{root}"], None, "pneumoniamnist.npz"),
    "corrupt data file": (["--dataset", "pneumoniamnist", "--data-root", "{root}"], _corrupt, "zip"),
    "wrong split sizes": (["--dataset", "pneumoniamnist", "--data-root", "{root}"], _wrong_shapes, "4708"),
    "a class left empty": (["--imbalance-factor", "1000"], None, "would keep"),
    "too many images asked": (["--limit-train", "100000"], None, "--limit-train"),
    "unreachable tracking server": (["--tracking-uri", "http://127.0.0.1:9"], None, "127.0.0.1:9"),
    "unknown run to resume": (["--resume", "0123456789abcdef"], None, "0123456789abcdef"),
    "bad projector": (["--search.projector", "512-x"], None, "512-512"),
    "negative seed": (["--seed", "-1"], None, "--seed -1"),
    "huge seed": (["--seed", "99999999999999999999"], None, "0 to 4294967295"),
    "malformed tracking URI": (["--tracking-uri", "http//::bad"], None, "sqlite:///"),
    "unsupported tracking URI": (["--tracking-uri", "mysql://x"], None, "not supported"),
    "tracking URI with a bad host": (["--tracking-uri", "http://[::1"], None, "malformed"),
    "NaN learning rate": (["--search.lr", "nan"], None, "finite"),
    "NaN lambda": (["--lambda-bt", "nan"], None, "finite"),
    "work dir under a file": (["--work-dir", "{root}/afile/runs"], lambda root: (root / "afile").write_text("x"),
                              "--work-dir"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_exits_2_with_one_line(name, workdir, capsys) -> None:
    flags, prepare, needle = CASES[name]
    root = workdir / "data"
    root.mkdir()
    if prepare:
        prepare(root)
    args = [*TINY, "--epochs", "1", *[f.format(root=root) for f in flags]]
    assert main(["search", *args]) == 2
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("ssnas: error:")]
    assert len(lines) == 1 and needle in lines[0], err
    assert "Traceback" not in err
    _assert_no_run_left(workdir)


def _assert_no_run_left(workdir) -> None:
    db = workdir / "mlflow.db"
    if not db.exists():
        return
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    ids = [e.experiment_id for e in client.search_experiments()]
    assert not [r for r in client.search_runs(ids) if r.info.status == "RUNNING"]


def test_unknown_option_is_an_argparse_error(workdir, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["search", "--no-such-flag"])
    assert exc.value.code == 2
    # the command's own --help lists its options (the top-level one only lists commands)
    assert capsys.readouterr().err == ("ssnas search: error: unrecognized arguments: --no-such-flag; see "
                                       "`ssnas search --help`\n")
    with pytest.raises(SystemExit):
        main(["study", "run", "tune_finetune", "--no-such-flag", "1"])
    assert capsys.readouterr().err == ("ssnas study run: error: unrecognized arguments: --no-such-flag 1; see "
                                       "`ssnas study run --help`\n")
    # an option before the command is the outer command's, whose --help lists it (or says it is not there)
    with pytest.raises(SystemExit):
        main(["--no-such-flag", "search"])
    assert capsys.readouterr().err == "ssnas: error: unrecognized arguments: --no-such-flag; see `ssnas --help`\n"
    with pytest.raises(SystemExit):
        main(["study", "--no-such-flag", "run", "tune_finetune"])
    assert capsys.readouterr().err == ("ssnas study: error: unrecognized arguments: --no-such-flag; see "
                                       "`ssnas study --help`\n")
    with pytest.raises(SystemExit):  # the same token left over by both: the outer one is reported first
        main(["--dry-run", "runs", "reconcile", "--dry-run"])
    assert capsys.readouterr().err == "ssnas: error: unrecognized arguments: --dry-run; see `ssnas --help`\n"
    with pytest.raises(SystemExit):
        main(["search", "--relaxation", "gumbel"])
    err = capsys.readouterr().err.strip().splitlines()  # one line, not argparse's usage block first
    assert err == ["ssnas search: error: argument --relaxation/--search.relaxation: invalid choice: 'gumbel' "
                   "(choose from 'sigmoid', 'softmax'); see `ssnas search --help`"], err


def test_resume_with_a_different_config_lists_the_keys(workdir, capsys) -> None:
    assert main(["search", *TINY, "--epochs", "1", "--no-tracking"]) == 0
    run_id = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["search", "--resume", run_id, "--no-tracking", "--cells", "4", "--lambda-bt", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "search.cells: 3 -> 4" in err and "search.lambda_bt" in err


def test_labels_do_not_leak_into_self_supervised_search() -> None:
    # The search objective ignores labels unless --ssl ce: scrambling them changes nothing.
    import torch

    from ssnas_core.search.objective import SearchObjective
    from ssnas_core.search_space.heads import Projector
    from ssnas_core.search_space.supernet import Supernet

    torch.manual_seed(0)
    net = Supernet(1, 4)
    obj = SearchObjective(net, Projector(net.feature_dim, (16, 16)), "barlow-twins").eval()
    v1, v2 = torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28)
    assert torch.equal(obj(v1, v2, torch.zeros(4, dtype=torch.long)), obj(v1, v2, torch.from_numpy(np.arange(4))))


@pytest.mark.parametrize("flags,needle", [(["--tau", "nan"], "--finetune.tau nan"),
                                          (["--gamma", "inf"], "--gamma inf"),
                                          (["--tau-posthoc", "sometimes"], "--tau-posthoc"),
                                          (["--lr", "-1"], "--finetune.lr -1"),
                                          (["--seed", "-3"], "--seed -3")])
def test_bad_fine_tune_numbers_exit_2_before_any_run(flags, needle, workdir, capsys) -> None:
    args = ["baseline", "--model", "resnet32", "--dataset", "synthetic", "--epochs", "1", "--device", "cpu", *flags]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("ssnas: error:")]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    _assert_no_run_left(workdir)


def test_models_download_into_an_existing_file_or_a_foreign_folder_exits_2(workdir, capsys) -> None:
    (workdir / "afile").write_text("keep me")
    (workdir / "busy").mkdir()
    (workdir / "busy" / "notes.txt").write_text("keep me too")
    for out in ("afile", "busy"):
        assert main(["models", "download", "ssnas-synthetic@champion", "--out", str(workdir / out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("ssnas: error: --out") and "Traceback" not in err[0], err
    assert (workdir / "afile").read_text() == "keep me" and (workdir / "busy" / "notes.txt").exists()


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(workdir, capsys,
                                                                                   monkeypatch) -> None:
    import errno

    import ssnas_core.checkpoint as checkpoint

    real, calls = checkpoint.os.fsync, []

    def fsync(fd: int) -> None:  # the second checkpoint's write finds the disk full
        calls.append(fd)
        if len(calls) == 3:  # (file, folder) for the first checkpoint, then the second one's file
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    assert main(["search", *TINY, "--epochs", "3"]) == 2
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("ssnas: error:")]
    assert len(lines) == 1 and "cannot write a checkpoint" in lines[0] and "No space left" in lines[0], err
    assert "Traceback" not in err
    (folder,) = list((workdir / "ssnas-runs").glob("*/checkpoints"))
    assert [p.name for p in folder.iterdir()] == ["last.ckpt"]  # the first epoch's, no temporary file left
    assert checkpoint.load_checkpoint(folder)["engine"]["epoch"] == 1
    _assert_no_run_left(workdir)


GENO = '{"normal": [["sep_conv_3x3", 0, 2], ["skip_connect", 1, 2]], "reduce": [["max_pool_3x3", 0, 2], ' \
       '["skip_connect", 1, 2]], "n_nodes": 1}'
# Every command's bad input from the reliability campaign (issue 13): exit 2, one line, no traceback, no run left
# RUNNING. {root} is a scratch folder holding g.json (a genotype) and afile (a plain file).
TABLE = {
    "search: negative seed": ["search", *TINY, "--seed", "-1"],
    "search: huge seed": ["search", *TINY, "--seed", "99999999999999999999"],
    "search: malformed tracking URI": ["search", *TINY, "--tracking-uri", "http//::bad"],
    "search: unsupported tracking URI": ["search", *TINY, "--tracking-uri", "mysql://x"],
    "search: NaN learning rate": ["search", *TINY, "--search.lr", "nan"],
    "search: work dir under a file": ["search", *TINY, "--work-dir", "{root}/afile/runs"],
    "finetune: NaN tau": ["finetune", "--genotype", "{root}/g.json", "--dataset", "synthetic", "--tau", "nan"],
    "finetune: bad post-hoc tau": ["finetune", "--genotype", "{root}/g.json", "--dataset", "synthetic",
                                   "--tau-posthoc", "often"],
    "baseline: infinite gamma": ["baseline", "--model", "resnet32", "--dataset", "synthetic", "--gamma", "inf"],
    "baseline: negative seed": ["baseline", "--model", "resnet32", "--dataset", "synthetic", "--seed", "-2"],
    "study: negative n-trials": ["study", "run", "tune_finetune", "--genotype", "{root}/g.json", "--dataset",
                                 "synthetic", "--n-trials", "-1"],
    "study: quote in the name": ["study", "run", "tune_finetune", "--genotype", "{root}/g.json", "--dataset",
                                 "synthetic", "--study-name", "it's"],
    "study: zero timeout": ["study", "run", "tune_finetune", "--genotype", "{root}/g.json", "--dataset",
                            "synthetic", "--timeout", "0"],
    "models: --out is a file": ["models", "download", "ssnas-synthetic@champion", "--out", "{root}/afile"],
    "report: malformed runs file": ["report", "--experiment", "x", "--runs-file", "{root}/afile"],
    "report: runs file not UTF-8": ["report", "--experiment", "x", "--runs-file", "{root}/binary"],
    # found by the bad-input sweep of 2026-11-30
    "search: a device ssnas does not train on": ["search", *TINY, "--device", "mps"],
    "search: empty run id to resume": ["search", *TINY, "--resume", ""],
    "search: stop-after beyond the schedule": ["search", *TINY, "--epochs", "1", "--search.stop-after", "5"],
    "finetune: negative cells": ["finetune", "--genotype", "{root}/g.json", "--dataset", "synthetic", "--cells", "-1"],
    "finetune: negative width": ["finetune", "--genotype", "{root}/g.json", "--dataset", "synthetic", "--width", "-3"],
    "finetune: zero width": ["finetune", "--genotype", "{root}/g.json", "--dataset", "synthetic", "--width", "0"],
    "finetune: genotype not UTF-8": ["finetune", "--genotype", "{root}/binary", "--dataset", "synthetic"],
    "finetune: genotype is a folder": ["finetune", "--genotype", "{root}", "--dataset", "synthetic"],
    "finetune: fractional node index": ["finetune", "--genotype", "{root}/frac.json", "--dataset", "synthetic"],
    "study: no architecture": ["study", "run", "tune_finetune", "--dataset", "synthetic", "--device", "cpu"],
    "study: unknown operation": ["study", "run", "tune_finetune", "--genotype", "{root}/badop.json", "--dataset",
                                 "synthetic", "--device", "cpu"],
    "study: unknown dataset": ["study", "run", "tune_finetune", "--genotype", "{root}/g.json", "--dataset",
                               "nosuchmnist", "--device", "cpu"],
    "study: unsupported tracking URI": ["study", "run", "tune_finetune", "--genotype", "{root}/g.json", "--dataset",
                                        "synthetic", "--device", "cpu", "--tracking-uri", "foo://x"],
    "study: zero seeds": ["study", "run", "compare_methods", "--dataset", "synthetic", "--seeds", "0"],
    "study: zero heartbeat": ["study", "run", "tune_finetune", "--genotype", "{root}/g.json", "--dataset",
                              "synthetic", "--heartbeat", "0"],
    "study: compare on an unknown dataset": ["study", "run", "compare_methods", "--dataset", "nosuchmnist"],
    "search: negative w01": ["search", *TINY, "--w01", "-1"],
    "search: zero temperature": ["search", *TINY, "--search.temperature", "0"],
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_every_command_refuses_bad_input_in_one_line(name, workdir, capsys) -> None:
    root = workdir / "scratch"
    root.mkdir()
    (root / "g.json").write_text(GENO)
    (root / "afile").write_text("not json, not a folder\n")
    (root / "binary").write_bytes(b"\xff\xfe\x00{\x89PNG")
    (root / "frac.json").write_text(GENO.replace('"n_nodes": 1', '"n_nodes": 1.5'))
    (root / "badop.json").write_text(GENO.replace("sep_conv_3x3", "sep_conv_9x9"))
    assert main([a.format(root=root) for a in TABLE[name]]) == 2
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("ssnas: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    _assert_no_run_left(workdir)
    assert not (workdir / "ssnas-studies.db").exists()  # a study's bad input is refused before the study exists


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    lines = err.splitlines()
    assert lines and lines[-1].startswith("ssnas: error:") and "Traceback" not in err, err
    return lines[-1]


def test_a_refused_command_leaves_nothing_behind(workdir, capsys) -> None:
    """Found by the bad-input sweep of 2026-11-30: an unreachable tracking server left an empty ssnas-runs/,
    and a worker of an unknown study created ssnas-studies.db and mlflow.db."""
    assert main(["search", *TINY, "--tracking-uri", "http://127.0.0.1:9"]) == 2
    assert "127.0.0.1:9" in _one_error_line(capsys)
    assert main(["study", "worker", "tune_finetune", "--study-name", "nosuch"]) == 2
    line = _one_error_line(capsys)
    assert "ssnas-studies.db" in line and "ssnas study run tune_finetune --study-name nosuch" in line, line
    assert main(["study", "run", "tune_finetune", "--genotype", "g.json", "--dataset", "synthetic",
                 "--storage", "mysql://u:pw@db/x"]) == 2
    line = _one_error_line(capsys)
    assert "not supported" in line and "pw" not in line, line
    assert sorted(p.name for p in workdir.iterdir()) == []  # g.json is never read: the storage is refused first


def test_file_errors_name_the_fix_that_fits(workdir, capsys) -> None:
    """A file where a folder belongs is not cured by freeing space, and only a search resumes."""
    import errno

    from ssnas_core.cli import os_error_line

    (workdir / "afile").write_text("x")
    assert main(["platform", "up", "--state", str(workdir / "afile" / "state")]) == 2
    line = _one_error_line(capsys)
    assert "a file stands where a folder is needed" in line and "--resume" not in line, line
    assert "give a file path" in os_error_line(IsADirectoryError(errno.EISDIR, "Is a directory", "x"), "report")
    full = os_error_line(OSError(errno.ENOSPC, "No space left on device", "ck"), "search")
    assert full == "No space left on device (ck): free space; an interrupted search continues with --resume"
    assert "fix its permissions" in os_error_line(PermissionError(errno.EACCES, "Permission denied", "o"), "models")


def test_platform_up_refuses_a_port_another_server_holds(workdir, capsys) -> None:
    """Another server on the port answered the health check, and `up` reported it as the platform's."""
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        assert main(["platform", "up", "--state", "st", "--mlflow-port", str(port), "--dashboard-port", "0"]) == 2
        assert "--dashboard-port 0 is not a TCP port" in _one_error_line(capsys)
        assert main(["platform", "up", "--state", "st", "--mlflow-port", str(port)]) == 2
        line = _one_error_line(capsys)
        assert f"--mlflow-port {port} is in use" in line, line
        assert main(["platform", "up", "--state", "st", "--mlflow-backend", "mysql://u:pw@h/db"]) == 2
        assert "not supported" in _one_error_line(capsys)
    assert not (workdir / "st").exists()  # refused before anything was written


@pytest.mark.parametrize(("content", "needle"), [
    ("text", "is not a PyTorch weights file"),
    ("arrays", "holds objects other than tensors"),
    ("list", "is not a state dict"),
    ("folder", "is a folder"),
])
def test_weights_that_are_not_a_state_dict_say_what_to_pass(workdir, capsys, content, needle) -> None:
    """torch's own message advised weights_only=False, which would run the file's code."""
    import torch

    (workdir / "g.json").write_text(GENO)
    weights = workdir / "w.pt"
    if content == "text":
        weights.write_text("not weights\n")
    elif content == "arrays":
        torch.save({"stem.0.weight": np.zeros(3)}, weights)
    elif content == "list":
        torch.save([torch.zeros(1)], weights)
    else:
        weights.mkdir()
    assert main(["finetune", "--genotype", "g.json", "--weights", str(weights), "--dataset", "synthetic"]) == 2
    line = _one_error_line(capsys)
    assert needle in line and "supernet.pt" in line and "weights_only" not in line, line
    _assert_no_run_left(workdir)
