"""``ssnas models download NAME[@ALIAS] --out DIR``."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def download(spec: str, out: str, uri: str = "") -> str:
    """Download a registered model (MLflow model dir with genotype.json, model_config.json, weights.pt) into ``out``."""
    from ssnas_core.errors import ConfigError
    from ssnas_core.tracking.mlflow_registry import download_model
    from ssnas_core.tracking.mlflow_store import check_reachable, default_tracking_uri

    target = Path(out)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {out} is an existing file: give a folder (new or existing) to download into")
    if target.is_dir() and any(target.iterdir()) and not (target / "version.json").exists():
        raise ConfigError(f"--out {out} is a folder with other files in it: give a new or empty folder, or one an "
                          "earlier download wrote")
    uri = uri or default_tracking_uri()
    check_reachable(uri)
    path, info = download_model(uri, spec, Path(out))
    (Path(out) / "version.json").write_text(json.dumps(info, indent=2))
    if any(Path(out).rglob("model_config.json")):
        print(f"ssnas models: {info['name']} version {info['version']} in {out}; load it without unpickling: "
              f"ssnas_core.finetune.portable.load_model({str(out)!r})", file=sys.stderr)
    return str(path)
