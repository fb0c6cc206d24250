"""The requester's code, as tables: how long it lives (CODE_TTL_SECONDS, 15
minutes), how many wrong tries it takes (CODE_MAX_ATTEMPTS, 5; through the
code mail's link counted apart), how soon a new one may be sent
(CODE_RESEND_SECONDS, 60 s, doubled with each code, at most an hour); the
status tokens verification ends; and unverified requests expiring
(UNVERIFIED_EXPIRY_DAYS, 7). The runtime's clock is moved, never
slept past."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dsar.clock import MovableClock
from dsar.executor import InProcessExecutor
from dsar.runtime import Runtime
from dsar.workflow import requests as flow
from dsar.workflow import verification
from dsar.workflow.states import Status

SENT = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CODE = "123456"
WRONG = "654321"


@pytest.fixture
def clock(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> MovableClock:
    monkeypatch.setattr(verification, "new_code", lambda: CODE)
    moving = rt.clock = MovableClock(SENT)
    return moving


def _received(rt: Runtime) -> tuple[str, str]:
    with rt.transaction() as session:
        started = verification.receive(session, rt, "access", "a@example.org")
        return started.request.id, started.status_token


def _check(rt: Runtime, request_id: str, code: str) -> str:
    """The outcome of entering ``code``: ``verified`` or the refusal's class
    name. A refusal commits what it counted, as the portal and the API do."""
    with rt.transaction() as session:
        try:
            verification.check(session, rt, flow.get(session, request_id), code)
        except verification.VerificationError as refused:
            return type(refused).__name__
    with rt.transaction() as session:
        assert flow.get(session, request_id).status == Status.PROCESSING
    return "verified"


LIFETIME = [
    # entered after                  outcome
    (timedelta(0), "verified"),
    (timedelta(minutes=14, seconds=59), "verified"),
    (timedelta(minutes=15) - timedelta(microseconds=1), "verified"),
    (timedelta(minutes=15), "CodeExpired"),
    (timedelta(days=1), "CodeExpired"),
]


@pytest.mark.parametrize(("after", "outcome"), LIFETIME,
                         ids=[f"entered after {after}" for after, _ in LIFETIME])
def test_a_code_lives_fifteen_minutes(rt: Runtime, clock: MovableClock, after: timedelta,
                                      outcome: str) -> None:
    request_id, _token = _received(rt)
    clock.advance(after)
    assert _check(rt, request_id, CODE) == outcome


ATTEMPTS = [
    # wrong codes first, then the right one
    (0, "verified"),
    (1, "verified"),
    (4, "verified"),
    (5, "TooManyAttempts"),
]


@pytest.mark.parametrize(("wrong", "outcome"), ATTEMPTS,
                         ids=[f"{n} wrong codes, then the right one" for n, _ in ATTEMPTS])
def test_five_wrong_codes_use_the_code_up(rt: Runtime, clock: MovableClock, wrong: int,
                                          outcome: str) -> None:
    request_id, _token = _received(rt)
    refusals = [_check(rt, request_id, WRONG) for _ in range(wrong)]
    # the fifth wrong code is refused as the last one allowed
    assert refusals == ["WrongCode"] * min(wrong, 4) + ["TooManyAttempts"] * (wrong == 5)
    assert _check(rt, request_id, CODE) == outcome


COOLDOWN = [
    (timedelta(seconds=0), "ResendTooSoon"),
    (timedelta(seconds=59), "ResendTooSoon"),
    (timedelta(seconds=60), "sent"),
    (timedelta(hours=1), "sent"),
]


@pytest.mark.parametrize(("after", "outcome"), COOLDOWN,
                         ids=[f"asked after {after}" for after, _ in COOLDOWN])
def test_a_new_code_waits_a_minute(rt: Runtime, clock: MovableClock, after: timedelta,
                                   outcome: str) -> None:
    request_id, token = _received(rt)
    clock.advance(after)
    try:
        with rt.transaction() as session:
            verification.resend(session, rt, rt.texts, flow.get(session, request_id))
    except verification.ResendTooSoon:
        assert outcome == "ResendTooSoon"
    else:
        assert outcome == "sent"


def test_a_new_code_starts_a_new_lifetime_and_count(rt: Runtime, clock: MovableClock) -> None:
    request_id, token = _received(rt)
    assert [_check(rt, request_id, WRONG) for _ in range(4)] == ["WrongCode"] * 4
    clock.advance(minutes=10)
    with rt.transaction() as session:
        verification.resend(session, rt, rt.texts, flow.get(session, request_id))
    clock.advance(minutes=14)  # 24 minutes after the first code: the new one still lives
    assert _check(rt, request_id, CODE) == "verified"


WAITS = [
    # codes sent so far   seconds until the next may be sent
    (1, 60), (2, 120), (3, 240), (4, 480), (5, 960), (6, 1920), (7, 3600), (8, 3600),
    (50, 3600),
]


@pytest.mark.parametrize(("sends", "seconds"), WAITS,
                         ids=[f"after code {sends}" for sends, _ in WAITS])
def test_the_wait_between_codes_doubles_up_to_an_hour(rt: Runtime, sends: int,
                                                      seconds: int) -> None:
    assert verification.resend_wait(rt, sends) == seconds


def test_a_cooldown_longer_than_an_hour_is_kept(rt: Runtime) -> None:
    rt.settings["CODE_RESEND_SECONDS"] = 7200.0
    assert [verification.resend_wait(rt, n) for n in (1, 2, 9)] == [7200.0] * 3


def test_each_code_waits_its_own_time(rt: Runtime, clock: MovableClock) -> None:
    request_id, _token = _received(rt)
    outcomes = []
    for wait in (60, 120, 240):
        clock.advance(seconds=wait - 1)
        outcomes.append(_resend(rt, request_id))
        clock.advance(seconds=1)
        outcomes.append(_resend(rt, request_id))
    assert outcomes == ["ResendTooSoon", "sent"] * 3


def _resend(rt: Runtime, request_id: str) -> str:
    try:
        with rt.transaction() as session:
            verification.resend(session, rt, rt.texts, flow.get(session, request_id))
    except verification.ResendTooSoon:
        return "ResendTooSoon"
    return "sent"


HOLDERS = [
    # wrong codes by submitters, by the mail's link, then the right one by:  outcome
    (5, 0, "mail", "verified"),
    (5, 0, "submitter", "TooManyAttempts"),
    (0, 5, "mail", "TooManyAttempts"),
    (0, 5, "submitter", "verified"),
    (4, 4, "mail", "verified"),
    (4, 4, "submitter", "verified"),
]


@pytest.mark.parametrize(("by_submitters", "by_mail", "holder", "outcome"), HOLDERS,
                         ids=[f"{s} wrong by submitters, {m} by the mail's link, then {h}"
                              for s, m, h, _ in HOLDERS])
def test_wrong_codes_through_the_mail_link_count_apart(
        rt: Runtime, clock: MovableClock, by_submitters: int, by_mail: int, holder: str,
        outcome: str) -> None:
    request_id, _token = _received(rt)
    for who, times in (("submitter", by_submitters), ("mail", by_mail)):
        for _ in range(times):
            _check_as(rt, request_id, WRONG, who)
    with rt.transaction() as session:
        state = verification.code_state(session, rt, flow.get(session, request_id), holder)
        assert state is not None and state.locked is (outcome == "TooManyAttempts")
    assert _check_as(rt, request_id, CODE, holder) == outcome


def _check_as(rt: Runtime, request_id: str, code: str, holder: str) -> str:
    with rt.transaction() as session:
        try:
            verification.check(session, rt, flow.get(session, request_id), code, holder)
        except verification.VerificationError as refused:
            return type(refused).__name__
    return "verified"


def test_verification_ends_every_earlier_token(rt: Runtime, clock: MovableClock) -> None:
    with rt.transaction() as session:
        first = verification.receive(session, rt, "access", "a@example.org")
        joined = verification.receive(session, rt, "access", " A@Example.org ")
        other = verification.receive(session, rt, "erasure", "a@example.org")
    assert (first.joined, joined.joined, other.joined) == (False, True, False)
    assert joined.request.id == first.request.id != other.request.id
    assert joined.status_token != first.status_token
    request_id = first.request.id
    with rt.transaction() as session:
        fresh = verification.check(session, rt, flow.get(session, request_id), CODE)
    with rt.transaction() as session:
        for token in (first.status_token, joined.status_token):
            assert verification.by_token(session, rt, request_id, token) is None
        held = verification.find_token(session, rt, request_id, fresh)
        assert held is not None and held.holder == "verifier"
        assert verification.by_token(session, rt, other.request.id, other.status_token)
        assert verification.by_token(session, rt, request_id, other.status_token) is None
        assert verification.code_state(session, rt, flow.get(session, request_id),
                                       "verifier") is None


EXPIRY = [
    (timedelta(days=7) - timedelta(seconds=1), Status.VERIFYING),
    (timedelta(days=7) + timedelta(seconds=1), Status.EXPIRED),
]


@pytest.mark.parametrize(("after", "status"), EXPIRY,
                         ids=[f"unverified for {after}" for after, _ in EXPIRY])
def test_an_unverified_request_expires_after_seven_days(rt: Runtime, clock: MovableClock,
                                                        after: timedelta,
                                                        status: Status) -> None:
    request_id, _token = _received(rt)
    clock.advance(after)
    with rt.transaction() as session:
        flow.expire_unverified(session, rt)
    with rt.transaction() as session:
        assert flow.get(session, request_id).status == status


def test_the_workers_housekeeping_expires_them(rt: Runtime, clock: MovableClock) -> None:
    """Expiry is not only a function: a worker process's housekeeping runs it."""
    request_id, _token = _received(rt)
    clock.advance(days=8)
    with InProcessExecutor(rt, 1, poll_seconds=0.05):
        pass  # the housekeeper does its chores once when it takes the role
    with rt.transaction() as session:
        assert flow.get(session, request_id).status == Status.EXPIRED
