"""Import hygiene and layering: the engines run on torch alone; platform/ never shadows the stdlib."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ssnas_core"
# Lower layers may not import higher ones
# (STYLE.md: config -> data -> search_space/losses -> engines -> tracking -> cli; the runs are composed in
# workflows, which api calls and cli calls through api).
FORBIDDEN = {
    "config": ("data", "search_space", "losses", "search", "tracking", "cli"),
    "data": ("search_space", "losses", "search", "tracking", "cli"),
    "search_space": ("search", "tracking", "cli"),
    "losses": ("search_space", "search", "tracking", "cli"),
    "search": ("tracking.mlflow_adapter", "tracking.mlflow_registry", "tracking.mlflow_store", "cli"),
    "finetune": ("tracking.mlflow_adapter", "tracking.mlflow_registry", "tracking.mlflow_store", "cli"),
    "evaluation": ("search", "finetune", "tracking", "cli"),
    "workflows": ("cli", "api"),
    "api": ("cli",),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted(PKG.rglob("*.py")), ids=lambda p: str(p.relative_to(PKG)))
def test_layers_only_import_downwards(path: Path) -> None:
    rel = path.relative_to(PKG).with_suffix("").as_posix().replace("/", ".")
    layer = rel.split(".")[0]
    for name in _imports(path):
        top = name.split(".")[0]
        if top in ("mlflow", "optuna"):
            assert rel.startswith("tracking.mlflow_") and top == "mlflow", f"{rel} imports {name}"
        for banned in FORBIDDEN.get(layer, ()):
            target = f"ssnas_core.{banned}"
            assert name != target and not name.startswith(target + "."), f"{rel} imports {name}"


def test_import_creates_nothing_and_pulls_in_no_tracking_library(tmp_path) -> None:
    code = ("import sys, ssnas_core, ssnas_core.search.setup, ssnas_core.search.engine, ssnas_core.cli; "
            "bad = [m for m in ('mlflow', 'optuna', 'matplotlib', 'medmnist') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, env={"PYTHONPATH": str(ROOT),
                   "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert list(tmp_path.iterdir()) == []


def test_platform_resolves_to_the_standard_library() -> None:
    out = subprocess.run([sys.executable, "-c", "import platform; print(platform.__file__)"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in out and not (ROOT / "platform" / "__init__.py").exists()


BLOCK = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('mlflow', 'optuna', 'matplotlib', 'medmnist'):
            raise ImportError(f'{name} is blocked: torch-only install')
sys.meta_path.insert(0, _Block())
from ssnas_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_search_with_tracking_off_needs_only_torch(tmp_path) -> None:
    from .conftest import TINY

    proc = subprocess.run([sys.executable, "-c", BLOCK, "search", *TINY, "--epochs", "1", "--no-tracking"],
                          cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT),
                          "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_id = proc.stdout.strip().splitlines()[-1]
    assert (tmp_path / "ssnas-runs" / run_id / "artifacts" / "genotype.json").exists()
