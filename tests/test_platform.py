"""The platform: compose file hygiene, and its services started natively with `ssnas platform up|down`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from ssnas_core.cli import main

from .ports import free_port

ROOT = Path(__file__).resolve().parents[1]


# Generous: a login checks a salted password hash, and on a loaded 2-core machine (CI beside two result runs) a
# request took over 10 s, which read as "no answer" (status 0) in a run where the platform itself took 73 s to start.
TIMEOUT_S = 60


def _status(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, OSError):
        return 0


def test_compose_file_binds_loopback_pins_versions_and_holds_no_password() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    compose = yaml.safe_load(text)
    services = compose["services"]
    assert {"db", "mlflow", "dashboard", "worker"} <= set(services)
    assert services["db"]["image"] == "postgres:16" and "healthcheck" in services["db"]
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert services["mlflow"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert "--serve-artifacts" in services["mlflow"]["command"]
    assert services["worker"]["command"][:2] == ["study", "worker"]  # arguments of the image's ssnas entrypoint
    assert "gpu" in services["worker-gpu"]["profiles"]
    assert "change-me" not in text and "POSTGRES_PASSWORD:?" in text
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    # the example's password is empty, so compose's ${POSTGRES_PASSWORD:?} refuses to start until one is set
    assert "POSTGRES_PASSWORD=\n" in (ROOT / "platform" / "env.example").read_text()
    assert not list((ROOT / "platform").rglob("*.py"))


def test_platform_up_serves_tracking_and_dashboard_and_keeps_data_across_restarts(tmp_path, capsys) -> None:
    ml, dash = free_port(), free_port()
    args = ["platform", "up", "--state", str(tmp_path / "st"), "--mlflow-port", str(ml),
            "--dashboard-port", str(dash)]
    assert main(args) == 0
    try:
        assert "healthy after" in capsys.readouterr().out
        client = MlflowClient(f"http://127.0.0.1:{ml}")
        exp = client.create_experiment("e")
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "m", 1.5)
        (tmp_path / "a.txt").write_text("hello")
        client.log_artifact(run.info.run_id, str(tmp_path / "a.txt"))
        client.set_terminated(run.info.run_id)
        assert _status(f"http://127.0.0.1:{dash}/api/studies") == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{ml}/", timeout=TIMEOUT_S) as page:  # the ssnas app's UI page
            assert b"mlflow.workflowType_v1" in page.read()
    finally:
        assert main(["platform", "down", "--state", str(tmp_path / "st")]) == 0
    assert _status(f"http://127.0.0.1:{ml}/health") == 0
    assert main(args) == 0  # same database and artifact folder: nothing is lost
    try:
        client = MlflowClient(f"http://127.0.0.1:{ml}")
        again = client.get_run(run.info.run_id)
        assert again.data.metrics["m"] == 1.5
        local = client.download_artifacts(run.info.run_id, "a.txt", str(tmp_path / "dl"))
        assert Path(local).read_text() == "hello"
    finally:
        main(["platform", "down", "--state", str(tmp_path / "st")])


def _group_cmdlines(pgid: int) -> list[str]:
    """Command lines of every process in the process group (a service and the workers it forks)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[2]) == pgid:
                out.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, ValueError, IndexError):
            continue
    return out


def test_basic_auth_refuses_unauthenticated_requests(tmp_path, monkeypatch) -> None:
    password = "s3cret %(x)s pass phrase"  # a %, spaces: any printable password works
    monkeypatch.setenv("SSNAS_ADMIN_PASSWORD", password)
    ml = free_port()
    state = tmp_path / "st"
    assert main(["platform", "up", "--state", str(state), "--mlflow-port", str(ml), "--dashboard-port",
                 str(free_port()), "--basic-auth"]) == 0
    try:
        url = f"http://127.0.0.1:{ml}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _status(url) == 401
        assert _status(url, "admin:wrong") == 401
        assert _status(url, f"admin:{password}") == 200
        page = urllib.request.Request(f"http://127.0.0.1:{ml}/")  # the UI page: behind the login, opening on runs
        import base64

        page.add_header("Authorization", "Basic " + base64.b64encode(f"admin:{password}".encode()).decode())
        with urllib.request.urlopen(page, timeout=TIMEOUT_S) as response:
            assert b"mlflow.workflowType_v1" in response.read()
        assert _status(f"http://127.0.0.1:{ml}/") == 401
        # secrets: not in any file's content, not on any service's command line; state is this user's only
        assert oct(state.stat().st_mode & 0o777) == "0o700"
        for path in state.rglob("*"):
            if path.is_file():
                assert oct(path.stat().st_mode & 0o077) == "0o0", path
                assert password.encode() not in path.read_bytes(), path
        pids = json.loads((state / "pids.json").read_text())
        for pid in pids.values():
            lines = _group_cmdlines(pid)
            assert lines and not any(password in line or "sqlite:///" in line for line in lines), lines
    finally:
        main(["platform", "down", "--state", str(state)])


def test_up_twice_is_refused_and_down_without_up_is_harmless(tmp_path, capsys) -> None:
    (tmp_path / "st").mkdir()
    (tmp_path / "st" / "pids.json").write_text("{}")
    assert main(["platform", "up", "--state", str(tmp_path / "st")]) == 2
    assert "already running" in capsys.readouterr().err
    assert main(["platform", "down", "--state", str(tmp_path / "none")]) == 0


@pytest.mark.parametrize("bad", ["postgresql+psycopg://postgres@127.0.0.1:9/none"])
def test_unreachable_database_is_a_one_line_error(bad, tmp_path, capsys) -> None:
    assert main(["platform", "up", "--state", str(tmp_path / "st"), "--optuna-storage", bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Optuna storage" in err[0]
    assert not (tmp_path / "st" / "pids.json").exists()
