"""Golden files: every mail dsar sends, byte for byte as it leaves.

dsar sends one kind of mail, the requester's code (``mail.code.*`` in
dsar/texts.py, queued by dsar/workflow/verification.py): the first code of an
access request and of an erasure request (their wording differs), and a code
sent again (``verification-code-resend``). Each is queued in the outbox,
delivered by the outbox's deliverer and pinned as the ``.eml`` the mailer
writes (every header: From, To, Subject, Date, Message-ID, MIME; and the
body), with a frozen clock and seeded codes, tokens, ids and Message-IDs.
SQLite only: the mail does not depend on the app database.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from syrupy.assertion import SnapshotAssertion

from dsar.runtime import Runtime
from dsar.workflow import requests as flow
from dsar.workflow import verification
from tests.support.golden import MAIL_SETTINGS, frozen, golden, sent  # noqa: F401

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ADDRESS = "Ada.Quillby@Example.org"  # the code goes to the address as normalised


@pytest.fixture
def mail_rt(make_app: Callable[..., Flask], tmp_path: Path, seeded: object) -> Runtime:
    app = make_app(OUTBOX_DIR=str(tmp_path / "outbox"), **MAIL_SETTINGS)
    rt: Runtime = app.extensions["dsar"]
    frozen(rt)
    return rt


@pytest.mark.parametrize("kind", ["access", "erasure"])
def test_the_code_mail(mail_rt: Runtime, kind: str,
                       golden: SnapshotAssertion) -> None:  # noqa: F811
    with mail_rt.transaction() as session:
        verification.receive(session, mail_rt, kind, ADDRESS)
    (mail,) = sent(mail_rt)
    assert golden == mail


def test_the_code_mail_sent_again(mail_rt: Runtime, golden: SnapshotAssertion) -> None:  # noqa: F811
    with mail_rt.transaction() as session:
        started = verification.receive(session, mail_rt, "access", ADDRESS)
        request_id = started.request.id
    first = sent(mail_rt)
    mail_rt.clock.advance(minutes=2)
    with mail_rt.transaction() as session:
        verification.resend(session, mail_rt, mail_rt.texts, flow.get(session, request_id))
    (again,) = [mail for mail in sent(mail_rt) if mail not in first]
    assert golden == again
