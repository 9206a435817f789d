"""scripts/demo.sh on a machine without a local copy of the data: it turns to medmnist's download."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_without_local_data_fetches_it_and_offline_says_what_to_do_in_one_line(tmp_path) -> None:
    with socket.socket() as s:  # a port nobody listens on: every download is refused, as offline
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    env = {**os.environ, "SSNAS_DATA_ROOT": str(tmp_path / "data"), "HOME": str(tmp_path)}
    env.update({k: dead for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")})
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"fetching it with medmnist into {tmp_path / 'data'}" in proc.stderr  # it tried the download
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ssnas: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "download failed" in errors[0] and "zenodo.org" in errors[0]
    assert f"put it at {tmp_path / 'data' / 'pneumoniamnist.npz'}" in errors[0]
