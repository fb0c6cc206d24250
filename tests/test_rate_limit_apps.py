"""Each app has its own rate limiter (``dsar.extensions.RateLimits``): apps built in
one process, one counting in memory and one in Redis, with different limits, key
prefixes and error settings, share no storage, counter or setting, whichever was
built first; and a view that declares limits never runs unlimited."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Blueprint, Flask
from limits.storage import MemoryStorage

from dsar.extensions import FailClosedLimiter, RateLimits, rate_limits
from tests.api.helpers import BASE, error_of, submit
from tests.portal.journey import Browser
from tests.support.redis import RedisDb
from tests.support.servers import free_port

sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

IP = {"REMOTE_ADDR": "192.0.2.30"}


def _limiter(app: Flask) -> FailClosedLimiter:
    limiter = app.extensions[RateLimits.KEY]
    assert isinstance(limiter, FailClosedLimiter)
    return limiter


def _memory_keys(app: Flask) -> list[str]:
    storage = _limiter(app).storage
    assert isinstance(storage, MemoryStorage)
    return sorted(storage.storage)  # limits' MemoryStorage: its counters by key


def _post(client: Any, address: str) -> Any:
    return client.post(BASE, json={"kind": "access", "email": address}, environ_base=IP)


@sqlite
def test_two_apps_count_in_their_own_storage(make_app: Callable[..., Flask],
                                             redis_db: RedisDb, tmp_path: Path) -> None:
    """A (memory://, 1 per minute, prefix dsar-a) is built first, B (Redis, 3 per
    minute, prefix dsar-b) last: the old shared limiter counted both in B's Redis with
    A's prefix. Now A's counters are in A's memory, B's in Redis under B's prefix."""
    outbox = {"OUTBOX_DIR": str(tmp_path / "outbox")}
    app_a = make_app(RATELIMIT_STORAGE_URI="memory://", RATELIMIT_KEY_PREFIX="dsar-a",
                     RATE_LIMIT_SUBMIT="1 per minute", **outbox)
    app_b = make_app(**redis_db.app_config, RATELIMIT_KEY_PREFIX="dsar-b",
                     RATE_LIMIT_SUBMIT="3 per minute", **outbox)
    assert _limiter(app_a) is not _limiter(app_b)
    assert app_a.view_functions["api.submit"] is not app_b.view_functions["api.submit"]
    a, b = app_a.test_client(), app_b.test_client()

    submit(a, address="a1@example.org", **IP)
    refused = _post(a, "a2@example.org")
    error_of(refused, 429, "rate_limited")  # A's own limit: 1
    assert refused.headers["X-RateLimit-Limit"] == "1"
    assert redis_db.keys() == [], "app A counted in app B's Redis"
    keys_a = _memory_keys(app_a)
    assert keys_a and all("/dsar-a/" in k for k in keys_a), keys_a

    for n in range(3):  # the same client address: A's exhausted limit is not B's
        submit(b, address=f"b{n}@example.org", **IP)
    refused = _post(b, "b3@example.org")
    error_of(refused, 429, "rate_limited")  # B's own limit: 3
    assert refused.headers["X-RateLimit-Limit"] == "3"
    keys_b = redis_db.keys()
    assert keys_b and all("/dsar-b/" in k for k in keys_b), keys_b  # B's prefix honoured
    assert any("/api.submit/3/1/minute" in k for k in keys_b), keys_b
    assert _memory_keys(app_a) == keys_a  # B counted nothing in A's memory

    _limiter(app_a).reset()  # A's counters are in A's storage: clearing it frees A...
    submit(a, address="a3@example.org", **IP)
    error_of(_post(b, "b4@example.org"), 429, "rate_limited")  # ...and not B
    assert redis_db.keys() == keys_b


@sqlite
def test_portal_pages_use_their_own_apps_limits(make_app: Callable[..., Flask],
                                                 redis_db: RedisDb, tmp_path: Path) -> None:
    """The portal's 429 page reads the limit of its own app (Retry-After within
    that app's window)."""
    outbox = {"OUTBOX_DIR": str(tmp_path / "outbox"), "TESTING": True}
    slow = make_app(**redis_db.app_config, RATE_LIMIT_SUBMIT="1 per hour", **outbox)
    fast = make_app(RATELIMIT_STORAGE_URI="memory://", RATE_LIMIT_SUBMIT="2 per minute",
                    **outbox)
    in_slow, in_fast = Browser(slow, **IP), Browser(fast, **IP)
    assert in_slow.submit("access", "one@example.org").status_code == 303
    limited = in_slow.submit("access", "two@example.org")
    assert limited.status_code == 429, limited.text
    assert 60 < int(limited.headers["Retry-After"]) <= 3600
    assert redis_db.keys()
    for address in ("three@example.org", "four@example.org"):
        assert in_fast.submit("access", address).status_code == 303
    limited = in_fast.submit("access", "five@example.org")
    assert limited.status_code == 429, limited.text
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert _memory_keys(fast)


@sqlite
def test_an_earlier_apps_settings_do_not_open_a_later_one(make_app: Callable[..., Flask],
                                                          tmp_path: Path) -> None:
    """A, built first, swallows storage errors; B's Redis does not answer: B still
    fails closed (503) while A, on its own memory storage, keeps working."""
    outbox = {"OUTBOX_DIR": str(tmp_path / "outbox")}
    app_a = make_app(RATELIMIT_STORAGE_URI="memory://", RATELIMIT_SWALLOW_ERRORS=True,
                     RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=True, **outbox)
    app_b = make_app(RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/13", **outbox)
    error_of(_post(app_b.test_client(), "b@example.org"), 503, "service_unavailable")
    submit(app_a.test_client(), address="a@example.org", **IP)
    error_of(_post(app_b.test_client(), "b@example.org"), 503, "service_unavailable")


@sqlite
def test_storage_options_do_not_pile_up(make_app: Callable[..., Flask],
                                        redis_db: RedisDb) -> None:
    """Each app's storage is built from that app's options only: a key prefix
    given to the first app is not the second's."""
    first = make_app(**redis_db.app_config)
    second = make_app(RATELIMIT_STORAGE_URI=redis_db.url)
    assert getattr(_limiter(first).storage, "key_prefix") == redis_db.prefix  # noqa: B009
    assert getattr(_limiter(second).storage, "key_prefix") == "LIMITS"  # noqa: B009


def test_declared_limits_not_applied_refuse_to_run() -> None:
    """A view with declared limits on an app whose limiter never wrapped it is an
    error, not an unlimited endpoint."""
    bp = Blueprint("bare", __name__)

    @bp.post("/hit")
    @rate_limits.limit("SUBMIT")
    def hit() -> str:
        return "ran"

    def bare_app(init: bool, apply: bool) -> Flask:
        app = Flask(__name__)
        app.config.update(TESTING=True, RATE_LIMIT_SUBMIT="1 per minute",
                          RATELIMIT_STORAGE_URI="memory://")
        if init:
            rate_limits.init_app(app)
        app.register_blueprint(bp)
        if apply:
            rate_limits.apply(app)
            rate_limits.apply(app)  # once per app: a second call wraps nothing twice
        return app

    for init, apply in ((False, False), (True, False)):
        with pytest.raises(RuntimeError, match="declared but not applied"):
            bare_app(init, apply).test_client().post("/hit")
    client = bare_app(True, True).test_client()
    assert client.post("/hit").text == "ran"
    assert client.post("/hit").status_code == 429
