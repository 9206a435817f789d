"""``mlflow server --app-name ssnas`` (or ``mlflow ui --app-name ssnas``): MLflow's own server and UI, opening
on the training-runs view.

MLflow 3.17's UI chooses between its GenAI view (traces, token usage) and its model-training view (runs table,
charts) from a preference the browser keeps (``localStorage["mlflow.workflowType_v1"]``, GenAI when unset) or a
``?workflowType=`` in the link; it does not read the experiment's ``mlflow.experimentKind`` tag, which ssnas
sets all the same. So a new browser opened on ssnas's runs lands in the GenAI view.

This app serves MLflow's unchanged server, and adds one thing: its HTML page first sets that preference to
model training when the browser has none. A choice made with the UI's own switch is kept, and nothing else of
MLflow's changes (no route, no API, no stored data). The entry point is declared in ``pyproject.toml``
(``[project.entry-points."mlflow.app"]``), the way MLflow's own ``basic-auth`` app is.

``--app-name ssnas-basic-auth`` is the same on top of MLflow's basic-auth app (MLflow takes one app name).
MLflow's CLI creates the admin user before it starts workers only for the name ``basic-auth``; under this
name each worker does it, as MLflow's ``create_app`` does whenever the CLI has not (its creation tolerates
workers racing), so a bad auth configuration shows in the workers' log rather than as the command's error.
"""

from __future__ import annotations

import os
from typing import Any

PREFERENCE = "mlflow.workflowType_v1"  # MLflow's useLocalStorage key: "<key>_v<version>", a JSON value
TRAINING = "machine_learning"
SCRIPT = (f"<script>try{{if(localStorage.getItem('{PREFERENCE}')===null)"
          f"localStorage.setItem('{PREFERENCE}',JSON.stringify('{TRAINING}'))}}catch(e){{}}</script>").encode()


UI_PAGE = "serve"  # the endpoint of MLflow's route "/" (behind any --static-prefix), which serves the UI's index.html


def training_view_first(response: Any) -> Any:
    """Flask ``after_request`` hook: put ``SCRIPT`` first in the ``<head>`` of the UI's page (the ``serve``
    endpoint only; every other response, HTML or not, passes unchanged)."""
    from flask import request

    if request.endpoint != UI_PAGE or response.status_code != 200 or response.mimetype != "text/html":
        return response
    response.direct_passthrough = False  # a file response: read it to edit it
    body = response.get_data()
    if b"<head>" not in body or SCRIPT in body:
        return response
    response.set_data(body.replace(b"<head>", b"<head>" + SCRIPT, 1))  # Content-Length follows
    # The page differs from the file: its validators must not let a browser reuse a copy served without the script.
    for header in ("ETag", "Last-Modified"):
        response.headers.pop(header, None)
    response.headers["Cache-Control"] = "no-cache"
    return response


def create_app(app: Any = None) -> Any:
    """MLflow's server app with ``training_view_first``: the Flask app, wrapped for uvicorn as MLflow wraps it."""
    from mlflow.server import app as mlflow_app

    flask_app = app or mlflow_app
    flask_app.after_request(training_view_first)
    # `mlflow server` tells its worker processes which server runs them; uvicorn (its default) needs ASGI.
    if os.environ.get("_MLFLOW_SGI_NAME") == "uvicorn":
        from mlflow.server.fastapi_app import create_fastapi_app

        return create_fastapi_app(flask_app)
    return flask_app


def create_auth_app(app: Any = None) -> Any:
    """MLflow's basic-auth app with ``training_view_first`` (``--app-name ssnas-basic-auth``)."""
    from mlflow.server import app as mlflow_app
    from mlflow.server.auth import create_app as create_basic_auth_app

    flask_app = app or mlflow_app
    flask_app.after_request(training_view_first)
    return create_basic_auth_app(flask_app)  # it wraps the Flask app for uvicorn itself
