"""Parity: each docker-compose service's own command, run natively against the machine's PostgreSQL.

Search, fine-tune and a 2-trial study go through the MLflow server over HTTP; the
dashboard's HTTP API shows the study; a restarted server on the same database and
artifact folder has lost nothing.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from mlflow import MlflowClient

from .ports import free_port

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"



def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's own interpolation: ${VAR:-default}, ${VAR:?msg}, ${VAR}; $$ is a literal $."""
    text = text.replace("$$", "\0")

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2) or "", m.group(3) or ""
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{(\w+)(:-|:\?)?([^}]*)\}", sub, text).replace("\0", "$")


def _entrypoint(svc: dict) -> list[str]:
    """The ENTRYPOINT (exec form) of the image the service builds, [] when it has none."""
    build = svc["build"]
    context, dockerfile = (build, "Dockerfile") if isinstance(build, str) else \
        (build.get("context", "."), build.get("dockerfile", "Dockerfile"))
    for line in reversed((ROOT / context / dockerfile).read_text().splitlines()):
        if line.startswith("ENTRYPOINT"):
            return list(json.loads(line.split(None, 1)[1]))
    return []


def docker_argv(compose: dict, name: str, env: dict[str, str]) -> list[str]:
    """The argv Docker runs for a service: the image's ENTRYPOINT + the service's command (a list as it is,
    a string split as compose splits it), after compose's interpolation."""
    svc = compose["services"][name]
    command = svc["command"]
    args = [_interpolate(c, env) for c in command] if isinstance(command, list) else \
        shlex.split(_interpolate(command, env))
    return _entrypoint(svc) + args


def _localise(arg: str, port: int, cwd: Path) -> str:
    """Container paths and ports -> this machine's (the compose hosts db and mlflow are this machine here)."""
    arg = arg.replace("0.0.0.0", "127.0.0.1").replace("/mlartifacts", str(cwd / "mlartifacts"))
    arg = arg.replace("--port 5000", f"--port {port}").replace("--port 8080", f"--port {port}")
    return arg.replace("port=8080", f"port={port}")


_STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _stop_leftovers():
    """A failing test must not leave a server running (it would hold a port and a database)."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)


def _service(compose: dict, name: str, env: dict[str, str], port: int, cwd: Path) -> subprocess.Popen[bytes]:
    svc = compose["services"][name]
    argv = docker_argv(compose, name, env)
    if argv[:2] == ["sh", "-c"]:
        argv = ["sh", "-c", _localise(argv[2], port, cwd)]
    else:
        argv = [_localise(a, port, cwd) for a in argv]
        if "--port" in argv:
            argv[argv.index("--port") + 1] = str(port)
    declared = {k: _interpolate(str(v), env) for k, v in (svc.get("environment") or {}).items()}
    svc_env = {**os.environ, **declared, **env}  # the test's database URLs replace the compose hosts'
    bin_dir = str(Path(sys.executable).parent)
    svc_env["PATH"] = bin_dir + os.pathsep + svc_env.get("PATH", "")
    svc_env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(argv, cwd=cwd, env=svc_env, start_new_session=True,
                            stdout=open(cwd / f"{name}.log", "ab"), stderr=subprocess.STDOUT)
    _STARTED.append(proc)
    return proc


def test_services_get_the_argv_docker_builds() -> None:
    """The worker image's ENTRYPOINT is ssnas: its command must be ssnas's arguments (not `sh -c ...`), and no
    service carries a database password on its command line."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {"POSTGRES_USER": "ssnas", "POSTGRES_PASSWORD": "pw-on-argv?"}
    worker = docker_argv(compose, "worker", env)
    assert worker[:3] == ["ssnas", "study", "worker"] and "--study-name" in worker, worker
    mlflow = docker_argv(compose, "mlflow", env)
    assert mlflow[:2] == ["mlflow", "server"] and "--allowed-hosts" in mlflow
    assert mlflow[mlflow.index("--app-name") + 1] == "ssnas"
    assert "context: ." in (ROOT / "docker-compose.yml").read_text().split("  mlflow:")[1].split("  dashboard:")[0]
    assert "mlflow:5000" in mlflow[mlflow.index("--allowed-hosts") + 1].split(",")
    for name in ("worker", "mlflow", "dashboard"):
        assert not any("pw-on-argv?" in a for a in docker_argv(compose, name, env)), name


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3):
                return
        except OSError:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
    raise AssertionError(f"{url} never answered")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


@pytest.fixture
def databases(tmp_path):
    names = {k: f"ssnas_parity_{k}_{uuid.uuid4().hex[:8]}" for k in ("mlflow", "optuna")}
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f"CREATE DATABASE {name}")
    yield {k: f"postgresql+psycopg://postgres@127.0.0.1:5432/{v}" for k, v in names.items()}
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        for name in names.values():
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_compose_services_run_natively_and_keep_everything_across_a_restart(databases, tmp_path) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "unused", "SSNAS_STUDY": "tune_finetune",
           "SSNAS_STUDY_NAME": "parity"}
    # the services reach the databases through these two variables (set by the compose x-db-urls anchor)
    env_db = {**env, "MLFLOW_BACKEND": databases["mlflow"], "MLFLOW_BACKEND_STORE_URI": databases["mlflow"],
              "OPTUNA_STORAGE": databases["optuna"]}
    ml_port, dash_port = free_port(), free_port()
    mlflow = _service(compose, "mlflow", env_db, ml_port, tmp_path)
    _wait(f"http://127.0.0.1:{ml_port}/health", mlflow, tmp_path / "mlflow.log")
    uri = f"http://127.0.0.1:{ml_port}"
    with urllib.request.urlopen(f"{uri}/", timeout=10) as page:  # the ssnas app: new browsers open on training runs
        assert b"mlflow.workflowType_v1" in page.read()
    # the workers call the server by its compose name: it must accept that Host header (MLflow 3.17 answers
    # 403 "Invalid Host header" otherwise), and still refuse others
    api = f"{uri}/api/2.0/mlflow/experiments/search?max_results=1"
    with urllib.request.urlopen(urllib.request.Request(api, headers={"Host": "mlflow:5000"}), timeout=10) as ok:
        assert ok.status == 200
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(api, headers={"Host": "evil.example:5000"}), timeout=10)
    assert refused.value.code == 403
    run_env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)}
    env_db["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] = "2"  # the server's pool: PostgreSQL allows 100 in all

    def ssnas(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "ssnas_core.cli", *args], cwd=tmp_path, env=run_env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout.strip().splitlines()[-1]

    tiny = ["--dataset", "synthetic", "--limit-train", "64", "--device", "cpu"]
    search_id = ssnas("search", *tiny, "--batch-size", "8", "--width", "4", "--search.projector", "32-32",
                      "--epochs", "1")
    ft_id = ssnas("finetune", "--search-run", search_id, "--epochs", "1", "--batch-size", "16")
    ssnas("study", "run", "tune_finetune", "--storage", databases["optuna"], "--study-name", "parity",
          "--search-run", search_id, *tiny, "--batch-size", "16", "--epochs", "1", "--n-trials", "1",
          "--pruner", "none")
    worker = _service(compose, "worker", {**env_db, "MLFLOW_TRACKING_URI": uri}, 0, tmp_path)
    # the worker joins with the study's stored settings and budget: 1 more trial would exceed n_trials=1,
    # so raise the budget to 2 by running the creator once more in the background of the worker.
    ssnas("study", "run", "tune_finetune", "--storage", databases["optuna"], "--study-name", "parity",
          "--search-run", search_id, *tiny, "--batch-size", "16", "--epochs", "1", "--n-trials", "2",
          "--pruner", "none")
    worker.wait(timeout=600)
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]

    dashboard = _service(compose, "dashboard", env_db, dash_port, tmp_path)
    _wait(f"http://127.0.0.1:{dash_port}/api/studies", dashboard, tmp_path / "dashboard.log")
    with urllib.request.urlopen(f"http://127.0.0.1:{dash_port}/api/studies", timeout=10) as response:
        studies = json.loads(response.read())["study_summaries"]
    (summary,) = [st for st in studies if st["study_name"] == "parity"]
    with urllib.request.urlopen(f"http://127.0.0.1:{dash_port}/api/studies/{summary['study_id']}",
                                timeout=10) as response:
        detail = json.loads(response.read())
    assert len([t for t in detail["trials"] if t["state"] == "Complete"]) >= 2, detail["trials"]
    _stop(dashboard)

    client = MlflowClient(uri)
    assert client.get_run(ft_id).data.metrics["test/acc"] >= 0
    assert client.get_model_version_by_alias("ssnas-synthetic", "champion").run_id
    study_runs = client.search_runs([client.get_experiment_by_name("ssnas-study-parity").experiment_id],
                                    "tags.`ssnas.study` = 'parity'")
    assert len([r for r in study_runs if "ssnas.trial" in r.data.tags]) >= 2
    _stop(mlflow)

    mlflow = _service(compose, "mlflow", env_db, ml_port, tmp_path)  # same database, same artifact folder
    try:
        _wait(f"http://127.0.0.1:{ml_port}/health", mlflow, tmp_path / "mlflow.log")
        client = MlflowClient(uri)
        run = client.get_run(search_id)
        assert run.info.status == "FINISHED" and "alpha/normal/0-2/skip_connect" in run.data.metrics
        local = client.download_artifacts(search_id, "genotype.json", str(tmp_path / "dl"))
        assert Path(local).read_text().startswith("{")
        assert client.get_model_version_by_alias("ssnas-synthetic", "champion")
    finally:
        _stop(mlflow)
