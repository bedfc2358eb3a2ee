"""Data flows one way (pipeline/__init__.py): the import-linter contracts in pyproject.toml, read from the import
graph of every module (deferred imports inside functions included), so a cycle between layers cannot come back."""

from __future__ import annotations

import os
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_every_layer_imports_only_the_layers_below_it(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=os.fspath(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out  # the report names each broken contract and the import chain
