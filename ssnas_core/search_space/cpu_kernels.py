"""Compiled CPU kernels for the search's hot spots, built on first use (``torch.utils.cpp_extension``).

A search step on the CPU is memory-bound, and torch's CPU kernels there do more than the maths needs (measured
at (64, 64, 28, 28), channels-last, 2 threads, 2026-12-01):

* oneDNN's depthwise **5x5 weight gradient** has no fast path: about 15 ms, against 0.8 ms for the 3x3 one (the
  blocked form of ``primitives._Depthwise5x5`` brings it to about 9 ms with copies of the input). Here it is
  one pass with the channels in registers: about 3.5 ms, any stride, padding and dilation.
* **batch norm's backward** (``native_batch_norm_backward``) takes about 3.3 ms where two passes over memory take
  about 1.7 ms; its forward is at par, so the forward here is the same two passes for the pair's saved tensors.
* the search's **mixing** (``edge_group._Mix``) takes one pass over its inputs forward and one backward, where
  torch's operations take one per input (adds, products) and, backward, a stack, products and sums besides.

Same maths: every sum runs in float over short runs and in double across them (the statistics as sums of
``x - x[first pixel]``, well conditioned whatever the mean), deterministic for a given thread count; the tests
compare them with torch's kernels. Used for float32 channels-last CPU tensors only; CUDA and everything else
take torch's kernels.

The build needs a C++ compiler and ``ninja`` (a dependency of the package), takes about 40 s once per machine
and torch version (cached by torch in ``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``, one
build per kind of CPU: it is compiled for the CPU it runs on), and is shared by concurrent processes under torch's
file lock. Without a compiler, or with ``SSNAS_CPU_KERNELS=0``, :func:`kernels` returns None and the callers use
torch's kernels: the same results, slower.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

ENV = "SSNAS_CPU_KERNELS"
SOURCE = Path(__file__).with_name("cpu_kernels.cpp")
NAME = "ssnas_cpu_kernels"

_module: Any = None  # torch.ops.ssnas once loaded
_tried = False


def kernels() -> Any:
    """``torch.ops.ssnas`` (the compiled operators), built on the first call in a process; None where it is off
    or cannot be built."""
    global _module, _tried
    if _tried:
        return _module
    _tried = True
    if os.environ.get(ENV, "1") == "0" or not sys.platform.startswith("linux"):
        return None
    try:
        # cpp_extension warns at import that no CUDA runtime is found: irrelevant to a C++-only build
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
        from torch.utils.cpp_extension import load

        load(f"{NAME}_{_cpu_tag()}", [str(SOURCE)], extra_cflags=["-O3", "-march=native", "-fopenmp"],
             extra_ldflags=["-fopenmp"], is_python_module=False, verbose=False)
        _module = torch.ops.ssnas
    except Exception as exc:  # no compiler, no ninja, a read-only cache: torch's kernels do the same maths
        warnings.warn(f"ssnas: CPU kernels not built ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                      f"using torch's (slower). Set {ENV}=0 to skip the attempt.", RuntimeWarning, stacklevel=2)
        _module = None
    return _module


def _cpu_tag() -> str:
    """A short hash of this CPU's model and instruction-set flags: the build uses ``-march=native``, so a cache
    shared between machines (a home directory on a lab's network) keeps one build per kind of CPU, and none
    runs where its instructions do not exist."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    lines = sorted({line for line in text.splitlines() if line.startswith(("model name", "flags"))})
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:10]


def usable(*tensors: torch.Tensor) -> bool:
    """Whether these tensors can go through the kernels: float32, on the CPU, channels-last 4-D, not being traced
    by a compiler (which takes torch's ops as they are)."""
    return (all(t.device.type == "cpu" and t.dtype == torch.float32 and t.dim() == 4
                and t.is_contiguous(memory_format=torch.channels_last) for t in tensors)
            and not torch.compiler.is_compiling() and kernels() is not None)
