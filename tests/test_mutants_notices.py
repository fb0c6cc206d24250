"""The requester's notices (dsar/workflow/notices.py) and the identifiers they go
to (dsar/workflow/subjects.py :func:`given_by_requester`), function by function:
each notice is queued straight from a request in the app database, without the
executor, so the rules the end-to-end tests of tests/test_notices.py pass
through are pinned one by one (who is written to, the words of an empty reason
or of no hold, one or many downloads and records, the order of the holds'
lines, the status link, the mail's kind and request). Named test_mutants_* so
`make mutate` runs it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from dsar.models import ExportBundle, Request, Task
from dsar.runtime import Runtime
from dsar.texts import DEFAULTS
from dsar.workflow import notices, verification
from dsar.workflow import requests as flow
from dsar.workflow.subjects import add_identifiers, given_by_requester
from dsar.workflow.task_states import Step, TaskStatus
from tests.support.app import write_connectors
from tests.support.engine_connectors import Script
from tests.support.queued import Mail, queued

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ALICE = "alice@example.org"
#: sorts before Alice's address: found by identity expansion, never written to
ALIAS = "a.smith@example.org"
PHONE = "+441234567890"  # sorts before any address
BASE_URL = "https://privacy.example.com"
UNTIL = datetime(2026, 4, 1, 12, 30, tzinfo=UTC)
TAX_TEXT = "Your invoices: tax law makes us keep them for 10 years."  # sorts after the default


@pytest.fixture
def make_rt(make_app: Callable[..., Flask], scripts: dict[str, Script],
            tmp_path: Path) -> Callable[..., Runtime]:
    """A runtime with a crm (labelled for requesters) and an archive (not), the
    hold ``tax-law`` with a requester text, and ``settings``."""
    scripts["crm"], scripts["archive"] = Script(), Script()

    def factory(**settings: Any) -> Runtime:
        path = write_connectors(tmp_path / "connectors.toml", {
            "crm": {"type": "scripted", "script": "crm"},
            "archive": {"type": "scripted", "script": "archive"}})
        path.write_text(path.read_text() + f'\n[holds.tax-law]\nrequester = "{TAX_TEXT}"\n')
        settings = {"BASE_URL": BASE_URL, "CONNECTORS": str(path), **settings}
        rt: Runtime = make_app(**settings).extensions["dsar"]
        rt.connectors["crm"].label = "Your customer account"
        return rt

    return factory


@pytest.fixture
def rt(make_rt: Callable[..., Runtime]) -> Runtime:
    return make_rt()


def new_request(session: Session, rt: Runtime, identifiers: dict[str, list[str]] | None = None,
                *, verified: bool = True, found: dict[str, list[str]] | None = None) -> Request:
    """An erasure the requester asked for with ``identifiers`` (Alice's
    address), plus those identity expansion ``found``; verified unless not."""
    request = flow.submit(session, rt, "erasure", identifiers or {"email": [ALICE]},
                          actor="officer:test")
    if found:
        add_identifiers(rt, request, found, source="connector:crm")
    if verified:
        request.verified_at = rt.now()
    session.flush()
    return request


def sent(rt: Runtime, notice: Callable[..., object], *args: Any,
         verified: bool = True, **fields: Any) -> list[Mail]:
    """Queue ``notice`` for a new request (with ``fields`` set on it); the
    notices queued for it, decrypted."""
    with rt.transaction() as session:
        request = new_request(session, rt, verified=verified)
        for name, value in fields.items():
            setattr(request, name, value)
        notice(session, rt, request, *args)
        request_id = request.id
    return queued(rt, request_id)


def task(connector: str, result: dict[str, Any] | None, *, step: str = Step.ERASE,
         status: str = TaskStatus.SUCCEEDED) -> Task:
    return Task(connector=connector, step=step, status=status,
                result=None if result is None else json.dumps(result))


def erased_body(rt: Runtime, tasks: list[Task]) -> str:
    (mail,) = sent(rt, notices.erased, tasks)
    assert mail.kind == "notice-erased"
    return mail.body


def status_url(body: str) -> str:
    return next(word for word in body.split() if word.startswith(f"{BASE_URL}/requests/"))


# --- who: subjects.given_by_requester and notices.verified_address ------------------------


def test_only_the_identifiers_of_the_kind_the_requester_gave_are_theirs(rt: Runtime) -> None:
    with rt.transaction() as session:
        request = new_request(session, rt, {"email": ["Zed@Example.org", ALICE],
                                            "phone": [PHONE]},
                              found={"email": [ALIAS], "phone": ["+449999"]})
        assert given_by_requester(rt, request, "email") == [ALICE, "zed@example.org"]
        assert given_by_requester(rt, request, "phone") == [PHONE]
        assert given_by_requester(rt, request, "customer_id") == []
        assert notices.verified_address(rt, request) == ALICE


def test_a_notice_goes_to_the_requester_s_address_not_one_expansion_found(rt: Runtime) -> None:
    with rt.transaction() as session:
        request = new_request(session, rt, {"email": [ALICE], "phone": [PHONE]},
                              found={"email": [ALIAS]})
        mail = notices.cancelled(session, rt, request)
        assert mail is not None and mail.request_id == request.id
        request_id = request.id
    assert [(m.kind, m.to) for m in queued(rt, request_id)] == [("notice-cancelled", ALICE)]


def test_a_verified_request_without_an_address_of_the_requester_s_gets_nothing(
        rt: Runtime) -> None:
    with rt.transaction() as session:
        request = new_request(session, rt, {"phone": [PHONE]}, found={"email": [ALIAS]})
        assert notices.verified_address(rt, request) is None
        assert notices.cancelled(session, rt, request) is None
        request_id = request.id
    assert queued(rt, request_id) == []


def test_an_unverified_request_gets_nothing(rt: Runtime) -> None:
    assert sent(rt, notices.cancelled, verified=False) == []


# --- the access notice and _count ---------------------------------------------------------


@pytest.mark.parametrize(("downloads", "words"), [(1, "once"), (2, "2 times"), (4, "4 times")])
def test_the_access_notice_says_how_many_downloads(make_rt: Callable[..., Runtime],
                                                   downloads: int, words: str) -> None:
    rt = make_rt(EXPORT_MAX_DOWNLOADS=downloads)
    (mail,) = sent(rt, notices.access_ready, ExportBundle(expires_at=UNTIL))
    assert mail.kind == "notice-access-ready"
    until = DEFAULTS["format.datetime"].format(d=UNTIL)
    assert f"You can download it {words} until {until}." in mail.body


def test_no_access_notice_for_a_bundle_without_an_end(rt: Runtime) -> None:
    assert sent(rt, notices.access_ready, ExportBundle(expires_at=None)) == []


# --- the erasure notice: _store_lines and _hold_lines -------------------------------------


def test_the_erasure_notice_counts_only_the_erase_tasks_that_succeeded(rt: Runtime) -> None:
    body = erased_body(rt, [
        task("crm", {"deleted": 2, "masked": 1, "kept": 1, "held": {"tax-law": 1}}),
        task("crm", {"deleted": 50, "held": {"tax-law": 50}}, status=TaskStatus.FAILED),
        task("crm", {"deleted": 70, "held": {"tax-law": 70}}, step=Step.EXPORT),
    ])
    stores = "- Your customer account: 2 deleted, 1 with your details removed, 1 kept"
    assert f"\n\n{stores}\n\n" in body
    assert f"\n\n- 1 record: {TAX_TEXT}\n\n" in body


def test_a_count_a_store_does_not_give_is_none(rt: Runtime) -> None:
    body = erased_body(rt, [task("crm", {"deleted": 2})])
    assert "- Your customer account: 2 deleted, 0 with your details removed, 0 kept" in body


def test_a_store_with_nothing_of_the_subject_is_left_out_not_the_ones_after_it(
        rt: Runtime) -> None:
    body = erased_body(rt, [task("archive", {"deleted": 0}), task("archive", None),
                            task("crm", {"deleted": 3})])
    lines = [line for line in body.splitlines() if line.startswith("- ")]
    assert lines == ["- Your customer account: 3 deleted, 0 with your details removed, 0 kept"]


def test_a_store_no_longer_configured_is_counted_without_a_name(rt: Runtime) -> None:
    body = erased_body(rt, [task("crm", {"deleted": 1}), task("old-shop", {"masked": 2})])
    lines = [line for line in body.splitlines() if line.startswith("- ")]
    assert lines == ["- Your customer account: 1 deleted, 0 with your details removed, 0 kept",
                     "- Our other systems: 0 deleted, 2 with your details removed, 0 kept"]


def test_an_erasure_that_kept_nothing_says_only_what_it_did(rt: Runtime) -> None:
    (mail,) = sent(rt, notices.erased, [task("crm", {"deleted": 1, "held": {}})])
    stores = "- Your customer account: 1 deleted, 0 with your details removed, 0 kept"
    assert mail.body == DEFAULTS["mail.erased.body"].format(
        kind_label=DEFAULTS["kind.erasure"], stores=stores, kept="",
        status_url=status_url(mail.body))


def test_the_holds_own_texts_come_first_and_the_default_last_one_line_each(
        rt: Runtime) -> None:
    """``TAX_TEXT`` sorts after the default text: the order is not the texts'."""
    body = erased_body(rt, [task("crm", {"kept": 4, "held": {"tax-law": 1, "": 2}}),
                            task("archive", {"kept": 1, "held": {"litigation": 1}})])
    holds = (f"- 1 record: {TAX_TEXT}\n"
             f"- 3 records: {DEFAULTS['mail.erased.hold.default']}")
    assert DEFAULTS["mail.erased.kept"].format(holds=holds) in body


# --- the officers' decisions: an empty reason ----------------------------------------------


def test_a_denial_without_a_reason_says_none(rt: Runtime) -> None:
    (mail,) = sent(rt, notices.denied, status_reason=None)
    assert mail.kind == "notice-denied"
    assert "Why:\n\n\n" in mail.body


def test_an_extension_without_a_reason_says_none(rt: Runtime) -> None:
    (mail,) = sent(rt, notices.extended, extension_reason=None)
    assert mail.kind == "notice-extended"
    assert "Why we need more time:\n\n\n" in mail.body


# --- the status link and the mail's record ------------------------------------------------


@pytest.mark.parametrize("base_url", [f"{BASE_URL}/", f"{BASE_URL}/INBOX//"])
def test_the_status_link_has_one_slash_after_the_base_url(make_rt: Callable[..., Runtime],
                                                          base_url: str) -> None:
    rt = make_rt(BASE_URL=base_url)
    base = base_url.rstrip("/")
    with rt.transaction() as session:
        request = new_request(session, rt)
        notices.cancelled(session, rt, request)
        request_id = request.id
    (mail,) = queued(rt, request_id)
    assert f"{base}/requests/{request_id}?token=" in mail.body
    assert f"{base}//" not in mail.body


def test_the_status_link_s_token_opens_its_request(rt: Runtime) -> None:
    with rt.transaction() as session:
        request = new_request(session, rt)
        notices.cancelled(session, rt, request)
        request_id = request.id
    (mail,) = queued(rt, request_id)
    token = status_url(mail.body).split("?token=")[1]
    with rt.transaction() as session:
        assert verification.by_token(session, rt, request_id, token) is not None


def test_the_mail_is_the_request_s_and_named_by_its_notice(rt: Runtime) -> None:
    with rt.transaction() as session:
        request = new_request(session, rt)
        mail = notices.access_ready(session, rt, request, ExportBundle(expires_at=UNTIL))
        assert mail is not None
        assert (mail.kind, mail.request_id) == ("notice-access-ready", request.id)
