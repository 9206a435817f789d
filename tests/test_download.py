"""``--download`` (what scripts/demo.sh passes on a machine without the data) fetches the file through medmnist's
own download: from medmnist's URL, with its MD5 check. The URL here is a local HTTP server holding a small
PneumoniaMNIST-shaped file, with medmnist's INFO entry (URL, MD5, split sizes) pointed at it; nothing else is
replaced. tests/test_demo.py covers the offline path of the script itself."""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial

import numpy as np
import pytest
from medmnist import INFO

from ssnas_core.cli import main

from .conftest import TINY
from .tiny import medmnist_arrays

COUNTS = {"train": 40, "val": 12, "test": 12}
SEARCH = ["search", "--dataset", "pneumoniamnist", "--limit-train", "32",
          *TINY[TINY.index("--limit-train") + 2:], "--epochs", "1"]


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A PneumoniaMNIST-shaped file on a local HTTP server, and medmnist's INFO entry pointed at it."""
    arrays = medmnist_arrays(COUNTS, size=28)
    site = tmp_path / "site"
    site.mkdir()
    np.savez_compressed(site / "pneumoniamnist.npz", **arrays)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            requests.append(f"{self.command} {self.path}")

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, *args) -> None:  # a client that hangs up early (torchvision's redirect probe) is fine
            pass

    server = Server(("127.0.0.1", 0), partial(Handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for var in ("no_proxy", "NO_PROXY"):  # the request goes to this server, not to a proxy the machine names
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    info = INFO["pneumoniamnist"]
    monkeypatch.setitem(info, "url", f"http://127.0.0.1:{server.server_address[1]}/pneumoniamnist.npz")
    monkeypatch.setitem(info, "MD5", hashlib.md5((site / "pneumoniamnist.npz").read_bytes()).hexdigest())
    monkeypatch.setitem(info, "n_samples", dict(COUNTS))
    yield site / "pneumoniamnist.npz", requests
    server.shutdown()
    server.server_close()


def test_download_fetches_the_file_with_medmnist_and_searches_it(workdir, served, capsys) -> None:
    source, requests = served
    data = workdir / "data"
    assert main([*SEARCH, "--data-root", str(data)]) == 2  # without --download: the one-line "not found"
    assert "dataset file not found" in capsys.readouterr().err and not requests
    assert main([*SEARCH, "--data-root", str(data), "--download"]) == 0
    fetched = list(requests)  # torchvision asks once for redirects, then fetches
    assert fetched and set(fetched) == {"GET /pneumoniamnist.npz"}
    assert "100%|" in capsys.readouterr().err  # medmnist's (torchvision's) progress bar
    assert (data / "pneumoniamnist.npz").read_bytes() == source.read_bytes()
    assert main([*SEARCH, "--data-root", str(data), "--download"]) == 0  # found now: not fetched again
    assert requests == fetched


def test_a_download_that_fails_its_md5_check_leaves_no_file_and_says_so_in_one_line(workdir, served, capsys,
                                                                                     monkeypatch) -> None:
    source, requests = served
    monkeypatch.setitem(INFO["pneumoniamnist"], "MD5", "0" * 32)  # the served bytes are not the published ones
    data = workdir / "data"
    assert main([*SEARCH, "--data-root", str(data), "--download"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("ssnas: error:")]
    assert len(errors) == 1 and "Traceback" not in err and "download failed" in errors[0], err[-2000:]
    assert "GET /pneumoniamnist.npz" in requests
    assert sorted(p.name for p in data.iterdir()) == []  # a later run must not find and load the bad bytes
