"""``ssnas platform up|down``: the compose stack's MLflow server and optuna-dashboard, started natively.

SQLite files in the state folder by default, or the PostgreSQL databases given;
MLflow proxies artifacts to ``<state>/mlartifacts`` as the compose service does
to its volume. ``up`` waits for both services to answer and prints their URLs;
``down`` stops what ``up`` started (process groups recorded in ``pids.json``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ssnas_core.db_urls import check_db_url
from ssnas_core.errors import SsnasError

STATE = Path(".ssnas-platform")


def service_commands(state: Path, mlflow_port: int, dashboard_port: int, basic_auth: bool) -> dict[str, list[str]]:
    """The same commands as the compose services ``mlflow`` and ``dashboard`` (bound to 127.0.0.1), MLflow's
    with the ``ssnas`` app (its UI opens on training runs; ``tracking/mlflow_ui.py``), ``ssnas-basic-auth`` with
    ``basic_auth``.

    Neither carries a database URL: they read ``MLFLOW_BACKEND_STORE_URI`` and ``OPTUNA_STORAGE`` from
    their environment (``service_env``), so a password in them is not visible in ``ps``.
    """
    bin_dir = Path(sys.executable).parent
    mlflow = [str(bin_dir / "mlflow"), "server", "--serve-artifacts",
              "--artifacts-destination", str((state / "mlartifacts").resolve()), "--host", "127.0.0.1",
              "--port", str(mlflow_port), "--workers", "2"]
    mlflow += ["--app-name", "ssnas-basic-auth" if basic_auth else "ssnas"]
    dashboard = [sys.executable, "-c", "import os, optuna_dashboard; optuna_dashboard.run_server("
                 f"os.environ['OPTUNA_STORAGE'], host='127.0.0.1', port={int(dashboard_port)})"]
    return {"mlflow": mlflow, "dashboard": dashboard}


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file that is 0600 from its creation (never readable by others, not even briefly)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def _init_optuna_schema(storage: str) -> None:
    """optuna-dashboard needs the tables to exist; opening the storage creates them (studies/ owns optuna)."""
    try:
        from studies.runner import init_storage
    except ImportError as err:
        raise SsnasError(f"optuna-dashboard needs optuna ({err}): pip install -e '.[studies]'") from err
    init_storage(storage)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError as err:
        return err.code < 500  # 401 from basic auth still means the server is up
    except (urllib.error.URLError, OSError):
        return False


def _check_ports(mlflow_port: int, dashboard_port: int) -> None:
    """Both ports valid, distinct and free on 127.0.0.1: a port held by another server would otherwise answer the
    health check, and ``up`` would report that server as ours."""
    ports = {"--mlflow-port": mlflow_port, "--dashboard-port": dashboard_port}
    for flag, port in ports.items():
        if not 1 <= port <= 65535:
            raise SsnasError(f"{flag} {port} is not a TCP port: give one from 1 to 65535")
    if mlflow_port == dashboard_port:
        raise SsnasError(f"--mlflow-port and --dashboard-port are both {mlflow_port}: give two different ports")
    for flag, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: only a listener stops it
            try:
                probe.bind(("127.0.0.1", port))
            except OSError as err:
                raise SsnasError(f"{flag} {port} is in use on 127.0.0.1 ({err.strerror or err}): stop what holds it "
                                 f"(`ssnas platform down` if it is a platform started here) or give another port"
                                 ) from err


def up(state: Path = STATE, mlflow_backend: str = "", optuna_storage: str = "", mlflow_port: int = 5000,
       dashboard_port: int = 8080, basic_auth: bool = False, timeout: float = 180) -> dict[str, str]:
    """Start the services, wait until they answer; returns their URLs and the seconds it took."""
    if (state / "pids.json").exists():  # checked before anything is written
        raise SsnasError(f"a platform is already running from {state} (pids.json): run `ssnas platform down` first")
    for flag, url in (("--mlflow-backend", mlflow_backend), ("--optuna-storage", optuna_storage)):
        if url:
            check_db_url(url, flag, " (empty: a SQLite file in --state)")
    _check_ports(mlflow_port, dashboard_port)
    password = os.environ.get("SSNAS_ADMIN_PASSWORD", "")
    if basic_auth and (len(password) < 12 or not password.isprintable()):
        raise SsnasError("--basic-auth needs the admin password in $SSNAS_ADMIN_PASSWORD: at least 12 printable "
                         "characters (any of them, % and spaces included)")
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o700)  # databases, logs and keys: this user's only
    mlflow_backend = mlflow_backend or f"sqlite:///{(state / 'mlflow.db').resolve()}"
    optuna_storage = optuna_storage or f"sqlite:///{(state / 'optuna.db').resolve()}"
    env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": mlflow_backend, "OPTUNA_STORAGE": optuna_storage}
    if basic_auth:
        # no secret in the INI: MLflow 3.17 takes the admin's name and password from the environment
        _write_private(state / "basic_auth.ini",
                       "[mlflow]\ndefault_permission = READ\n"
                       f"database_uri = sqlite:///{(state / 'auth.db').resolve()}\n"
                       "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
        env.update({"MLFLOW_AUTH_CONFIG_PATH": str((state / "basic_auth.ini").resolve()),
                    "MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": password})
        if "MLFLOW_FLASK_SERVER_SECRET_KEY" not in env:  # CSRF key, kept across restarts
            key = state / "flask_secret"
            if not key.exists():
                _write_private(key, secrets.token_hex(32))
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = key.read_text()
    old_umask = os.umask(0o077)  # the SQLite files this process and the services create: 0600
    try:
        _init_optuna_schema(optuna_storage)
    finally:
        os.umask(old_umask)
    start = time.time()
    pids, procs = {}, {}
    urls = {"mlflow": f"http://127.0.0.1:{mlflow_port}", "dashboard": f"http://127.0.0.1:{dashboard_port}"}
    for name, cmd in service_commands(state, mlflow_port, dashboard_port, basic_auth).items():
        log = os.fdopen(os.open(state / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                umask=0o077)
        pids[name], procs[name] = proc.pid, proc
    _write_private(state / "pids.json", json.dumps(pids))
    for db in state.glob("*.db"):  # files an older ssnas created with the default umask
        db.chmod(0o600)
    checks = {"mlflow": urls["mlflow"] + "/health", "dashboard": urls["dashboard"] + "/api/studies"}
    pending = dict(checks)
    while pending and time.time() - start < timeout:
        pending = {k: u for k, u in pending.items() if not _answers(u)}
        dead = [k for k in pending if procs[k].poll() is not None]
        if dead:
            down(state)
            raise SsnasError(f"{', '.join(dead)} exited at start; see {state}/{dead[0]}.log")
        time.sleep(0.5)
    if pending:
        down(state)
        raise SsnasError(f"{', '.join(pending)} did not answer within {timeout:.0f} s; see {state}/*.log")
    return {**urls, "seconds": f"{time.time() - start:.1f}", "mlflow_backend": mlflow_backend.split("@")[-1],
            "optuna_storage": optuna_storage.split("@")[-1]}


def down(state: Path = STATE, timeout: float = 30) -> list[str]:
    """Stop the services started by ``up``; returns their names."""
    path = state / "pids.json"
    if not path.exists():
        return []
    pids: dict[str, int] = json.loads(path.read_text())
    for pid in pids.values():
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + timeout
    for pid in pids.values():
        while time.time() < deadline:
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    path.unlink()
    return list(pids)
