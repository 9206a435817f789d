"""The tracker interface the engines report to.

Engines know nothing of MLflow or Optuna: they call a ``Tracker``. The MLflow
adapter (``mlflow_adapter.py``) is the only module that imports mlflow.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:
    from ssnas_core.data.lineage import DataInput


@runtime_checkable
class Tracker(Protocol):
    """What an engine may report.

    Attributes:
        wants_artifacts: False when artifacts would be thrown away (then engines
            skip making plots, which keeps a torch-only install working).
    """

    wants_artifacts: bool

    def log_params(self, params: Mapping[str, object]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_metric_steps(self, rows: Sequence[tuple[Mapping[str, float], int]]) -> None:
        """Many steps' metrics at once (an epoch's per-step losses in one store call where it batches)."""
        ...

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def log_inputs(self, inputs: Sequence[DataInput]) -> None:
        """The data the run trains and is evaluated on (MLflow: the run's dataset inputs)."""
        ...

    def end(self, status: str = "FINISHED") -> None: ...


class NullTracker:
    """Discards everything; tracking off."""

    wants_artifacts = False

    def log_params(self, params: Mapping[str, object]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_metric_steps(self, rows: Sequence[tuple[Mapping[str, float], int]]) -> None:
        pass

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass

    def log_inputs(self, inputs: Sequence[DataInput]) -> None:
        pass

    def end(self, status: str = "FINISHED") -> None:
        pass


@dataclass
class InMemoryTracker:
    """Keeps everything in memory (tests, notebooks); artifacts are copied to a temp dir."""

    wants_artifacts: bool = True
    params: dict[str, object] = field(default_factory=dict)
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    inputs: list[DataInput] = field(default_factory=list)
    status: str | None = None
    _dir: Path | None = None

    def log_params(self, params: Mapping[str, object]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.metrics.setdefault(key, []).append((step, float(value)))

    def log_metric_steps(self, rows: Sequence[tuple[Mapping[str, float], int]]) -> None:
        for metrics, step in rows:
            self.log_metrics(metrics, step)

    def log_artifact(self, local_path: str | Path, artifact_path: str | None = None) -> None:
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="ssnas-artifacts-"))
        src = Path(local_path)
        rel = f"{artifact_path}/{src.name}" if artifact_path else src.name
        dst = self._dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        self.artifacts[rel] = dst

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update(tags)

    def log_inputs(self, inputs: Sequence[DataInput]) -> None:
        self.inputs.extend(i for i in inputs if i not in self.inputs)

    def end(self, status: str = "FINISHED") -> None:
        self.status = status
