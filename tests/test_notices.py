"""The requester's notices (dsar/workflow/notices.py), rule by rule: who gets
one (only the address the requester verified, never one found by identity
expansion, never a request nobody verified), what each says (the export's
limits and a status link that is not the download; what erasure did per store,
by the store's requester-facing label, and what a hold kept and why; a
denial's reason with the right to complain; the new due date), and that a
notice commits or rolls back with its change. The exact words are pinned by
tests/test_golden_requester_mail.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from flask import Flask
from sqlalchemy import select

from dsar import outbox
from dsar.clock import MovableClock
from dsar.config import ConfigError
from dsar.connector import Subject
from dsar.database import utcnow
from dsar.executor import InProcessExecutor
from dsar.models import ExportBundle, Request, RequestToken, TokenHolder
from dsar.registry import load_hold_texts
from dsar.runtime import Runtime
from dsar.texts import DEFAULTS, load_texts
from dsar.workflow import erasure, verification
from dsar.workflow import requests as flow
from tests.support.app import write_connectors
from tests.support.engine_connectors import Script
from tests.support.queued import Mail, queued

ALICE = "alice@example.org"
#: Alice's other address, found in the crm by identity expansion: never written to
ALIAS = "a.smith@example.org"
BASE_URL = "https://privacy.example.com"
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
TAX_TEXT = "Your invoices: tax law makes us keep them for 10 years. We use them for nothing else."


def mails(rt: Runtime, request_id: str) -> list[Mail]:
    """The request's mail in the outbox, oldest first, decrypted."""
    return queued(rt, request_id)


def notices(rt: Runtime, request_id: str) -> list[Mail]:
    return [m for m in mails(rt, request_id) if m.kind.startswith("notice-")]


def connector_file(tmp_path: Path, tables: dict[str, dict[str, Any]], holds: str = "") -> str:
    path = write_connectors(tmp_path / "connectors.toml", tables)
    path.write_text(path.read_text() + holds)
    return str(path)


@pytest.fixture
def stores(scripts: dict[str, Script]) -> dict[str, dict[str, Any]]:
    """A crm that links Alice's address to another one of hers (identity
    expansion) and keeps one of her records under the hold ``tax-law``, and an
    archive (one record)."""
    crm = scripts["crm"] = Script()
    crm.seed(ALICE, 3)
    crm.seed(ALIAS, 1, "orders")
    crm.links = {ALICE: {"email": {ALIAS}}}
    crm.holds = {f"{ALICE}-0"}
    archive = scripts["archive"] = Script()
    archive.seed(ALICE, 1)
    return {"archive": {"type": "scripted", "script": "archive"},
            "crm": {"type": "discovering", "script": "crm"}}


@pytest.fixture
def app(make_app: Callable[..., Flask], stores: dict[str, dict[str, Any]],
        tmp_path: Path) -> Flask:
    holds = f'\n[holds.tax-law]\nrequester = "{TAX_TEXT}"\n'
    return make_app(CONNECTORS=connector_file(tmp_path, stores, holds), BASE_URL=BASE_URL,
                    ERASURE_REVIEW=True)


def process(rt: Runtime) -> None:
    """Run the tasks; the mail stays queued (the executor's mailer would send
    it and clear its content), so the test reads it from the outbox."""
    with mock.patch.object(outbox, "deliver_due", return_value=0), \
            InProcessExecutor(rt, 2, poll_seconds=0.05) as executor:
        assert executor.wait_until_idle(30)


def verified(rt: Runtime, kind: str = "access", email: str = ALICE) -> str:
    """A request verified by its code, as a requester does it; its id."""
    with rt.transaction() as session:
        request = verification.receive(session, rt, kind, email).request
        request_id = request.id
    (code_mail,) = mails(rt, request_id)
    code = next(line.strip() for line in code_mail.body.splitlines()
                if line.strip().isdigit() and len(line.strip()) == 6)
    with rt.transaction() as session:
        verification.check(session, rt, flow.get(session, request_id), code)
    return request_id


def unverified(rt: Runtime, kind: str = "access") -> str:
    with rt.transaction() as session:
        return verification.receive(session, rt, kind, ALICE).request.id


def act(rt: Runtime, request_id: str, action: Callable[..., Any], **options: Any) -> None:
    with rt.transaction() as session:
        action(session, rt, flow.get(session, request_id), actor="officer:test", **options)


def when(value: Any, *, with_time: bool = False) -> str:
    return DEFAULTS["format.datetime" if with_time else "format.date"].format(d=value)


# --- who receives a notice ----------------------------------------------------------------


def test_the_access_notice_goes_to_the_verified_address_only(rt: Runtime) -> None:
    request_id = verified(rt, email="Alice@Example.org")
    process(rt)
    with rt.transaction() as session:
        request = flow.get(session, request_id)
        assert request.status == "completed"
        assert {i.source for i in request.identifiers} == {"requester", "connector:crm"}
    everything = mails(rt, request_id)
    assert [(m.kind, m.to) for m in everything] == [("verification-code", ALICE),
                                                    ("notice-access-ready", ALICE)]
    assert all(ALIAS not in m.to + m.subject + m.body for m in everything)


@SQLITE
def test_an_erasure_notice_goes_to_the_verified_address_only(rt: Runtime) -> None:
    request_id = verified(rt, "erasure")
    act(rt, request_id, flow.approve)
    process(rt)
    (notice,) = notices(rt, request_id)
    assert (notice.kind, notice.to) == ("notice-erased", ALICE)
    assert ALIAS not in notice.body


@SQLITE
def test_a_request_verified_out_of_band_is_told_at_its_requester_s_address(rt: Runtime) -> None:
    """An operator checked the identity (``--verified``): the address the
    requester gave is the one verified; expansion's addresses still are not."""
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": [ALICE]}, actor="officer:test")
        flow.mark_verified(session, rt, request, actor="officer:test", method="out-of-band")
        request_id = request.id
    process(rt)
    assert [(m.kind, m.to) for m in mails(rt, request_id)] == [("notice-access-ready", ALICE)]


def test_an_unverified_request_gets_nothing_but_its_code(rt: Runtime) -> None:
    """Nobody proved the address: paused, extended, resumed, cancelled or
    expired, it gets no notice (the code mail is the only one)."""
    rt.clock = MovableClock(utcnow())
    paused = unverified(rt)
    act(rt, paused, flow.extend, months=1, reason="We need to check more systems.")
    act(rt, paused, flow.pause, waiting_for="identity")
    act(rt, paused, flow.resume)
    act(rt, paused, flow.cancel, reason="asked twice")
    expired = unverified(rt)
    rt.clock.advance(days=int(rt.settings["UNVERIFIED_EXPIRY_DAYS"]) + 1)
    with rt.transaction() as session:
        assert flow.expire_unverified(session, rt) == 1
        assert flow.get(session, expired).status == "expired"
        assert flow.get(session, paused).status == "cancelled"
        assert session.scalars(select(RequestToken.holder).where(
            RequestToken.holder == TokenHolder.NOTICE.value)).all() == []
    for request_id in (paused, expired):
        assert [m.kind for m in mails(rt, request_id)] == ["verification-code"]


@SQLITE
def test_a_partially_failed_request_is_not_told_the_officer_finishes_it(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    scripts["crm"] = Script()
    rt: Runtime = make_app({"crm": {"type": "scripted", "script": "crm"},
                            "old": {"type": "broken", "script": "crm"}}).extensions["dsar"]
    request_id = verified(rt)
    process(rt)
    with rt.transaction() as session:
        assert flow.get(session, request_id).status == "partially_failed"
    assert notices(rt, request_id) == []


@SQLITE
def test_a_notice_rolls_back_with_its_change(rt: Runtime) -> None:
    request_id = verified(rt, "erasure")
    with pytest.raises(RuntimeError), rt.transaction() as session:
        flow.deny(session, rt, flow.get(session, request_id), actor="officer:test",
                  reason="We must keep it.")
        raise RuntimeError("the officer's request failed after the change")
    with rt.transaction() as session:
        assert flow.get(session, request_id).status == "awaiting_review"
    assert notices(rt, request_id) == []


# --- what each says -----------------------------------------------------------------------


@SQLITE
def test_the_access_notice_says_until_when_and_how_many_downloads(
        make_app: Callable[..., Flask], stores: dict[str, dict[str, Any]]) -> None:
    rt: Runtime = make_app(stores, BASE_URL=BASE_URL, EXPORT_LINK_DAYS=5,
                           EXPORT_MAX_DOWNLOADS=4).extensions["dsar"]
    request_id = verified(rt)
    process(rt)
    (notice,) = notices(rt, request_id)
    with rt.transaction() as session:
        bundle = session.get(ExportBundle, request_id)
        assert bundle is not None and bundle.expires_at is not None
        until = when(bundle.expires_at, with_time=True)
    assert until in notice.body and "4 times" in notice.body
    assert f"{BASE_URL}/requests/{request_id}?token=" in notice.body
    assert "/download" not in notice.body and bundle.filename not in notice.body
    assert "{" not in notice.subject + notice.body


@SQLITE
def test_the_link_in_the_access_notice_opens_the_status_page(app: Flask) -> None:
    rt: Runtime = app.extensions["dsar"]
    request_id = verified(rt)
    process(rt)
    (notice,) = notices(rt, request_id)
    link = next(word for word in notice.body.split() if word.startswith(BASE_URL))
    path = link.removeprefix(BASE_URL)
    assert path.startswith(f"/requests/{request_id}?token=")
    with rt.transaction() as session:  # a token minted for this notice
        holders = session.scalars(select(RequestToken.holder).where(
            RequestToken.request_id == request_id)).all()
    assert sorted(holders) == ["notice", "verifier"]
    client = app.test_client()
    opened = client.get(path)
    assert opened.status_code == 303
    assert opened.headers["Location"] == f"/requests/{request_id}"
    page = client.get(opened.headers["Location"])
    assert page.status_code == 200
    assert DEFAULTS["status.completed"] in page.get_data(as_text=True)
    assert app.test_client().get(f"/requests/{request_id}/download").status_code == 404


@SQLITE
def test_the_erasure_notice_names_stores_by_label_and_holds_in_plain_words(rt: Runtime) -> None:
    rt.connectors["crm"].label = "Your customer account"
    request_id = verified(rt, "erasure")
    act(rt, request_id, flow.approve)
    process(rt)
    (notice,) = notices(rt, request_id)
    body = notice.body
    assert "- Your customer account: 3 deleted, 0 with your details removed, 1 kept" in body
    assert "- Our other systems: 1 deleted, 0 with your details removed, 0 kept" in body
    assert "crm" not in body and "archive" not in body and "tax-law" not in body
    assert f"- 1 record: {TAX_TEXT}" in body
    assert "invoices kept 10 years" not in body  # the officer's detail stays the officer's


@SQLITE
def test_a_hold_without_a_requester_text_gets_the_default(
        make_app: Callable[..., Flask], stores: dict[str, dict[str, Any]],
        scripts: dict[str, Script]) -> None:
    scripts["crm"].holds = {f"{ALICE}-0", f"{ALICE}-1"}
    scripts["crm"].hold_names = {f"{ALICE}-1": ()}  # a connector that names no hold
    rt: Runtime = make_app(stores, BASE_URL=BASE_URL, ERASURE_REVIEW=False).extensions["dsar"]
    request_id = verified(rt, "erasure")
    process(rt)
    (notice,) = notices(rt, request_id)
    assert f"- 2 records: {DEFAULTS['mail.erased.hold.default']}" in notice.body
    assert "- Our systems: 3 deleted, 0 with your details removed, 2 kept" in notice.body


@SQLITE
def test_an_erasure_that_found_nothing_says_so(
        make_app: Callable[..., Flask], scripts: dict[str, Script]) -> None:
    scripts["crm"] = Script()
    rt: Runtime = make_app({"crm": {"type": "scripted", "script": "crm"}},
                           ERASURE_REVIEW=False).extensions["dsar"]
    request_id = verified(rt, "erasure")
    process(rt)
    (notice,) = notices(rt, request_id)
    assert DEFAULTS["mail.erased.nothing"] in notice.body
    assert DEFAULTS["mail.erased.kept"].split("{")[0] not in notice.body


@SQLITE
def test_the_denial_gives_the_reason_and_the_rights(rt: Runtime) -> None:
    request_id = verified(rt, "erasure")
    act(rt, request_id, flow.deny, reason="We must keep your invoices (tax law).")
    (notice,) = notices(rt, request_id)
    assert (notice.kind, notice.to) == ("notice-denied", ALICE)
    assert "We must keep your invoices (tax law)." in notice.body
    assert "supervisory authority" in notice.body and "court" in notice.body
    assert "Art. 12(4)" in notice.body


@SQLITE
def test_the_extension_gives_the_new_date_and_the_reason(rt: Runtime) -> None:
    request_id = verified(rt, "erasure")
    act(rt, request_id, flow.extend, months=2, reason="Your data is in many systems.")
    (notice,) = notices(rt, request_id)
    with rt.transaction() as session:
        due = flow.get(session, request_id).due_at
    assert notice.kind == "notice-extended"
    assert when(due) in notice.body and "Your data is in many systems." in notice.body


@SQLITE
@pytest.mark.parametrize("waiting_for", ["identity", "clarification"])
def test_a_pause_says_what_we_need_and_a_resume_the_new_date(rt: Runtime,
                                                            waiting_for: str) -> None:
    rt.clock = MovableClock(utcnow())
    request_id = verified(rt, "erasure")
    act(rt, request_id, flow.pause, waiting_for=waiting_for, note="officer's own words")
    rt.clock.advance(days=3)
    act(rt, request_id, flow.resume)
    paused, resumed = notices(rt, request_id)
    assert (paused.kind, resumed.kind) == ("notice-paused", "notice-resumed")
    assert DEFAULTS[f"mail.paused.{waiting_for}"] in paused.body
    assert "officer's own words" not in paused.body
    with rt.transaction() as session:
        due = flow.get(session, request_id).due_at
    assert when(due) in resumed.body


@SQLITE
def test_a_verified_request_cancelled_is_told_in_short(rt: Runtime) -> None:
    request_id = verified(rt, "erasure")
    act(rt, request_id, flow.cancel, reason="the officer's reason, not for the requester")
    (notice,) = notices(rt, request_id)
    assert (notice.kind, notice.to) == ("notice-cancelled", ALICE)
    assert "officer's reason" not in notice.body


@SQLITE
def test_every_notice_carries_its_own_status_link(rt: Runtime) -> None:
    request_id = verified(rt, "erasure")
    act(rt, request_id, flow.extend, months=1, reason="More systems to check.")
    act(rt, request_id, flow.pause, waiting_for="identity")
    links = {word for m in notices(rt, request_id) for word in m.body.split()
             if word.startswith(f"{BASE_URL}/requests/{request_id}?token=")}
    assert len(links) == 2
    with rt.transaction() as session:
        request = session.get(Request, request_id)
        assert request is not None
        found = [verification.by_token(session, rt, request_id, link.split("token=")[1])
                 for link in links]
    assert found == [request, request]


# --- the erasure's result and the hold texts ----------------------------------------------


@SQLITE
def test_an_erasure_counts_what_each_hold_kept(make_app: Callable[..., Flask],
                                               scripts: dict[str, Script]) -> None:
    scripts["crm"] = Script()
    scripts["crm"].seed(ALICE, 4)
    scripts["crm"].holds = {f"{ALICE}-0", f"{ALICE}-1", f"{ALICE}-2"}
    scripts["crm"].hold_names = {f"{ALICE}-1": ("tax-law", "litigation"), f"{ALICE}-2": ()}
    rt: Runtime = make_app({"crm": {"type": "scripted", "script": "crm"}}).extensions["dsar"]
    outcome = erasure.run(rt.connectors["crm"], Subject({"email": [ALICE]}))
    assert outcome.ok
    assert outcome.result["held"] == {"": 1, "litigation": 1, "tax-law": 2}


def test_hold_texts_are_read_from_the_connector_file(tmp_path: Path) -> None:
    path = tmp_path / "connectors.toml"
    path.write_text('[connectors.crm]\ntype = "sql"\n\n[holds.tax-records]\n'
                    'requester = "  We keep invoices 10 years.  "\n\n'
                    '[holds.litigation]\nrequester = "A court case."\n')
    assert load_hold_texts(str(path)) == {"tax-records": "We keep invoices 10 years.",
                                          "litigation": "A court case."}
    assert load_hold_texts(None) == {}
    path.write_text('[connectors.crm]\ntype = "sql"\n')
    assert load_hold_texts(str(path)) == {}


@pytest.mark.parametrize(("holds", "where"), [
    ('holds = "tax"\n', "holds: must be a table"),
    ("[holds]\ntax = \"text\"\n", "holds.tax: must be a table"),
    ("[holds.tax]\nofficer = \"x\"\n", "holds.tax: unknown keys officer"),
    ("[holds.tax]\n", "holds.tax.requester: missing"),
    ("[holds.tax]\nrequester = \"  \"\n", "holds.tax.requester: missing"),
    ("[holds.tax]\nrequester = 3\n", "holds.tax.requester: must be text"),
])
def test_a_bad_hold_text_names_the_file_and_key(tmp_path: Path, holds: str, where: str) -> None:
    path = tmp_path / "connectors.toml"
    path.write_text(holds + '\n[connectors.crm]\ntype = "sql"\n')
    with pytest.raises(ConfigError) as caught:
        load_hold_texts(str(path))
    assert str(caught.value).startswith(f"{path}: {where}"), caught.value


@SQLITE
def test_the_runtime_validates_the_hold_texts_with_the_connectors(
        make_app: Callable[..., Flask], stores: dict[str, dict[str, Any]],
        tmp_path: Path) -> None:
    rt: Runtime = make_app(CONNECTORS=connector_file(tmp_path, stores, "\n[holds.x]\n")) \
        .extensions["dsar"]
    with pytest.raises(ConfigError, match="holds.x.requester"):
        _ = rt.connectors
    good = make_app(CONNECTORS=connector_file(tmp_path, stores, '\n[holds.x]\nrequester = "y"\n'))
    assert good.extensions["dsar"].hold_texts == {"x": "y"}


# --- the code stays out of the subject ----------------------------------------------------


@SQLITE
def test_the_code_mail_s_subject_holds_no_code(rt: Runtime) -> None:
    """A subject shows on lock screens and in notifications: the code is in the body only."""
    request_id = unverified(rt)
    (mail,) = mails(rt, request_id)
    assert mail.subject == DEFAULTS["mail.code.subject"]
    assert not any(c.isdigit() for c in mail.subject)


def test_a_company_s_texts_cannot_put_the_code_in_the_subject(tmp_path: Path) -> None:
    path = tmp_path / "texts.toml"
    path.write_text('[texts]\n"mail.code.subject" = "Code {code} for your request"\n')
    with pytest.raises(ConfigError, match=r"mail.code.subject.*\{code\}"):
        load_texts(str(path))
