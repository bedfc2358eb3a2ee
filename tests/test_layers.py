"""Data flows one way (DESIGN.md): the web app and the command line are the top layers, and nothing below
them imports them. Read from the import statements of every module, so a violation names its line."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: The top layers: the FastAPI app and its routes, the Typer app and its console helpers.
TOP = ("pipeline.web", "pipeline.cli", "pipeline.cli.admin", "pipeline.cli.config", "pipeline.cli.console",
       "subscribers.cli", "subscribers.routes")


def _within(name: str, layers: tuple[str, ...]) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in layers)


def test_no_module_below_the_web_app_and_the_cli_imports_them():
    found = []
    for path in sorted([*ROOT.glob("pipeline/**/*.py"), *ROOT.glob("subscribers/**/*.py")]):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        if _within(module, TOP):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {name}" for name in names if _within(name, TOP)]
    assert found == []
