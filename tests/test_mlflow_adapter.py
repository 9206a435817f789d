"""MLflow adapter: start/resume/end, param immutability, metric dedup, fast failures."""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path
from typing import Iterator

import pytest

pytest.importorskip("mlflow")

from mlflow import MlflowClient  # noqa: E402

from ssnas_core.errors import TrackingError  # noqa: E402
from ssnas_core.tracking.base import Tracker  # noqa: E402
from ssnas_core.tracking.mlflow_adapter import MlflowTracker, get_run_info, metric_key  # noqa: E402
from ssnas_core.tracking.mlflow_store import check_reachable, default_tracking_uri  # noqa: E402

EXPERIMENT = "ssnas-test"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One SQLite store per module (creating its tables takes seconds); cwd is a temp dir."""
    root = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield f"sqlite:///{root / 'mlflow.db'}", root


def _start(uri: str, **tags: str) -> MlflowTracker:
    return MlflowTracker.start(uri, EXPERIMENT, "t", {"ssnas.stage": "search", **tags})


def _steps(uri: str, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, key))


def test_start_log_end_reads_back(store: tuple[str, Path]) -> None:
    uri, root = store
    tracker = _start(uri, **{"ssnas.dataset": "synthetic"})
    assert isinstance(tracker, Tracker) and tracker.wants_artifacts
    tracker.log_params({"search.epochs": 3, "search.lambd": 0.005, "data.name": "synthetic"})
    tracker.log_params({f"p{i}": i for i in range(250)})  # more than one batch of 100
    tracker.log_metrics({"search/loss_bt": 1.5, "alpha/normal/0->2/skip": 0.25}, step=0)
    tracker.log_metrics({"search/loss_bt": 1.2}, step=1)
    (root / "genotype.json").write_text('{"normal": []}')
    tracker.log_artifact(root / "genotype.json")
    tracker.log_artifact(root / "genotype.json", "genotypes")
    tracker.set_tags({"ssnas.method": "fairdarts-bt"})
    tracker.end("FINISHED")
    tracker.end("FINISHED")  # idempotent

    run = MlflowClient(tracking_uri=uri).get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.end_time is not None
    assert run.info.experiment_id == tracker.experiment_id
    assert run.data.params["search.lambd"] == "0.005" and run.data.params["p249"] == "249"
    assert run.data.metrics["search/loss_bt"] == pytest.approx(1.2)
    assert run.data.metrics["alpha/normal/0-2/skip"] == 0.25  # ">" is not allowed by MLflow
    assert run.data.tags["ssnas.stage"] == "search"
    assert run.data.tags["ssnas.method"] == "fairdarts-bt"
    assert _steps(uri, tracker.run_id, "search/loss_bt") == [0, 1]
    # artifacts live next to the database, not in the cwd-relative ./mlruns
    assert run.info.artifact_uri.startswith((root / "mlartifacts").as_uri())
    assert (root / "mlartifacts" / tracker.run_id / "artifacts" / "genotypes" / "genotype.json").is_file()
    got = tracker.download_artifact("genotypes/genotype.json", str(root / "dl"))
    assert got is not None and got.read_text() == '{"normal": []}'
    assert tracker.download_artifact("missing.json", str(root / "dl")) is None
    assert tracker.download_artifact("genotypes/missing.json", str(root / "dl")) is None

    info = get_run_info(uri, tracker.run_id)
    assert info["status"] == "FINISHED" and info["tags"]["ssnas.dataset"] == "synthetic"
    assert info["params"]["search.epochs"] == "3" and info["artifact_uri"] == run.info.artifact_uri


def test_resume_same_run_params_immutable(store: tuple[str, Path]) -> None:
    uri, _ = store
    tracker = _start(uri)
    tracker.log_params({"search.epochs": 3, "search.lr": 0.025})
    tracker.end("KILLED")
    assert MlflowClient(tracking_uri=uri).get_run(tracker.run_id).info.status == "KILLED"

    again = MlflowTracker.resume(uri, tracker.run_id)
    assert again.run_id == tracker.run_id and again.experiment_id == tracker.experiment_id
    assert MlflowClient(tracking_uri=uri).get_run(tracker.run_id).info.status == "RUNNING"
    again.log_params({"search.epochs": 3, "search.lr": 0.025, "search.seed": 1})  # identical + new
    with pytest.raises(TrackingError, match=r"search\.epochs: '3' -> '4'") as err:
        again.log_params({"search.epochs": 4, "search.lr": 0.025})
    assert "\n" not in str(err.value) and "search.lr" not in str(err.value)
    again.end()
    run = MlflowClient(tracking_uri=uri).get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.params["search.seed"] == "1"
    with pytest.raises(TrackingError, match="already finished"):
        MlflowTracker.resume(uri, tracker.run_id)


def test_metric_steps_not_duplicated_after_resume(store: tuple[str, Path]) -> None:
    uri, _ = store
    tracker = _start(uri)
    for step in range(5):
        tracker.log_metrics({"search/loss_bt": float(step), "search/lr": 0.1}, step=step)
    tracker.end("FAILED")
    assert MlflowClient(tracking_uri=uri).get_run(tracker.run_id).info.status == "FAILED"

    again = MlflowTracker.resume(uri, tracker.run_id)
    for step in range(3, 7):  # replays steps 3 and 4, then goes on
        again.log_metrics({"search/loss_bt": 10.0 + step, "search/new": 1.0}, step=step)
    again.end()
    assert _steps(uri, tracker.run_id, "search/loss_bt") == list(range(7))
    assert _steps(uri, tracker.run_id, "search/lr") == list(range(5))
    assert _steps(uri, tracker.run_id, "search/new") == [3, 4, 5, 6]
    history = MlflowClient(tracking_uri=uri).get_metric_history(tracker.run_id, "search/loss_bt")
    assert {m.step: m.value for m in history}[4] == 4.0  # the stored value was kept


def test_non_finite_metrics_are_skipped(store: tuple[str, Path]) -> None:
    uri, _ = store
    tracker = _start(uri)
    tracker.log_metrics({"a": math.nan, "b": math.inf, "c": -math.inf, "d": 2.0}, step=0)
    tracker.end()
    metrics = MlflowClient(tracking_uri=uri).get_run(tracker.run_id).data.metrics
    assert metrics == {"d": 2.0}


def test_end_rejects_unknown_status(store: tuple[str, Path]) -> None:
    uri, _ = store
    tracker = _start(uri)
    with pytest.raises(ValueError, match="RUNNING"):
        tracker.end("RUNNING")
    tracker.end("KILLED")
    tracker.end("FINISHED")  # already ended: no change
    assert MlflowClient(tracking_uri=uri).get_run(tracker.run_id).info.status == "KILLED"


def test_unknown_run_id_is_named(store: tuple[str, Path]) -> None:
    uri, _ = store
    with pytest.raises(TrackingError, match="0123456789abcdef.*not found"):
        MlflowTracker.resume(uri, "0123456789abcdef")
    with pytest.raises(TrackingError, match="0123456789abcdef"):
        get_run_info(uri, "0123456789abcdef")


def test_nothing_written_to_cwd_mlruns(store: tuple[str, Path]) -> None:
    _, root = store
    assert not (root / "mlruns").exists()


def test_default_tracking_uri(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert default_tracking_uri() == "http://mlflow.example:5000"


def test_unreachable_server_fails_fast() -> None:
    begin = time.monotonic()
    with pytest.raises(TrackingError, match=r"http://127\.0\.0\.1:9") as err:
        check_reachable("http://127.0.0.1:9")
    assert time.monotonic() - begin < 10
    assert "\n" not in str(err.value)
    begin = time.monotonic()
    with pytest.raises(TrackingError, match="cannot reach"):
        MlflowTracker.start("http://127.0.0.1:9", EXPERIMENT, None, {})
    assert time.monotonic() - begin < 10


def test_a_server_behind_basic_auth_is_probed_with_the_uri_credentials() -> None:
    """``http://user:password@host`` is how MLflow's client takes basic auth; the probe must send it as a
    header (urllib takes no credentials in the host part, and used to fail on the URI)."""
    import base64
    import http.server
    import threading

    seen: list[str | None] = []

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.headers.get("Authorization"))
            ok = self.path == "/health" and seen[-1] == "Basic " + base64.b64encode(b"admin:p@ss word").decode()
            self.send_response(200 if ok else 500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        check_reachable(f"http://admin:p%40ss%20word@127.0.0.1:{port}/")
        assert len(seen) == 1
        with pytest.raises(TrackingError, match="HTTP 500") as err:  # a wrong password reaches the server too
            check_reachable(f"http://admin:wrong@127.0.0.1:{port}")
        assert "wrong" not in str(err.value)
    finally:
        server.shutdown()
    with pytest.raises(TrackingError, match="cannot reach") as err:
        check_reachable("http://admin:s3cret@127.0.0.1:9")
    assert "s3cret" not in str(err.value)


@pytest.mark.parametrize("kind", ["missing", "readonly"])
def test_bad_sqlite_folder(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "no" / "such" if kind == "missing" else tmp_path / "ro"
    if kind == "readonly":
        folder.mkdir()
        folder.chmod(0o500)
    try:
        if kind == "readonly" and os.access(folder, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(TrackingError, match=re.escape(str(folder))):
            check_reachable(f"sqlite:///{folder / 'mlflow.db'}")
    finally:
        if folder.exists():
            folder.chmod(0o700)


def test_sqlite_in_existing_folder_is_fine(tmp_path: Path) -> None:
    check_reachable(f"sqlite:///{tmp_path / 'mlflow.db'}")
    check_reachable("sqlite://")


def test_metric_key() -> None:
    assert metric_key("alpha/reduce/1->3/sep_conv_3x3") == "alpha/reduce/1-3/sep_conv_3x3"
    assert metric_key("test/error/class <a>") == "test/error/class _a_"
    assert metric_key("val/balanced_acc") == "val/balanced_acc"


def test_unreachable_database_fails_fast_and_hides_password() -> None:
    begin = time.monotonic()
    with pytest.raises(TrackingError) as err:
        check_reachable("postgresql://ssnas:s3cret@127.0.0.1:9/mlflow")
    assert time.monotonic() - begin < 10
    assert "127.0.0.1:9" in str(err.value) and "s3cret" not in str(err.value)


def test_import_does_not_load_mlflow() -> None:
    import subprocess
    import sys

    code = "import sys, ssnas_core.tracking.mlflow_adapter; print('mlflow' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert result.stdout.strip() == "False"


def test_processes_starting_together_on_a_new_sqlite_store_all_succeed(tmp_path: Path) -> None:
    """Two first searches on a new mlflow.db raced MLflow's schema creation; one failed with a traceback."""
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}"
    (tmp_path / "new").mkdir()
    code = ("import sys; from ssnas_core.tracking.mlflow_adapter import MlflowTracker\n"
            "t = MlflowTracker.start(sys.argv[1], 'race', None, {}); t.end('FINISHED')\n")
    root = Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen([sys.executable, "-c", code, uri], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(root)}) for _ in range(4)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    from mlflow import MlflowClient

    exp = MlflowClient(uri).get_experiment_by_name("race")
    assert len(MlflowClient(uri).search_runs([exp.experiment_id])) == 4


def test_a_store_at_the_current_schema_is_not_locked_or_migrated_again(tmp_path) -> None:
    from ssnas_core.tracking.mlflow_store import check_reachable

    db = tmp_path / "m.db"
    check_reachable(f"sqlite:///{db}")  # a new store: created under the lock
    lock = tmp_path / ".m.db.lock"
    assert lock.exists()
    lock.unlink()
    check_reachable(f"sqlite:///{db}")  # already current: no lock taken
    assert not lock.exists()
    import sqlite3

    with sqlite3.connect(db) as conn:  # another revision: back to the locked path, where MLflow deals with it
        conn.execute("UPDATE alembic_version SET version_num = 'older'")
    try:
        check_reachable(f"sqlite:///{db}")
    except TrackingError:
        pass
    assert lock.exists()
