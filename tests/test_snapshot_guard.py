"""The golden files fail on a one-character change.

Two proofs. Every golden file, read back as syrupy reads it, matches its own
content and no longer matches once any one character is changed (first,
middle, last, and a CRLF made LF): the comparison is exact, nothing is
normalised. And the golden tests themselves, run in a child pytest whose
dsar renders one character differently in the code mail, a notice and one
API error, fail exactly where that text is pinned (never updating a golden file:
no ``--snapshot-update``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.golden import TextSnapshot

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = sorted((ROOT / "tests" / "__snapshots__").glob("test_golden_*/*.txt"))


def test_there_are_golden_files_for_each_output() -> None:
    folders = {path.parent.name for path in GOLDEN}
    assert folders == {"test_golden_api", "test_golden_audit_export", "test_golden_bundle",
                       "test_golden_mail", "test_golden_officer_mail",
                       "test_golden_requester_mail"}


def _one_character_changes(text: str) -> list[str]:
    changed = []
    for at in sorted({0, len(text) // 2, len(text) - 1}):
        other = "#" if text[at] != "#" else "%"
        changed.append(text[:at] + other + text[at + 1:])
    if "\r\n" in text:
        at = text.index("\r\n")
        changed.append(text[:at] + text[at + 1:])
    return changed


@pytest.mark.parametrize("path", GOLDEN, ids=[f"{p.parent.name}/{p.name}" for p in GOLDEN])
def test_a_golden_file_fails_on_one_character(path: Path) -> None:
    extension = TextSnapshot()
    stored = extension.read_snapshot_data_from_location(
        snapshot_location=str(path), snapshot_name=path.stem, session_id="guard")
    text = path.read_bytes().decode("utf-8")
    assert extension.matches(serialized_data=extension.serialize(text), snapshot_data=stored)
    for changed in _one_character_changes(text):
        assert not extension.matches(serialized_data=extension.serialize(changed),
                                     snapshot_data=stored)


def test_the_golden_tests_fail_on_one_character_rendered_differently() -> None:
    env = {**os.environ, "PYTEST_ADDOPTS": ""}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.one_character", "-p",
         "no:cacheprovider", "-q", "-rf", "tests/test_golden_mail.py",
         "tests/test_golden_api.py::test_error",
         "tests/test_golden_requester_mail.py::test_the_request_is_denied"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    failed = {line.removeprefix("FAILED ").split(" - ")[0].split("::", 1)[1]
              for line in run.stdout.splitlines() if line.startswith("FAILED ")}
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert failed == {"test_the_code_mail[access-sqlite]", "test_the_code_mail[erasure-sqlite]",
                      "test_the_code_mail_sent_again[sqlite]",
                      "test_error[404 not_found-sqlite]",
                      "test_the_request_is_denied[sqlite]"}, run.stdout[-3000:]
    assert "Hello;" in run.stdout and "thus id" in run.stdout  # syrupy's diff shows the change
    assert "Why;" in run.stdout
