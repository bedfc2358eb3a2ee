"""Data flows one way (pipeline/__init__.py): the import-linter contracts in pyproject.toml, read from the import
graph of every module (deferred imports inside functions included), so a cycle between layers cannot come back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_layer_imports_only_the_layers_below_it():
    # In a process of its own: import-linter configures logging with dictConfig, which would disable the
    # loggers of the tests that run after it.
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr  # names each broken contract and its import chain
