"""Wrong codes sent at the same moment are each counted: the attempt limit
holds under concurrency (PostgreSQL runs them truly in parallel)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from flask import Flask

from dsar.database import utcnow
from dsar.models import Verification
from tests.api.helpers import ALICE, BASE, Outbox, auth, submit


def test_parallel_wrong_codes_are_all_counted(make_api: Callable[..., Flask],
                                              outbox: Outbox) -> None:
    app = make_api(CODE_MAX_ATTEMPTS=50)
    rt = app.extensions["dsar"]
    request_id, token = submit(app.test_client())
    code = outbox.code(ALICE)
    wrong = {"code": f"{(int(code) + 1) % 1_000_000:06d}"}
    start, statuses = threading.Barrier(8), []

    def attempt() -> None:
        client = app.test_client()
        start.wait(10)
        for _ in range(3):
            statuses.append(client.post(f"{BASE}/{request_id}/verify", json=wrong,
                                        headers=auth(token)).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [400] * 24
    with rt.transaction() as session:
        row = session.get(Verification, request_id)
        assert row is not None and row.attempts == 24


def test_the_right_code_twice_at_once_verifies_once(make_api: Callable[..., Flask],
                                                    outbox: Outbox) -> None:
    app = make_api()
    request_id, token = submit(app.test_client())
    right = {"code": outbox.code(ALICE)}
    start, statuses = threading.Barrier(4), []

    def attempt() -> None:
        client = app.test_client()
        start.wait(10)
        statuses.append(client.post(f"{BASE}/{request_id}/verify", json=right,
                                    headers=auth(token)).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    # the others find the request verified (409) or, once its commit is seen,
    # the token used before verification gone (404): never verified twice
    assert sorted(statuses)[0] == 200 and all(s in (404, 409) for s in sorted(statuses)[1:])
    assert len(statuses) == 4


def test_parallel_resends_send_one_code(make_api: Callable[..., Flask],
                                        outbox: Outbox) -> None:
    """Resends at the same moment after the cooldown: one new code, the rest
    are told to wait (the cooldown check and the send are one locked step)."""
    app = make_api(CODE_RESEND_SECONDS=60, RATE_LIMIT_RESEND="100 per hour")
    rt = app.extensions["dsar"]
    request_id, token = submit(app.test_client())
    outbox.code(ALICE)
    with rt.transaction() as session:  # the cooldown has passed
        row = session.get(Verification, request_id)
        assert row is not None
        row.sent_at = utcnow() - timedelta(seconds=61)
    start, statuses = threading.Barrier(4), []

    def attempt() -> None:
        client = app.test_client()
        start.wait(10)
        statuses.append(client.post(f"{BASE}/{request_id}/resend",
                                    headers=auth(token)).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(statuses) == [202, 429, 429, 429]
