"""What the golden tests (tests/test_golden_*.py) share: the frozen instant,
the text snapshot format, and a fixture that freezes an app's clock.

Every golden file is a text file under ``tests/__snapshots__/<test file>/``,
stored byte for byte (UTF-8; ``\\r\\n`` stays ``\\r\\n``), compared whole, so
one character changed anywhere fails the test. Update them all with
``make golden`` (``pytest tests/test_golden_*.py --snapshot-update``), then
read the diff before committing it.

The values that differ between runs are pinned: the runtime's clock is a
:class:`~dsar.clock.MovableClock` frozen at :data:`FROZEN` (moved on only
where a test says so), and ``seeded`` (tests/support/app.py) draws dsar's
ids, tokens and codes from a seeded generator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from dsar import outbox
from dsar.clock import MovableClock
from dsar.demo import DemoInfo, seed

#: the instant every golden test starts at (a Monday morning, not a month end)
FROZEN = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


class TextSnapshot(SingleFileSnapshotExtension):
    """One snapshot per ``.txt`` file: a str, stored as its exact UTF-8 bytes
    (syrupy's text mode would read ``\\r\\n`` back as ``\\n``); failures show a
    line diff of the text."""

    file_extension = "txt"
    _write_mode = WriteMode.BINARY

    def serialize(self, data: Any, **_: Any) -> bytes:
        if not isinstance(data, str):
            raise TypeError(f"a golden file is text, not {type(data).__name__}")
        return data.encode("utf-8")

    def diff_lines(self, serialized_data: Any, snapshot_data: Any) -> Iterator[str]:
        yield from super().diff_lines(_text(serialized_data), _text(snapshot_data))


def _text(data: Any) -> Any:
    return data.decode("utf-8", "replace") if isinstance(data, bytes | bytearray) else data


@pytest.fixture
def golden(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """syrupy's ``snapshot`` storing each value as a text file of its own."""
    return snapshot.use_extension(TextSnapshot)


#: the settings a golden mail is sent with: its links and its sender
MAIL_SETTINGS = {"BASE_URL": "https://privacy.example.com",
                 "MAIL_FROM": "Larkspur Goods Privacy <privacy@example.com>"}


def sent(rt: Any) -> list[str]:
    """Deliver what is queued; the mails written to the outbox, by file name."""
    while outbox.deliver_due(rt):
        pass
    folder = Path(rt.settings["OUTBOX_DIR"])
    return [path.read_bytes().decode("utf-8") for path in sorted(folder.glob("*.eml"))]


def frozen(rt: Any) -> MovableClock:
    """Freeze ``rt``'s clock at :data:`FROZEN`; returns it, to move on."""
    clock = rt.clock = MovableClock(FROZEN)
    return clock


def demo_stores(instance: Path, customers: int = 3) -> DemoInfo:
    """The demo stores (``dsar demo``) with Maildir file names that are the
    same on every run: the stdlib's (time, pid, host name) replaced by a
    digest of each message, its flags kept. A message's key reaches the
    bundle and the audit trail."""
    info = seed(instance, customers=customers)
    for sub in sorted(p for p in info.mail.rglob("*") if p.name in ("cur", "new")):
        for path in sorted(sub.iterdir()):
            _key, colon, flags = path.name.partition(":")
            stable = hashlib.sha256(path.read_bytes()).hexdigest()[:20]
            path.rename(path.with_name(f"{stable}.demo{colon}{flags}"))
    return info
