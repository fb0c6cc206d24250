"""`dsar connectors new`: the skeleton installs, registers and passes the kit."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_skeleton_is_a_working_connector(cli: Callable[..., Result], tmp_path: Path) -> None:
    result = cli("connectors", "new", "ticket_desk", "--directory", str(tmp_path))
    assert result.exit_code == 0, result.output
    package = tmp_path / "dsar-connector-ticket-desk"
    assert (package / "setup.cfg").read_text().count(
        "ticket_desk = dsar_connector_ticket_desk:TicketDeskConnector") == 1
    site = tmp_path / "site"  # installed like a third-party package, entry point included
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(package)],
                   check=True, timeout=300, capture_output=True)
    python = sys.executable
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run(
        [python, "-c", "from dsar.registry import load_type; "
         "print(load_type('ticket_desk', 'test').__name__)"],
        check=True, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert listed.stdout.strip() == "TicketDeskConnector"
    tests = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            str(package / "tests")],
                           capture_output=True, text=True, timeout=300, env=env, cwd=package)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout


@pytest.mark.parametrize("name", ["Bad-Name", "x", "class", "9lives"])
def test_bad_names_are_refused(cli: Callable[..., Result], tmp_path: Path, name: str) -> None:
    target = tmp_path / "new"
    target.mkdir()
    result = cli("connectors", "new", name, "--directory", str(target))
    assert result.exit_code == 1 and "Error" in result.output
    assert list(target.iterdir()) == []


def test_existing_folder_is_refused(cli: Callable[..., Result], tmp_path: Path) -> None:
    assert cli("connectors", "new", "crm2", "--directory", str(tmp_path)).exit_code == 0
    again = cli("connectors", "new", "crm2", "--directory", str(tmp_path))
    assert again.exit_code == 1 and "exists already" in again.output
