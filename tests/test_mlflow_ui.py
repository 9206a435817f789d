"""What a person sees in the MLflow UI, in a real browser: headless Chromium (Debian's ``chromium``) driven by
Playwright's Python API, against ``mlflow server`` on a store filled by a real tiny search and fine-tune.

The browser is not optional: without ``/usr/bin/chromium`` or the ``playwright`` package this test fails and says
how to install them (README, "Tests"); ``.ci/run`` installs Chromium when it is missing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from ssnas_core.cli import main

from .conftest import TINY
from .ports import free_port

CHROMIUM = os.environ.get("SSNAS_CHROMIUM", "/usr/bin/chromium")
INSTALL = ("install Debian's browser (apt-get install -y chromium) and the dev extras (pip install -e '.[dev]', "
           "which has playwright); set SSNAS_CHROMIUM for another path")



@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A store with one search and its fine-tune (registered, champion), served by ``mlflow server --app-name
    ssnas`` (README's command)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: {INSTALL}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail(f"the playwright package is missing: {INSTALL}")
    work = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    old = os.getcwd()
    os.chdir(work)
    try:
        assert main(["search", *TINY, "--epochs", "2", "--tracking-uri", uri]) == 0
        client = MlflowClient(uri)
        (exp,) = [e for e in client.search_experiments() if e.name == "ssnas-synthetic"]
        search = client.search_runs([exp.experiment_id], "tags.`ssnas.stage` = 'search'")[0]
        assert main(["finetune", "--search-run", search.info.run_id, "--epochs", "2", "--batch-size", "16",
                     "--device", "cpu", "--tracking-uri", uri]) == 0
    finally:
        os.chdir(old)
    finetune = client.search_runs([exp.experiment_id], "tags.`ssnas.stage` = 'finetune'")[0]
    port = free_port()
    mlflow_bin = str(Path(sys.executable).parent / "mlflow")
    log = open(work / "server.log", "wb")
    proc = subprocess.Popen([mlflow_bin, "server", "--app-name", "ssnas", "--backend-store-uri", uri, "--host",
                             "127.0.0.1", "--port", str(port), "--workers", "1"], cwd=work, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=3):
                    break
            except OSError:
                assert proc.poll() is None, (work / "server.log").read_text()[-3000:]
                assert time.time() < deadline, "mlflow server did not answer within 240 s"
                time.sleep(1)
        yield base, client, exp.experiment_id, search, finetune
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser(ui):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def _open(browser, url: str, wait_for: str):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(90_000)
    page.goto(url)
    page.get_by_text(wait_for, exact=False).first.wait_for(state="visible")
    return page


def test_a_new_browser_opens_an_experiment_on_its_training_runs(ui, browser) -> None:
    """MLflow 3.17's UI starts a new browser in its GenAI view whatever the experiment's kind tag says; the ssnas
    app makes model training the browser's default, and keeps a choice the user made with the UI's switch."""
    base, _, exp_id, _, finetune = ui
    page = _open(browser, f"{base}/#/experiments/{exp_id}", finetune.info.run_name)  # a fresh browser context
    body = page.inner_text("body")
    assert "Run Name" in body and "Token Usage" not in body
    page.close()
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(90_000)
    page.goto(f"{base}/")  # the user had chosen the GenAI view earlier
    page.evaluate("() => localStorage.setItem('mlflow.workflowType_v1', JSON.stringify('genai'))")
    page.goto(f"{base}/#/experiments/{exp_id}")
    page.reload()
    page.get_by_text("Token Usage", exact=False).first.wait_for(state="visible")
    assert page.evaluate("() => localStorage.getItem('mlflow.workflowType_v1')") == '"genai"'
    page.close()


def test_runs_table_shows_named_runs_with_their_datasets_and_model(ui, browser) -> None:
    base, client, exp_id, search, finetune = ui
    # The link the commands print carries the view as well, for a server started without the ssnas app.
    page = _open(browser, f"{base}/#/experiments/{exp_id}?workflowType=machine_learning",
                 finetune.info.run_name)
    body = page.inner_text("body")
    assert "Run Name" in body and "Dataset" in body
    assert search.info.run_name in body and finetune.info.run_name.startswith("finetune-fairdarts-bt-")
    digests = {i.dataset.digest for i in client.get_run(finetune.info.run_id).inputs.dataset_inputs}
    assert any(f"synthetic ({d})" in body for d in digests), body[:3000]
    assert "Token Usage" not in body  # not the GenAI overview
    page.close()


def test_search_run_charts_its_alphas(ui, browser) -> None:
    base, _, exp_id, search, _ = ui
    page = _open(browser, f"{base}/#/experiments/{exp_id}/runs/{search.info.run_id}/model-metrics"
                          "?workflowType=machine_learning", "alpha/normal/0-2")
    page.get_by_text(f"{search.info.run_name} (alpha/normal/0-2/", exact=False).first.wait_for(state="visible")
    drawn = page.evaluate("() => Array.from(document.querySelectorAll('svg path'))"
                          ".filter(p => (p.getAttribute('d') || '').length > 20).length")
    assert drawn >= 6, drawn  # one line per operation of the edge, drawn
    page.close()


def test_artifact_view_shows_the_genotype_diagram(ui, browser) -> None:
    base, _, exp_id, search, _ = ui
    page = _open(browser, f"{base}/#/experiments/{exp_id}/runs/{search.info.run_id}/artifacts/genotypes/"
                          "epoch_001_normal.png?workflowType=machine_learning", "epoch_001_normal.png")
    page.wait_for_function("() => Array.from(document.images).some(i => i.src.startsWith('blob:') "
                           "&& i.complete && i.naturalWidth > 300)")
    page.close()


def test_registered_model_page_shows_champion_and_description(ui, browser) -> None:
    base, client, _, _, finetune = ui
    page = _open(browser, f"{base}/#/models/ssnas-synthetic", "Architectures searched by ssnas")
    body = page.inner_text("body")
    assert "champion" in body and "ssnas.genotype" in body and "normal:" in body
    version = client.get_model_version_by_alias("ssnas-synthetic", "champion")
    assert version.run_id == finetune.info.run_id and f"Version {version.version}" in body
    page.close()

