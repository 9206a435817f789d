"""The database URLs the platform's stores accept, in one place.

The Optuna storage (``ssnas study --storage``, ``ssnas platform up --optuna-storage``) and the MLflow backend
store (``ssnas platform up --mlflow-backend``) are SQLite or PostgreSQL, the two tested here; MySQL would need a
driver that is not installed. ``ssnas`` commands that take a tracking URI also accept an MLflow server
(``tracking.mlflow_store.check_reachable``).
"""

from __future__ import annotations

from ssnas_core.config import redact_uri
from ssnas_core.errors import ConfigError

DB_SCHEMES = ("sqlite:///", "postgresql")  # sqlite:// alone is an in-memory database: nothing kept
DB_FORMS = "sqlite:///path.db or postgresql+psycopg://user@host:5432/db"


def check_db_url(url: str, what: str, hint: str = "") -> None:
    """Refuse a URL of another database than SQLite or PostgreSQL, naming ``what`` with its password hidden.

    Raises:
        ConfigError: ``url`` is not a ``sqlite:///`` (a file) or ``postgresql...`` URL.
    """
    if not url.startswith(DB_SCHEMES):
        raise ConfigError(f"{what} {redact_uri(url)!r} is not supported: give {DB_FORMS}{hint}")
