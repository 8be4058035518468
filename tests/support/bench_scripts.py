"""Scripts of ``bench/``, imported by path for the tests of their pure helpers (bench/ is not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(script: str, module_name: str | None = None) -> ModuleType:
    """``bench/<script>.py`` as a module named ``module_name`` (default: the script's name)."""
    spec = importlib.util.spec_from_file_location(module_name or script, BENCH / f"{script}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module
