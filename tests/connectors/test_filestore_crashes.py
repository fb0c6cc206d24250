"""Crash tests of the file-store connectors: an erasure killed (SIGKILL) at a
named point, then run again, must leave no copy of the subject's data
anywhere under the store root and exactly one copy of every other message."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from connectors import filestore
from dsar.connector import Subject
from tests.connectors import test_maildir as md
from tests.connectors import test_slack_export as sl


def erase_killed_at(point: str, target: Callable[[str], bool], erase: Callable[[], object]) -> None:
    """Run ``erase`` in a forked child that kills itself with SIGKILL the
    first time the connector reaches ``point`` for a file ``target`` accepts."""

    def crash(reached: str, path: str) -> None:
        if reached == point and target(path):
            os.kill(os.getpid(), signal.SIGKILL)

    def child() -> None:
        filestore.crash_point = crash  # the child's copy of the module only
        erase()

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(60)
    assert process.exitcode == -signal.SIGKILL, f"the erasure did not reach {point}"


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root``, hidden and temporary ones included."""
    return {
        os.path.relpath(os.path.join(top, name), root): Path(top, name).read_bytes()
        for top, _, names in os.walk(root)
        for name in names
    }


def holding(root: Path, needles: list[bytes]) -> list[str]:
    """The files under ``root`` holding any of ``needles`` (case-insensitive)."""
    return sorted(name for name, data in tree(root).items()
                  if any(n.lower() in data.lower() for n in needles))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    sl.seed(tmp_path / "export")
    return tmp_path / "export"


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    return tmp_path / "Maildir", md.seed(tmp_path / "Maildir")


# ------------------------------------------------------------------- slack
ALICE_DATA = [b"alice@example.org", b"7700 900123", b"Alice Example", b"Alice here",
              b"cat picture", b"my reply"]
BOB_DATA = [b"bob@example.org", b"Bob Example", b"Lunch?", b"nice"]
CAROL_TEXTS = [m["text"] for days in sl.DAYS.values() for ms in days.values() for m in ms
               if m["user"] == "U3"]


def text_copies(root: Path, text: str) -> int:
    needle = b'"text": ' + json.dumps(text, ensure_ascii=False).encode()
    return sum(data.count(needle) for data in tree(root).values())


def hidden(root: Path) -> list[str]:
    return [n for n in tree(root) if Path(n).name.startswith(".")]


@pytest.mark.parametrize("fresh_plan", [False, True], ids=["same-plan", "fresh-plan"])
@pytest.mark.parametrize("target", ["users.json", "general/2024-05-01.json"])
def test_slack_erasure_killed_mid_write_converges(
    root: Path, target: str, fresh_plan: bool
) -> None:
    """Bob's erasure is killed half-way through writing a file whose
    temporary copy holds Alice's data too; Bob's rerun and Alice's erasure
    must leave neither of them anywhere, and Carol's messages once each."""
    connector = sl.make(root)
    plan = connector.plan_erasure(sl.BOB)
    erase_killed_at("temp-partial", lambda p: p.endswith(target), lambda: connector.erase(plan))
    assert hidden(root), "the kill left a half-written temporary file"

    rerun = sl.make(root)
    rerun.erase(rerun.plan_erasure(sl.BOB) if fresh_plan else plan)
    rerun.erase(rerun.plan_erasure(sl.ALICE))
    assert list(rerun.find(sl.BOB)) == list(rerun.find(sl.ALICE)) == []
    assert holding(root, ALICE_DATA + BOB_DATA) == [], "no copy of their data survives"
    assert hidden(root) == [], "no stray files"
    assert {t: text_copies(root, t) for t in CAROL_TEXTS} == dict.fromkeys(CAROL_TEXTS, 1)


def test_slack_find_after_a_crash_removes_the_stray_copy(root: Path) -> None:
    """The verifying find covers what a crash left: the temporary copy of
    users.json (every profile) is gone once find has run."""
    connector = sl.make(root)
    plan = connector.plan_erasure(sl.BOB)
    erase_killed_at("temp-partial", lambda p: p.endswith("users.json"),
                    lambda: connector.erase(plan))
    assert len(holding(root, [b"alice@example.org"])) == 2, "users.json and its stray copy"
    assert [r.ref for r in connector.find(sl.ALICE)][0] == ("users", "U1")
    assert holding(root, [b"alice@example.org"]) == ["users.json"]


# ----------------------------------------------------------------- maildir
MAIL_POINTS = ["temp-partial", "temp-written", "maildir-copy-added"]


def mail_files(path: Path) -> dict[str, bytes]:
    """Message files (cur/ and new/) of every folder."""
    return {n: d for n, d in tree(path).items() if Path(n).parent.name in ("cur", "new")}


def subjects(path: Path) -> list[str]:
    return sorted(md.BytesParser(policy=md.policy.default).parsebytes(d)["Subject"]
                  for d in mail_files(path).values())


@pytest.mark.parametrize("fresh_plan", [False, True], ids=["same-plan", "fresh-plan"])
@pytest.mark.parametrize("point", MAIL_POINTS)
def test_maildir_erasure_killed_converges(
    store: tuple[Path, dict], point: str, fresh_plan: bool
) -> None:
    path, _ = store
    connector = md.make(path)
    plan = connector.plan_erasure(md.ALICE)
    erase_killed_at(point, lambda _p: True, lambda: connector.erase(plan))
    if point == "maildir-copy-added":
        assert len(set(subjects(path))) < len(subjects(path)), "a rewritten copy beside the old"
    else:
        assert [n for n in tree(path) if Path(n).parent.name == "tmp"], "a stray tmp/ file"

    rerun = md.make(path)
    rerun.erase(rerun.plan_erasure(md.ALICE) if fresh_plan else plan)
    assert list(rerun.find(md.ALICE)) == []
    assert holding(path, [b"alice@example.org"]) == [], "no copy of the subject's data"
    assert [n for n in tree(path) if Path(n).parent.name == "tmp"] == [], "tmp/ is clean"
    assert subjects(path) == ["Complaint", "Hello", "Old", "Order", "Re: Refund?"], (
        "exactly one copy of each message")


def test_maildir_find_after_a_crash_removes_dsar_leftovers(store: tuple[Path, dict]) -> None:
    path, _ = store
    connector = md.make(path)
    plan = connector.plan_erasure(md.ALICE)
    erase_killed_at("temp-written", lambda _p: True, lambda: connector.erase(plan))
    assert [n for n in tree(path) if Path(n).parent.name == "tmp"]
    list(connector.find(Subject({"email": {"nobody@example.org"}})))
    assert [n for n in tree(path) if Path(n).parent.name == "tmp"] == []
