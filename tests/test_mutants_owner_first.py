"""Owner-first verification where `make mutate` found it loose: the rate-limit bucket of
each holder of a token (dsar/api/guards.py ``presented_token``), the code's state as a
status page shows it, the link in the code mail, joining a pending request (which one,
and what the audit trail says), and which status tokens ``find_token`` looks up. The
runtime's clock is moved, never slept past."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from dsar.clock import MovableClock
from dsar.models import AuditEvent, Request, RequestToken, TokenHolder
from dsar.runtime import Runtime
from dsar.workflow import requests as flow
from dsar.workflow import verification
from dsar.workflow.subjects import add_identifiers
from tests.support.queued import queued
from tests.support.statements import counting

SENT = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CODE, WRONG = "123456", "654321"
ALICE = "alice@example.org"
BASE = "/api/v1/requests"
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
GENEROUS = {"RATE_LIMIT_SUBMIT": "1000 per minute", "RATE_LIMIT_VERIFY": "1000 per minute",
            "RATE_LIMIT_RESEND": "1000 per minute"}


@pytest.fixture
def clock(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> MovableClock:
    monkeypatch.setattr(verification, "new_code", lambda: CODE)
    moving = rt.clock = MovableClock(SENT)
    return moving


def ids(*chosen: str) -> Callable[[], str]:
    """A stand-in for ``new_request_id`` handing out ``chosen`` in turn."""
    given: Iterator[str] = iter(chosen)
    return lambda: next(given)


def received(rt: Runtime, address: str = ALICE, kind: str = "access") -> verification.Started:
    with rt.transaction() as session:
        return verification.receive(session, rt, kind, address)


def started_apart(rt: Runtime, address: str = ALICE, kind: str = "access") -> str:
    """A request for ``address`` started on its own, as if none were pending (what two
    submissions at the same moment can leave behind); its id."""
    with rt.transaction() as session:
        request = flow.submit(session, rt, kind, {"email": [address]})
        verification.start(session, rt, rt.texts, request)
        return request.id


# -- the API: each holder of a token has their own verify and resend counters -----------

def _api(make_app: Callable[..., Flask], **config: str) -> tuple[FlaskClient, Runtime]:
    app = make_app(**{**GENEROUS, **config})
    return app.test_client(), app.extensions["dsar"]


def _submit(client: FlaskClient, n: int) -> tuple[str, str]:
    answer = client.post(BASE, json={"kind": "access", "email": ALICE},
                         environ_base={"REMOTE_ADDR": f"203.0.113.{n}"})
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["id"], answer.get_json()["status_token"]


def _post(client: FlaskClient, url: str, n: int, headers: dict[str, str],
          **body: str) -> TestResponse:
    """A POST from its own address (``198.51.100.n``), so only per-holder limits count."""
    return client.post(url, json=body or None, headers=headers,
                       environ_base={"REMOTE_ADDR": f"198.51.100.{n}"})


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@SQLITE
def test_two_holders_of_one_requests_tokens_have_their_own_verify_counters(
        make_app: Callable[..., Flask]) -> None:
    client, _ = _api(make_app, RATE_LIMIT_VERIFY="2 per minute")
    request_id, stranger = _submit(client, 1)
    joined, owner = _submit(client, 2)
    assert joined == request_id
    url = f"{BASE}/{request_id}/verify"
    answers = [_post(client, url, n, auth(stranger), code=WRONG).status_code for n in (1, 2, 3)]
    assert answers == [400, 400, 429]  # the stranger's own counter is used up
    assert _post(client, url, 4, auth(owner), code=WRONG).status_code == 400  # not the owner's


@SQLITE
def test_two_holders_of_one_requests_tokens_have_their_own_resend_counters(
        make_app: Callable[..., Flask]) -> None:
    client, rt = _api(make_app, RATE_LIMIT_RESEND="1 per minute")
    rt.clock = MovableClock(SENT)
    request_id, stranger = _submit(client, 1)
    _, owner = _submit(client, 2)
    url = f"{BASE}/{request_id}/resend"
    rt.clock.advance(seconds=61)  # past the code's cooldown (the limiter's window is real time)
    assert _post(client, url, 1, auth(stranger)).status_code == 202
    assert _post(client, url, 2, auth(stranger)).status_code == 429
    rt.clock.advance(seconds=121)  # past the doubled cooldown
    assert _post(client, url, 3, auth(owner)).status_code == 202


# -- the code's state as a status page shows it -----------------------------------------

@SQLITE
def test_the_code_state_counts_down_the_wait_for_a_new_code_to_zero(
        rt: Runtime, clock: MovableClock) -> None:
    request_id = received(rt).request.id

    def resend_in() -> float:
        with rt.transaction() as session:
            state = verification.code_state(session, rt, flow.get(session, request_id),
                                            TokenHolder.SUBMITTER.value)
            assert state is not None and not state.locked
            return state.resend_in

    assert resend_in() == 60.0
    clock.advance(seconds=45)
    assert resend_in() == 15.0
    clock.advance(seconds=15)
    assert resend_in() == 0.0
    clock.advance(seconds=600)
    assert resend_in() == 0.0


# -- the code mail, and the check of its code ------------------------------------------

@SQLITE
def test_the_code_mails_link_keeps_every_part_of_base_url_but_its_last_slash(
        make_app: Callable[..., Flask]) -> None:
    rt: Runtime = make_app(BASE_URL="https://dsar.example.org/X/").extensions["dsar"]
    request_id = received(rt).request.id
    (mail,) = queued(rt, request_id)
    assert f"https://dsar.example.org/X/requests/{request_id}?token=" in mail.body


@SQLITE
def test_a_requests_first_code_does_not_look_for_an_earlier_one(
        rt: Runtime, clock: MovableClock) -> None:
    with rt.transaction() as session:
        request = flow.submit(session, rt, "access", {"email": [ALICE]})
        with counting(rt.engine) as seen:
            verification.start(session, rt, rt.texts, request)
            session.flush()
    assert not [s for s in seen.data if "FROM verifications" in s], seen.data
    assert [mail.kind for mail in queued(rt, request.id)] == ["verification-code"]


@SQLITE
def test_verifying_changes_the_requests_row_without_reading_it_again(
        rt: Runtime, clock: MovableClock) -> None:
    """The caller has the request: the code's check drops its tokens (all of them, in one
    DELETE), not what was read of the request."""
    request_id = received(rt).request.id
    with rt.transaction() as session:
        request = flow.get(session, request_id)
        with counting(rt.engine) as seen:
            verification.check(session, rt, request, CODE)
            session.flush()
    written = next(n for n, s in enumerate(seen.data) if s.lstrip().startswith("UPDATE requests"))
    assert not [s for s in seen.data[:written] if "FROM requests" in s], seen.data[:written]
    assert request.status == "processing"


# -- joining a pending request ---------------------------------------------------------

@SQLITE
def test_joining_is_recorded_by_the_requester_on_the_joined_request(
        rt: Runtime, clock: MovableClock) -> None:
    first = received(rt)
    joined = received(rt, ALICE.upper())
    assert joined.joined and joined.request.id == first.request.id
    with rt.transaction() as session:
        recorded = [(e.action, e.actor, e.request_id, json.loads(e.details))
                    for e in session.scalars(select(AuditEvent).where(
                        AuditEvent.action == "request.joined"))]
    assert recorded == [("request.joined", "requester", first.request.id, {})]


@SQLITE
def test_a_submission_joins_the_newest_pending_request_of_its_address(
        rt: Runtime, clock: MovableClock, monkeypatch: pytest.MonkeyPatch) -> None:
    older, newer = "0" * 32, "f" * 32
    monkeypatch.setattr(flow, "new_request_id", ids(older, newer))
    started_apart(rt)
    clock.advance(seconds=1)
    started_apart(rt)
    assert received(rt).request.id == newer


@SQLITE
@pytest.mark.parametrize("first", ["0" * 32, "f" * 32])
def test_of_pending_requests_received_at_one_moment_the_lowest_id_is_joined(
        rt: Runtime, clock: MovableClock, monkeypatch: pytest.MonkeyPatch, first: str) -> None:
    """Whichever was written first, so that every submission joins the same one."""
    second = "f" * 32 if first == "0" * 32 else "0" * 32
    monkeypatch.setattr(flow, "new_request_id", ids(first, second))
    started_apart(rt)
    started_apart(rt)
    assert received(rt).request.id == "0" * 32


@SQLITE
def test_an_address_found_by_a_connector_is_not_one_the_requester_submitted(
        rt: Runtime, clock: MovableClock) -> None:
    """A pending request for another address that lists this one (not as the
    requester's) is no one's to join: the submission makes its own request."""
    other = started_apart(rt, "bob@example.org")
    with rt.transaction() as session:
        add_identifiers(rt, flow.get(session, other), {"email": [ALICE]}, source="connector:crm")
    started = received(rt)
    assert not started.joined and started.request.id != other
    with rt.transaction() as session:
        assert len(session.scalars(select(Request)).all()) == 2


# -- which tokens find_token looks up ----------------------------------------------------

@SQLITE
@pytest.mark.parametrize(("length", "found"), [(200, True), (201, False)])
def test_a_token_is_looked_up_up_to_200_characters(rt: Runtime, clock: MovableClock,
                                                   length: int, found: bool) -> None:
    """Up to 200 characters, what an API bearer may be; a longer one is never
    looked up, even if a row had its digest."""
    request_id = received(rt).request.id
    token = "t" * length
    with rt.transaction() as session:
        session.add(RequestToken(digest=verification.token_digest(rt, token),
                                 request_id=request_id, holder=TokenHolder.SUBMITTER.value))
    with rt.transaction() as session:
        row = verification.find_token(session, rt, request_id, token)
        assert (row is not None) is found
        assert verification.find_token(session, rt, request_id, "") is None
