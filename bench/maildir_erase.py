"""Per-message cost of a Maildir erasure as the folder grows.

A folder of 2,000 and of 20,000 other people's messages, plus 300 the
subject received (each masked: address redacted in To and the quoted body).
Times plan, erase and the verifying find separately; the erase cost per
message should not grow with the folder (it did: 29 ms at 2,300 messages,
171 ms at 20,300, when erase relisted the folder per message).

``python -m bench.maildir_erase`` runs this section alone and prints it.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from connectors.maildir import MaildirConnector
from dsar.connector import Subject

SIZES = (2_000, 20_000)
SUBJECT_MESSAGES = 300
SUBJECT = "pat.subject@example.org"


def _message(i: int, to: str) -> bytes:
    return (
        f"From: Support <support@acme.test>\nTo: {to}\nSubject: Ticket {i}\n"
        f"Date: Mon, 06 May 2024 10:00:00 +0000\nMessage-ID: <{i}@acme.test>\n\n"
        f"Your ticket {i} is solved.\n\n{to} wrote:\n> Where is my order {i}?\n"
    ).encode()


def seed(path: Path, others: int, subject_messages: int) -> None:
    """A Maildir with ``others`` messages to other people and
    ``subject_messages`` to the subject, spread among them, all in cur/."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True)
    total = others + subject_messages
    every = total // subject_messages
    for i in range(total):
        to = SUBJECT if i % every == 0 and i // every < subject_messages else f"c{i}@example.org"
        (path / "cur" / f"{1_700_000_000 + i}.M{i}P1.bench:2,S").write_bytes(_message(i, to))


def measure(others: int, connector_class: type[MaildirConnector] = MaildirConnector,
            subject_messages: int = SUBJECT_MESSAGES) -> dict[str, Any]:
    """Seed a fresh Maildir, then time plan, erase and find for the subject."""
    subject = Subject({"email": {SUBJECT}})
    with tempfile.TemporaryDirectory(prefix="dsar-bench-maildir-") as tmp:
        seed(Path(tmp), others, subject_messages)
        connector = connector_class("mail", {"path": tmp, "others": "redact"})
        started = time.perf_counter()
        plan = connector.plan_erasure(subject)
        planned = time.perf_counter()
        result = connector.erase(plan)
        erased = time.perf_counter()
        left = sum(1 for _ in connector.find(subject))
        found = time.perf_counter()
    if result.masked != subject_messages or left:
        raise SystemExit(f"bench: masked {result.masked} of {subject_messages}, {left} left")
    return {"folder_messages": others + subject_messages, "masked": result.masked,
            "plan_ms": round((planned - started) * 1000, 1),
            "erase_ms": round((erased - planned) * 1000, 1),
            "erase_ms_per_message": round((erased - planned) * 1000 / subject_messages, 2),
            "find_ms": round((found - erased) * 1000, 1)}


def run() -> dict[str, Any]:
    """The section of the benchmark report."""
    return {"subject_messages": SUBJECT_MESSAGES,
            "folders": [measure(size) for size in SIZES]}


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
