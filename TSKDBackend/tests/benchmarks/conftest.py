"""Fixtures of the benchmark scripts' tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def load_benchmark_script(monkeypatch) -> Callable[[str], ModuleType]:
    """Import ``benchmarks/<name>.py`` as a module, with ``benchlib`` beside it importable for the test."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import benchlib beside them

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"{name}_script", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
