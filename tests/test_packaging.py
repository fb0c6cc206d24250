"""A wheel carries the application, its migrations, connectors and templates, not the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.smoke
def test_wheel_contents(tmp_path: Path) -> None:
    # build from a clean copy: a stale build/ in the work tree could hide a missing file
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "instance", "__pycache__", ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(tmp_path), str(source)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("dsar_toolkit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {"dsar/__init__.py", "dsar/connector.py", "dsar/testing.py",
                "migrations/env.py", "migrations/script.py.mako",
                "migrations/versions/0001_initial_schema.py",
                "connectors/sql/__init__.py", "connectors/maildir/__init__.py",
                "connectors/rest/__init__.py", "connectors/slack_export.py",
                "connectors/profiles/hubspot_contacts.toml"}
    assert expected <= names, expected - names
    assert any(n.startswith("dsar/portal/templates/") for n in names)
    assert not any(n.startswith("tests/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[dsar.connectors]" in text and "sql = connectors.sql:SqlTableConnector" in text
    assert "dsar = dsar.cli:main" in text
