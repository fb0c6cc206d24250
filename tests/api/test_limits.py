"""Rate limits: submit per IP, verify and resend per IP and per holder of a
request's token; a limited call is a JSON 429 with Retry-After and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from flask import Flask

from dsar.clock import MovableClock
from tests.api.helpers import ALICE, BASE, BOB, Outbox, auth, counts, error_of, submit

IP_A, IP_B, IP_C = ({"REMOTE_ADDR": f"192.0.2.{n}"} for n in (1, 2, 3))


def test_submit_is_limited_per_ip(make_api: Callable[..., Flask]) -> None:
    app = make_api(RATE_LIMIT_SUBMIT="2 per minute")
    client, rt = app.test_client(), app.extensions["dsar"]
    submit(client, address="a@example.org")
    submit(client, address="b@example.org")
    before = counts(rt)
    response = client.post(BASE, json={"kind": "access", "email": "c@example.org"})
    error = error_of(response, 429, "rate_limited")
    assert error["message"] == rt.texts["api.rate_limited"]
    assert int(response.headers["Retry-After"]) > 0
    assert counts(rt) == before
    submit(client, address="c@example.org", **IP_B)  # another address is not limited


def test_submissions_for_one_address_join_one_request_whatever_the_ip(
        make_api: Callable[..., Flask], outbox: Outbox) -> None:
    """No limit counts per address (a stranger could lock its owner out): a
    submission for an address whose request of that kind waits for its code
    joins it, with its own token, and mails nothing."""
    app = make_api(RATE_LIMIT_SUBMIT="2 per minute")
    client, rt = app.test_client(), app.extensions["dsar"]
    tokens = {}
    for n in range(6):
        response = client.post(BASE, json={"kind": "access", "email": ALICE.upper()},
                               environ_base={"REMOTE_ADDR": f"203.0.113.{n}"})
        assert response.status_code == 202, response.get_json()
        tokens[response.get_json()["status_token"]] = response.get_json()["id"]
    assert len(tokens) == 6 and len(set(tokens.values())) == 1
    (code,) = outbox.unread(ALICE)
    assert counts(rt)[0] == 1
    request_id = next(iter(tokens.values()))
    owner = submit(client, address=ALICE, **IP_A)  # the owner, from their own address
    assert owner[0] == request_id and outbox.unread(ALICE) == []
    verified = client.post(f"{BASE}/{request_id}/verify", json={"code": code},
                           headers=auth(owner[1]))
    assert verified.status_code == 200, verified.get_json()
    for token in tokens:  # every stranger's token stops working at verification
        error_of(client.get(f"{BASE}/{request_id}", headers=auth(token)), 404, "not_found")
        error_of(client.get(f"{BASE}/{request_id}/export", headers=auth(token)), 404,
                 "not_found")
    fresh = verified.get_json()["status_token"]
    assert client.get(f"{BASE}/{request_id}", headers=auth(fresh)).status_code == 200


def test_joining_does_not_tell_when_someone_else_submitted(make_api: Callable[..., Flask],
                                                           outbox: Outbox) -> None:
    app = make_api()
    client, rt = app.test_client(), app.extensions["dsar"]
    rt.clock = MovableClock(datetime(2026, 3, 2, 9, tzinfo=UTC))
    request_id, stranger = submit(client, address=ALICE, **IP_A)
    rt.clock.advance(days=5)
    answer = client.post(BASE, json={"kind": "access", "email": ALICE}, environ_base=IP_B)
    assert answer.status_code == 202
    joined = answer.get_json()
    assert joined["id"] == request_id and joined["due_at"] == "2026-04-07T09:00:00+00:00"
    shown = client.get(f"{BASE}/{request_id}", headers=auth(joined["status_token"])).get_json()
    assert (shown["received_at"], shown["due_at"]) == ("2026-03-07T09:00:00+00:00",
                                                       "2026-04-07T09:00:00+00:00")
    shown = client.get(f"{BASE}/{request_id}", headers=auth(stranger)).get_json()
    assert shown["received_at"] == "2026-03-02T09:00:00+00:00"


def test_bad_bodies_do_not_share_one_email_counter(make_api: Callable[..., Flask]) -> None:
    """A body without an address counts per IP only, so strangers' broken
    requests cannot lock each other out."""
    client = make_api(RATE_LIMIT_SUBMIT="2 per minute").test_client()
    for n in range(4):
        environ = {"REMOTE_ADDR": f"198.51.100.{n}"}
        response = client.post(BASE, json={"kind": "access"}, environ_base=environ)
        error_of(response, 400, "invalid_fields")


def test_verify_is_limited_per_ip_and_per_request(make_api: Callable[..., Flask],
                                                  outbox: Outbox) -> None:
    app = make_api(RATE_LIMIT_VERIFY="2 per minute")
    client, rt = app.test_client(), app.extensions["dsar"]
    first, token = submit(client, **IP_A)
    code = outbox.code(ALICE)
    wrong = {"code": f"{(int(code) + 1) % 1_000_000:06d}"}
    url = f"{BASE}/{first}/verify"
    for environ in (IP_A, IP_B):  # two attempts on one request, from two addresses
        error_of(client.post(url, json=wrong, headers=auth(token), environ_base=environ), 400)
    before = counts(rt)
    per_request = client.post(url, json={"code": code}, headers=auth(token), environ_base=IP_C)
    error_of(per_request, 429, "rate_limited")
    assert counts(rt) == before  # not even an attempt was counted
    # IP_A has used one of its two; another request from it gets one more, then 429
    second, second_token = submit(client, address=BOB, **IP_B)
    second_url = f"{BASE}/{second}/verify"
    ok = client.post(second_url, json={"code": outbox.code(BOB)}, headers=auth(second_token),
                     environ_base=IP_A)
    assert ok.status_code == 200
    per_ip = client.post(second_url, json={"code": "000000"}, headers=auth(second_token),
                         environ_base=IP_A)
    error_of(per_ip, 429, "rate_limited")


def test_resend_is_limited_per_request(make_api: Callable[..., Flask], outbox: Outbox) -> None:
    app = make_api(RATE_LIMIT_RESEND="1 per minute")
    client = app.test_client()
    clock = app.extensions["dsar"].clock = MovableClock()
    request_id, token = submit(client)
    url = f"{BASE}/{request_id}/resend"
    clock.advance(seconds=61)  # past the code's cooldown (the limiter's window is real time)
    assert client.post(url, headers=auth(token), environ_base=IP_A).status_code == 202
    response = client.post(url, headers=auth(token), environ_base=IP_B)
    error_of(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) > 0
    assert len(outbox.unread(ALICE)) == 2  # the first code and one resend


def test_only_a_refusal_carries_retry_after(make_api: Callable[..., Flask],
                                            outbox: Outbox) -> None:
    """The limiter's window (an hour) is when to try again after a 429, not
    after a success: a client honouring it would wait an hour for nothing."""
    client = make_api(RATE_LIMIT_SUBMIT="2 per hour").test_client()
    answers = [client.post(BASE, json={"kind": "access", "email": ALICE})]
    request_id, token = answers[0].get_json()["id"], answers[0].get_json()["status_token"]
    answers.append(client.post(f"{BASE}/{request_id}/verify", json={"code": "000000"},
                               headers=auth(token)))
    answers.append(client.post(f"{BASE}/{request_id}/resend", headers=auth(token)))
    assert [a.status_code for a in answers] == [202, 400, 429]  # the cooldown's own 429
    for answer in answers[:2]:
        assert "Retry-After" not in answer.headers, answer.status_code
        assert answer.headers["X-RateLimit-Limit"]  # the limiter's own headers stay
    assert int(answers[2].headers["Retry-After"]) <= 60
    client.post(BASE, json={"kind": "access", "email": BOB})
    limited = client.post(BASE, json={"kind": "access", "email": "carol@example.org"})
    error_of(limited, 429, "rate_limited")
    assert 60 < int(limited.headers["Retry-After"]) <= 3600
