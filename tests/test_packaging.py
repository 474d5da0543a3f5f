"""``pip install`` of the repository (or a built wheel) ships both apps: code, migrations, templates, static."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.server import ROOT

APPS = ("responses_app", "providers_app")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.sqlite3")


def shipped_files(app: str) -> set[str]:
    """Files of the app in the checkout that a host site needs (what the wheel must hold)."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / app).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.mark.e2e
def test_wheel_ships_both_apps(tmp_path: Path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in (*APPS, "openresponses_site"):
        shutil.copytree(ROOT / package, source / package, ignore=IGNORE)
    # Markers in nested folders: the globs must reach any depth, whatever the apps hold today.
    markers = [
        "responses_app/templates/responses_app/deep/marker.html",
        "providers_app/templates/admin/providers_app/marker.html",
        "responses_app/static/responses_app/css/marker.css",
        "providers_app/static/providers_app/marker.js",
    ]
    for marker in markers:
        (source / marker).parent.mkdir(parents=True, exist_ok=True)
        (source / marker).write_text("marker\n")

    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", ".", "-w", str(tmp_path / "dist")],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = (tmp_path / "dist").glob("openresponses-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    assert set(markers) <= names
    for app in APPS:
        expected = shipped_files(app)
        assert expected - names == set(), f"missing from the wheel: {sorted(expected - names)}"
        assert f"{app}/migrations/0001_initial.py" in names
        assert f"{app}/apps.py" in names
    assert "responses_app/management/commands/openresponses_check.py" in names
    assert not any(name.startswith("tests/") for name in names)
