"""The package as an operator installs it: the wheel and the sdist, in a new virtualenv outside the checkout,
with the dependencies the lock (constraints.txt) pins; and the lock itself, which must cover pyproject.toml."""

from __future__ import annotations

import email
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.policy import default
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
NAME = PYPROJECT["project"]["name"]
VERSION = PYPROJECT["project"]["version"]
#: What a checkout holds that is not the product: never copied into the build.
NOT_SOURCE = shutil.ignore_patterns(
    ".venv",
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    "outbox",
    "*.db",
    "*.db-*",
    ".env",
    "artifacts",
    ".pytest_cache",
)


def _run(
    *args: str | Path,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def _pip(python: Path, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    """This suite's pip, installing into another environment, with the lock's versions and build backend."""
    return _run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        python,
        "install",
        "--quiet",
        "--constraint",
        LOCK,
        "--build-constraint",
        LOCK,
        *args,
        cwd=cwd,
    )


def _pins() -> dict[str, Requirement]:
    """The lock, name → ``name==version ; marker``."""
    lines = (line.strip() for line in LOCK.read_text(encoding="utf-8").splitlines())
    reqs = [Requirement(line) for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(r.name): r for r in reqs}


def _pinned_version(req: Requirement) -> str:
    (spec,) = req.specifier
    assert spec.operator == "==", f"{req}: the lock pins exact versions"
    return spec.version


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist, and the wheel built from it (``python -m build``): what a release uploads. Built from a
    copy of the checkout, so the working tree stays clean and stray local files cannot leak in."""
    base = tmp_path_factory.mktemp("build")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    # The isolated build environment gets the lock's setuptools.
    env = {**os.environ, "PIP_CONSTRAINT": str(LOCK)}
    _run(sys.executable, "-m", "build", "--outdir", base / "dist", source, cwd=base, env=env)
    (wheel,) = (base / "dist").glob("*.whl")
    (sdist,) = (base / "dist").glob("*.tar.gz")
    return wheel, sdist


@pytest.fixture(scope="module")
def venv(dist: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv outside the checkout with the wheel installed: the base install, no extras."""
    base = tmp_path_factory.mktemp("venv")
    _run(sys.executable, "-m", "venv", "--without-pip", base / "venv", cwd=base)
    _pip(base / "venv" / "bin" / "python", dist[0], cwd=base)
    return base / "venv"


def _outside(venv: Path, database_url: str) -> dict[str, str]:
    """An operator's shell: none of this checkout's settings or paths, the test's database."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("VERDICTS_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    return env | {"VERDICTS_DATABASE_URL": database_url, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}


def _demo(venv: Path, folder: Path, database_url: str) -> subprocess.CompletedProcess:
    folder.mkdir()
    return _run(venv / "bin" / "verdicts", "demo", cwd=folder, env=_outside(venv, database_url), timeout=300)


def _source_files(top: str) -> set[str]:
    return {
        p.relative_to(ROOT / top).as_posix()
        for p in (ROOT / top).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_the_wheel_and_the_sdist_hold_every_module_template_sample_and_migration(dist):
    wheel, sdist = dist
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"{package}/{f}" for package in ("pipeline", "subscribers") for f in _source_files(package)}
    expected |= {f"pipeline/templates/{f}" for f in _source_files("templates")}
    missing = expected - in_wheel
    assert not missing, f"add their folders to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    assert (
        "pipeline/templates/email/weekly.mjml.j2" in in_wheel and "pipeline/store/migrations/script.py.mako" in in_wheel
    )
    assert not any(n.startswith(("templates/", "tests/")) for n in in_wheel)  # no top-level `templates` package
    prefix = f"{sdist.name.removesuffix('.tar.gz')}/"
    with tarfile.open(sdist) as archive:
        in_sdist = {n.removeprefix(prefix) for n in archive.getnames()}
    assert {f"templates/{f}" for f in _source_files("templates")} <= in_sdist
    assert {"pyproject.toml", "constraints.txt", "README.md"} <= in_sdist


def test_the_wheel_runs_the_demo_from_any_folder_then_the_sdist_does(venv, dist, database_url, tmp_path):
    env = _outside(venv, database_url)
    assert _run(venv / "bin" / "verdicts", "--version", cwd=tmp_path, env=env).stdout.strip() == f"verdicts {VERSION}"
    code = "import pipeline.email.render as r; print(r.__file__); print(r.TEMPLATES_DIR)"
    where = _run(venv / "bin" / "python", "-c", code, cwd=tmp_path, env=env).stdout.split()
    assert all(Path(p).is_relative_to(venv) for p in where), where  # the installed copy, not this checkout

    first = _demo(venv, tmp_path / "wheel", database_url)
    emails = sorted((tmp_path / "wheel" / "outbox").glob("*/*.eml"))
    assert len(emails) == 5 and "5 emails in" in first.stdout
    html = email.message_from_bytes(emails[0].read_bytes(), policy=default).get_body(("html",)).get_content()
    assert "Claude Haiku Open Weights vs Mistral Code" in html and "Unsubscribe</a>" in html

    # The sdist, built into a wheel by pip as an operator without the wheel would, over the same environment.
    _pip(venv / "bin" / "python", "--force-reinstall", "--no-deps", dist[1], cwd=tmp_path)
    assert _run(venv / "bin" / "verdicts", "--version", cwd=tmp_path, env=env).stdout.strip() == f"verdicts {VERSION}"
    _demo(venv, tmp_path / "sdist", database_url)  # on PostgreSQL the week is sent already: it renders the preview
    assert next((tmp_path / "sdist" / "outbox").glob("*/preview.html")).stat().st_size > 10_000


def test_the_base_install_is_the_locked_versions_without_test_libraries_or_provider_extras(venv, tmp_path):
    installed = {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in metadata.distributions(path=[str(p) for p in venv.glob("lib/python*/site-packages")])
    }
    assert installed.pop(canonicalize_name(NAME)) == VERSION
    pins = _pins()
    assert installed == {name: _pinned_version(pins[name]) if name in pins else "not in the lock" for name in installed}
    assert {"pytest", "playwright", "hypothesis", "botocore", "cryptography"}.isdisjoint(installed)


@pytest.mark.parametrize(("provider", "missing"), [("ses", "botocore"), ("sendgrid", "cryptography")])
def test_a_provider_whose_extra_is_not_installed_names_the_command_that_adds_it(
    venv, database_url, tmp_path, provider, missing
):
    env = _outside(venv, database_url) | {"VERDICTS_PROVIDER": provider}
    done = subprocess.run(
        [venv / "bin" / "verdicts", "providers", "check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert done.stderr.strip() == (
        f"error: the {provider} provider needs {missing}, which is not installed: pip install '{NAME}[{provider}]'"
    )


def _requirements() -> list[Requirement]:
    """Every dependency pyproject.toml declares: the base, every extra, the build backend."""
    project = PYPROJECT["project"]
    declared = [*project["dependencies"], *PYPROJECT["build-system"]["requires"]]
    declared += [req for extra in project["optional-dependencies"].values() for req in extra]
    return [r for r in map(Requirement, declared) if canonicalize_name(r.name) != canonicalize_name(NAME)]


def test_every_dependency_in_pyproject_is_pinned_in_the_lock_within_its_bounds():
    pins = _pins()
    for req in _requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in constraints.txt: run `make lock`"
        assert req.specifier.contains(_pinned_version(pins[name]), prereleases=True), (
            f"constraints.txt pins {pins[name]}, outside pyproject.toml's {req}: run `make lock`"
        )
    assert {"pip", "setuptools"} <= pins.keys()  # the Makefile installs pip, and builds, from the lock too


def test_the_suite_runs_on_the_locked_versions():
    """`make test` (and so CI) installs from the lock: what runs here is what it pins, nothing newer or older."""
    pins = {name: req for name, req in _pins().items() if req.marker is None or req.marker.evaluate()}
    pins.pop("setuptools")  # the build backend's pin (--build-constraint); a venv's own setuptools is not used
    installed = {name: _installed(name) for name in pins}
    assert installed == {name: _pinned_version(req) for name, req in pins.items()}, "`make test` installs the lock"


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
