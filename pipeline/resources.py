"""Files that ship inside the package (templates, samples, migrations), found with importlib.resources.

Paths relative to ``__file__`` worked only in a checkout: an installed wheel has no top-level
``templates/``. importlib.resources finds the same files in a checkout's editable install, a
wheel and an sdist.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

#: The name pip knows the project by: ``pip install weekly-ai-tool-verdicts[ses]``, ``--version``.
DISTRIBUTION = "weekly-ai-tool-verdicts"


def shipped_folder(package: str, name: str = "") -> Path:
    """A folder of package data, as a real path: Jinja's file loader and Alembic read folders, and
    pip always installs a package as files on disk (never a zip)."""
    folder = importlib.resources.files(package).joinpath(name) if name else importlib.resources.files(package)
    if not isinstance(folder, Path) or not folder.is_dir():
        raise RuntimeError(f"{package}/{name} is not a folder on disk ({folder!r}): reinstall {DISTRIBUTION} with pip")
    return folder
