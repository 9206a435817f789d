"""Where the MLflow store is, whether it can be reached, and how its failures read: one line, password hidden.

Shared by the adapter (runs), the registry and the report queries.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.client
import os
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator
from urllib.parse import unquote, urlparse

from ssnas_core.errors import TrackingError

if TYPE_CHECKING:
    from mlflow import MlflowClient

_PROBE_TIMEOUT_S = 5.0


def default_tracking_uri() -> str:
    """Return ``$MLFLOW_TRACKING_URI`` if set, else a SQLite store ``./mlflow.db``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def sqlite_path(tracking_uri: str) -> Path | None:
    """Return the database file of a ``sqlite:///`` URI, or None for other schemes."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    path = unquote(tracking_uri[len("sqlite:") :].lstrip("/").split("?", 1)[0])
    if path in ("", ":memory:"):
        return None
    # sqlite:////abs/path -> /abs/path; sqlite:///rel/path -> rel/path
    return Path("/" + path) if tracking_uri.startswith("sqlite:////") else Path(path)


_URI_FORMS = ("use sqlite:///path/mlflow.db, postgresql+psycopg://user@host:5432/db or http(s)://host:port "
              "(an MLflow server)")


@functools.lru_cache(maxsize=1)
def _schema_head() -> str:
    """The schema revision this MLflow writes (its newest alembic migration)."""
    from mlflow.store.db.utils import _get_latest_schema_revision

    return str(_get_latest_schema_revision())


def _schema_is_current(db: Path) -> bool:
    """True when ``db`` already holds MLflow's tables at this MLflow's schema revision (read-only check)."""
    import sqlite3

    if not db.exists() or db.stat().st_size == 0:
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row is not None and row[0] == _schema_head()
    except Exception:  # noqa: BLE001 - no table, locked, another MLflow: take the locked path
        return False


def _create_sqlite_schema_once(tracking_uri: str, db: Path) -> None:
    """Create (or migrate) a SQLite store's schema under a file lock, so processes starting together on a new
    ``mlflow.db`` do not race MLflow's table creation (one of them failed with "table already exists").
    A store already at this MLflow's schema revision is left alone (no lock, no query through MLflow)."""
    import fcntl

    if _schema_is_current(db):
        return

    with open(db.with_name(f".{db.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with store_errors("schema creation", tracking_uri):
            client_for(tracking_uri).search_experiments(max_results=1)


def _health_request(tracking_uri: str) -> urllib.request.Request:
    """A GET of the server's ``/health``; a ``user:password@`` in the URI (which MLflow's client, through
    requests, sends as basic auth) becomes the Authorization header, since urllib takes no credentials in the
    host part."""
    parts = urlparse(tracking_uri)
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    url = parts._replace(netloc=netloc).geturl().rstrip("/") + "/health"
    request = urllib.request.Request(url)  # noqa: S310 (http(s) only, checked by the caller)
    if parts.username is not None:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        request.add_header("Authorization", "Basic " + base64.b64encode(token).decode())
    return request


def check_reachable(tracking_uri: str) -> None:
    """Fail fast, with one clear line, when the tracking store cannot be used.

    HTTP(S) servers are probed at ``/health`` with a 5 s timeout (instead of
    MLflow's 7 retries with backoff); a SQLite file's directory must exist and be
    writable; a PostgreSQL URL must accept a connection within 5 s.

    Args:
        tracking_uri: The MLflow tracking URI.

    Raises:
        TrackingError: The store is unreachable or unusable.
    """
    try:
        scheme = urlparse(tracking_uri).scheme.lower()
    except ValueError as exc:  # e.g. an unparsable port
        raise TrackingError(f"tracking URI {redact(tracking_uri)!r} is malformed ({exc}); " + _URI_FORMS) from exc
    if scheme not in ("http", "https", "sqlite") and not scheme.startswith("postgres"):
        raise TrackingError(f"tracking URI {redact(tracking_uri)!r} is not supported (scheme {scheme or 'none'!r}); "
                            + _URI_FORMS)
    if scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(_health_request(tracking_uri), timeout=_PROBE_TIMEOUT_S):  # noqa: S310
                pass
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                msg = f"MLflow server {redact(tracking_uri)} answered /health with HTTP {exc.code}"
                raise TrackingError(f"{msg}; check the server's log or pass another --tracking-uri") from exc
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
            msg = f"cannot reach MLflow server {redact(tracking_uri)} ({redact(str(getattr(exc, 'reason', exc)))})"
            raise TrackingError(f"{msg}; start it or pass another --tracking-uri / MLFLOW_TRACKING_URI") from exc
    elif scheme == "sqlite":
        db = sqlite_path(tracking_uri)
        if db is None:  # in-memory database
            return
        folder = db.absolute().parent
        if not folder.is_dir():
            raise TrackingError(f"tracking store {tracking_uri}: folder {folder} does not exist; create it first")
        target = db if db.exists() else folder
        if not os.access(target, os.W_OK):
            raise TrackingError(f"tracking store {tracking_uri}: {target} is not writable; fix its permissions")
        _create_sqlite_schema_once(tracking_uri, db)
    elif scheme.startswith("postgres"):
        import sqlalchemy

        url = tracking_uri.replace("postgres://", "postgresql://", 1)
        try:
            engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5})
            with engine.connect():
                pass
            engine.dispose()
        except ImportError as exc:
            msg = f"tracking URI {redact(tracking_uri)} needs a PostgreSQL driver ({exc})"
            fix = "pip install 'psycopg[binary]' (or psycopg2-binary and a postgresql+psycopg2:// URI)"
            raise TrackingError(f"{msg}; {fix}") from exc
        except Exception as exc:  # noqa: BLE001 (driver errors have no common base)
            msg = f"cannot connect to tracking database {redact(tracking_uri)} ({one_line(exc)[:200]})"
            raise TrackingError(f"{msg}; check that PostgreSQL runs and the URL, user and password") from exc


def redact(uri: str) -> str:
    """Hide the password of a database URL."""
    from ssnas_core.config import redact_uri

    return redact_uri(uri)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:500] if text else type(exc).__name__


@contextmanager
def store_errors(what: str, tracking_uri: str) -> Iterator[None]:
    """Turn MLflow and I/O failures into a one-line ``TrackingError``."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (MlflowException, OSError) as exc:
        raise TrackingError(f"MLflow {what} failed at {redact(tracking_uri)}: {one_line(exc)}") from exc


def client_for(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)
