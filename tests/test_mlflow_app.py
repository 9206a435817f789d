"""The ``ssnas`` MLflow app's page hook, on MLflow's own Flask app: it edits the UI's page and nothing else."""

from __future__ import annotations

from mlflow.server import app as mlflow_app

from ssnas_core.tracking.mlflow_ui import SCRIPT, training_view_first


def test_only_the_ui_page_gets_the_training_view_script() -> None:
    # The hook stays on MLflow's (process-global) app for the rest of this process, and Flask then refuses new
    # hooks on it: a future in-process test of create_app must run in a subprocess.
    if training_view_first not in mlflow_app.after_request_funcs.get(None, []):
        mlflow_app.after_request(training_view_first)
    client = mlflow_app.test_client()
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert page.data.count(SCRIPT) == 1 and page.data.index(SCRIPT) < page.data.index(b"</head>")
    assert "ETag" not in page.headers and page.headers["Cache-Control"] == "no-cache"
    same_file = client.get("/static-files/index.html")  # the same HTML, served as a static file: left as it is
    assert same_file.status_code == 200 and same_file.mimetype == "text/html"
    assert SCRIPT not in same_file.data and b"<head>" in same_file.data
