"""The limits protect the owner of an address, never the stranger who names it.

A stranger may submit requests for someone else's address from as many
source addresses as they like. Whatever they do, the owner can still submit
and verify, their mailbox gets no more than the one code mail (and the codes
someone asked for again, each after a growing wait), and the stranger never
reads the owner's request: every status token issued before verification
stops working at verification, and the verifier gets a fresh one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.message import Message

from flask import Flask

from dsar.clock import MovableClock
from dsar.models import Request
from dsar.texts import DEFAULTS as T
from tests.portal.journey import ALICE, CODE_LINE, Browser, body_of, count, link_in, status_of

STRANGERS = 12  # more than RATE_LIMIT_SUBMIT's default of 10 per hour per address, once


def _strangers(app: Flask, kind: str = "access") -> list[tuple[Browser, str]]:
    """``STRANGERS`` browsers, each from its own address, each submitting ALICE."""
    found = []
    for n in range(STRANGERS):
        stranger = Browser(app, REMOTE_ADDR=f"203.0.113.{n + 1}")
        found.append((stranger, stranger.start(kind, ALICE)))
    return found


def test_strangers_never_lock_the_owner_out_nor_flood_the_mailbox(
        portal_app: Callable[..., Flask]) -> None:
    app = portal_app()
    strangers = _strangers(app)
    owner = Browser(app, REMOTE_ADDR="198.51.100.7")
    mails = owner.outbox.new()
    assert len(mails) == 1, "every stranger's submission joined the first: one code mail"
    assert {request_id for _, request_id in strangers} == {strangers[0][1]}
    assert count(owner.rt) == 1

    # the owner's own submission is never refused and mails nothing more
    answer = owner.submit("access", ALICE)
    assert answer.status_code == 303, answer.text
    request_id = answer.headers["Location"].rsplit("/", 1)[1]
    assert request_id == strangers[0][1] and owner.outbox.new() == []
    page = owner.status(request_id)
    assert page.status_code == 200 and 'name="code"' in page.text

    # the code in the owner's mailbox works on the owner's page
    code = _code(mails[0])
    assert owner.verify(request_id, code).status_code == 303
    assert status_of(owner.rt, request_id) == "processing"
    assert owner.status(request_id).status_code == 200  # the owner's browser has the new token

    for stranger, _ in strangers:  # every token issued before verification is dead
        assert stranger.status(request_id).status_code == 404
        assert stranger.download(request_id)[0] == 404
        assert stranger.resend(request_id).status_code == 404
    follow = Browser(app).client.get(link_in(mails[0]))  # the code mail's link too
    assert follow.status_code == 404


def test_strangers_wrong_codes_never_stop_the_owner_verifying(
        portal_app: Callable[..., Flask]) -> None:
    """Wrong codes from those who only submitted the address are counted apart
    from the code mail's link: only the mailbox's owner has that."""
    app = portal_app(CODE_MAX_ATTEMPTS=3)
    strangers = _strangers(app)
    request_id = strangers[0][1]
    (mail,) = strangers[0][0].outbox.new()
    for stranger, _ in strangers[:4]:
        stranger.verify(request_id, "000000")
    locked = strangers[5][0].verify(request_id, "000000")
    assert locked.status_code == 400 and T["verify.too_many"] in locked.text
    assert strangers[6][0].verify(request_id, _code(mail)).status_code == 400  # even the right one

    owner = Browser(app, REMOTE_ADDR="198.51.100.7")
    assert owner.client.get(link_in(mail)).status_code == 303  # the link from the mailbox
    wrong = owner.verify(request_id, "000001")  # a typo costs the owner one of their own
    assert wrong.status_code == 400 and T["verify.wrong_code"].format(left=2) in wrong.text
    assert owner.verify(request_id, _code(mail)).status_code == 303
    assert status_of(owner.rt, request_id) == "processing"
    for stranger, _ in strangers:
        assert stranger.status(request_id).status_code == 404


def test_a_submission_joins_only_a_pending_request_of_its_kind(
        portal_app: Callable[..., Flask]) -> None:
    app = portal_app()
    first = Browser(app, REMOTE_ADDR="203.0.113.1")
    access = first.start("access", ALICE)
    (access_mail,) = first.outbox.new()
    second = Browser(app, REMOTE_ADDR="203.0.113.2")
    assert second.start("access", f"  {ALICE.upper()}") == access  # the same address
    assert first.outbox.new() == []
    erasure = second.start("erasure", ALICE)  # another kind: its own request and code
    assert erasure != access and len(first.outbox.new()) == 1
    assert second.start("access", "bob@example.org") not in (access, erasure)
    assert len(first.outbox.new()) == 1

    # once verified, the address's next submission is a new request with a new code
    assert first.verify(access, _code(access_mail)).status_code == 303
    third = Browser(app, REMOTE_ADDR="203.0.113.3")
    again = third.start("access", ALICE)
    assert again != access and len(first.outbox.new()) == 1
    assert count(third.rt, Request, kind="access") == 3


def test_codes_asked_for_again_wait_longer_each_time(portal_app: Callable[..., Flask]) -> None:
    """However many strangers ask for new codes, the owner's mailbox gets few:
    the wait doubles with each code (60 s, 2, 4, 8 ... minutes, at most an hour)."""
    app = portal_app(RATE_LIMIT_RESEND="1000 per hour")
    clock = app.extensions["dsar"].clock = MovableClock(datetime(2026, 12, 3, 9, tzinfo=UTC))
    strangers = _strangers(app)
    request_id = strangers[0][1]
    strangers[0][0].outbox.new()
    sent = 0
    for minute in range(120):  # two hours of strangers asking every minute
        for stranger, _ in strangers[:4]:
            answer = stranger.resend(request_id)
            assert answer.status_code in (303, 429), (minute, answer.status_code)
            sent += answer.status_code == 303
        clock.advance(minutes=1)
    mails = strangers[0][0].outbox.new()
    assert sent == len(mails)
    # after 1, 2, 4, 8, 16, 32 minutes, then once an hour: 6 in the first hour
    assert 6 <= len(mails) <= 8, len(mails)


def test_rate_limit_headers_do_not_tell_whether_someone_used_the_address(
        portal_app: Callable[..., Flask]) -> None:
    app = portal_app()
    for n in range(3):
        Browser(app, REMOTE_ADDR=f"203.0.113.{n + 1}").start("access", ALICE)
    used = Browser(app, REMOTE_ADDR="198.51.100.1").submit("access", ALICE)
    unused = Browser(app, REMOTE_ADDR="198.51.100.2").submit("access", "nobody@example.org")
    assert used.status_code == unused.status_code == 303
    # the same limit and the same remaining count; the window's end is each source
    # address's own (its first submission's second), so it is compared to the second
    seen = [_limit_headers(answer) for answer in (used, unused)]
    assert seen[0] and set(seen[0]) == set(seen[1])  # the headers are there, the same ones
    for name in seen[0]:
        if name.lower() == "x-ratelimit-reset":
            assert abs(int(seen[0][name]) - int(seen[1][name])) <= 2
        else:
            assert seen[0][name] == seen[1][name], name


def test_broken_submissions_do_not_share_one_counter(portal_app: Callable[..., Flask]) -> None:
    """Forms without an address, or with one that is not valid, count per
    source address only: they cannot use up a counter everyone shares."""
    app = portal_app(RATE_LIMIT_SUBMIT="2 per minute")
    for n in range(6):
        browser = Browser(app, REMOTE_ADDR=f"203.0.113.{n + 1}")
        assert browser.submit("access", None if n % 2 else "not-an-address").status_code == 400
    assert Browser(app, REMOTE_ADDR="198.51.100.9").submit("access", ALICE).status_code == 303


def _code(mail: Message) -> str:
    found = CODE_LINE.search(body_of(mail))
    assert found, "a code mail without a code on a line of its own"
    return found.group(1)


def _limit_headers(answer: object) -> dict[str, str]:
    headers = getattr(answer, "headers")  # noqa: B009
    return {k: v for k, v in headers.items()
            if k.lower().startswith("x-ratelimit") or k.lower() == "retry-after"}


def test_joining_does_not_tell_when_someone_else_submitted(
        portal_app: Callable[..., Flask]) -> None:
    """Before verification each submitter sees the dates of their own
    submission, so the dates on the page cannot tell that someone submitted
    the address before; once verified, the request's own."""
    app = portal_app()
    clock = app.extensions["dsar"].clock = MovableClock(datetime(2026, 3, 2, 9, tzinfo=UTC))
    stranger = Browser(app, REMOTE_ADDR="203.0.113.1")
    request_id = stranger.start("access", ALICE)
    clock.advance(days=5)
    owner = Browser(app, REMOTE_ADDR="198.51.100.7")
    owner.outbox.new()  # the first code, now expired
    assert owner.start("access", ALICE) == request_id
    page = owner.status(request_id).text
    assert "7 March 2026" in page and "7 April 2026" in page  # the owner's own submission
    assert "2 March 2026" not in page and "2 April 2026" not in page
    assert "2 March 2026" in stranger.status(request_id).text
    assert owner.resend(request_id).status_code == 303  # the first code has expired
    assert owner.verify(request_id, owner.outbox.code()).status_code == 303
    page = owner.status(request_id).text
    assert "2 March 2026" in page and "2 April 2026" in page  # the request's, once verified
