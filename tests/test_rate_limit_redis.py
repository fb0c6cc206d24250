"""Rate limits with their counters in a real Redis (tests/support/redis.py): limits
trip on the API and the portal, counters are shared between apps and between
processes, keys hold no email address, and an unreachable Redis fails closed (503)
while a misspelt storage URI stops the start."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from dsar import create_app
from dsar.config import ConfigError
from tests.api.helpers import BASE, counts, error_of, submit
from tests.portal.journey import Browser, count
from tests.support.app import SECRET
from tests.support.redis import RedisDb
from tests.support.servers import free_port
from tests.support.smtp import deliver

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

IP = {"REMOTE_ADDR": "192.0.2.10"}
TWO = {"RATE_LIMIT_SUBMIT": "2 per minute"}


@pytest.fixture
def limited_app(make_app: Callable[..., Flask], redis_db: RedisDb,
                tmp_path: Path) -> Callable[..., Flask]:
    """``make_app`` counting limits in this test's Redis keys, mail to a tmp outbox."""

    def factory(**config: Any) -> Flask:
        settings = {"OUTBOX_DIR": str(tmp_path / "outbox"), **redis_db.app_config, **config}
        return make_app(**settings)

    return factory


def test_api_submit_is_limited_per_ip(limited_app: Callable[..., Flask],
                                      redis_db: RedisDb) -> None:
    app = limited_app(**TWO)
    client, rt = app.test_client(), app.extensions["dsar"]
    submit(client, address="a@example.org", **IP)
    submit(client, address="b@example.org", **IP)
    assert redis_db.keys(), "the counters are not in Redis"
    before = counts(rt)
    response = client.post(BASE, json={"kind": "access", "email": "c@example.org"},
                           environ_base=IP)
    error_of(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) > 0
    assert counts(rt) == before
    submit(client, address="c@example.org", REMOTE_ADDR="192.0.2.11")  # another IP


def test_portal_submit_is_limited_per_ip(limited_app: Callable[..., Flask],
                                         redis_db: RedisDb) -> None:
    browser = Browser(limited_app(TESTING=True, **TWO), **IP)
    assert browser.submit("access", "one@example.org").status_code == 303
    assert browser.submit("access", "two@example.org").status_code == 303
    assert redis_db.keys(), "the counters are not in Redis"
    third = browser.submit("access", "three@example.org")
    assert third.status_code == 429, third.text
    assert int(third.headers["Retry-After"]) > 0
    assert count(browser.rt) == 2


def test_two_apps_share_the_counters(limited_app: Callable[..., Flask]) -> None:
    """Two app instances (two workers) on one Redis: 2 per minute in total."""
    first, second = limited_app(**TWO).test_client(), limited_app(**TWO).test_client()
    submit(first, address="a@example.org", **IP)
    submit(second, address="b@example.org", **IP)
    response = first.post(BASE, json={"kind": "access", "email": "c@example.org"},
                          environ_base=IP)
    error_of(response, 429, "rate_limited")
    error_of(second.post(BASE, json={"kind": "access", "email": "d@example.org"},
                         environ_base=IP), 429, "rate_limited")


_OTHER_PROCESS = """
import json, sys
from dsar import create_app
settings, emails, ip = json.loads(sys.argv[1])
app = create_app(settings)
client = app.test_client()
codes = [client.post("/api/v1/requests", json={"kind": "access", "email": e},
                     environ_base={"REMOTE_ADDR": ip}).status_code for e in emails]
app.extensions["dsar"].close()
print(json.dumps(codes))
"""


@pytest.mark.parametrize("storage", ["redis", "memory"])
def test_another_process_shares_the_counters(storage: str, make_app: Callable[..., Flask],
                                             redis_db: RedisDb, database_url: str,
                                             tmp_path: Path) -> None:
    """A real second process uses up the IP's 2 per minute: with Redis this process
    then refuses the third submission; with memory:// (the control) it accepts it."""
    config: dict[str, Any] = {"OUTBOX_DIR": str(tmp_path / "outbox"), **TWO}
    config.update(redis_db.app_config if storage == "redis"
                  else {"RATELIMIT_STORAGE_URI": "memory://"})
    client = make_app(**config).test_client()  # also migrates the shared database
    settings = {"DATABASE_URL": database_url, "SECRET_KEY": SECRET, "CONNECTORS": None,
                "EXPORT_DIR": str(tmp_path / "exports"), **config}
    env = {**os.environ, "DSAR_INSTANCE_PATH": str(tmp_path / "other-instance")}
    done = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS,
         json.dumps([settings, ["a@example.org", "b@example.org"], IP["REMOTE_ADDR"]])],
        capture_output=True, text=True, timeout=60, check=False, env=env,
        cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [202, 202]
    response = client.post(BASE, json={"kind": "access", "email": "c@example.org"},
                           environ_base=IP)
    assert response.status_code == (429 if storage == "redis" else 202), response.get_json()


def test_counter_keys_hold_no_email_address(limited_app: Callable[..., Flask],
                                            redis_db: RedisDb) -> None:
    address = "Carol.Secret+dsar@Example.ORG"
    app = limited_app(TESTING=True)
    submit(app.test_client(), address=address, **IP)
    Browser(app, REMOTE_ADDR="192.0.2.20").start("access", address)
    keys = redis_db.keys()
    assert keys
    for key in keys:
        lowered = key.lower()
        assert "@" not in key and "carol" not in lowered and "example" not in lowered, key
    # no counter is kept per address, not even as a digest: someone else's
    # submissions for an address never count against its owner
    assert not [k for k in keys if "email" in k], keys
    assert any("192.0.2.10" in k for k in keys) and any("192.0.2.20" in k for k in keys)


def test_unreachable_redis_fails_closed(make_app: Callable[..., Flask], tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """The app starts (no connection at start); submit answers 503 on the API and
    the portal, writes nothing and logs the variable without the password; pages
    that are not limited keep working."""
    uri = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/13"
    app = make_app(RATELIMIT_STORAGE_URI=uri, TESTING=True,
                   OUTBOX_DIR=str(tmp_path / "outbox"))
    client, rt = app.test_client(), app.extensions["dsar"]
    before = counts(rt)
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="dsar"):
        response = client.post(BASE, json={"kind": "access", "email": "a@example.org"},
                               environ_base=IP)
        error_of(response, 503, "service_unavailable")
        browser = Browser(app, **IP)
        assert browser.client.get("/").status_code == 200  # not limited: works
        page = browser.submit("access", "a@example.org")
        assert page.status_code == 503, page.text
        assert "Traceback" not in page.text
    assert time.monotonic() - started < 10
    assert counts(rt) == before
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(logged) == 2, logged
    assert all("DSAR_RATELIMIT_STORAGE_URI" in m and "127.0.0.1" in m for m in logged)
    assert not any("s3cret" in m for m in logged)
    assert deliver(rt) == 0 and not list((tmp_path / "outbox").glob("*.eml"))


@pytest.mark.parametrize("uri", ["redsi://127.0.0.1:6379/0", "127.0.0.1:6379",
                                 "memcached://127.0.0.1:11211", "redis://:pw@h:port/0"])
def test_bad_storage_uri_stops_the_start(uri: str, database_url: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSAR_RATELIMIT_STORAGE_URI", uri)
    monkeypatch.setenv("DSAR_INSTANCE_PATH", str(tmp_path / "instance"))
    with pytest.raises(ConfigError, match="^DSAR_RATELIMIT_STORAGE_URI: ") as raised:
        create_app({"DATABASE_URL": database_url, "SECRET_KEY": SECRET})
    assert ":pw@" not in str(raised.value)


def test_redis_storage_needs_the_client(database_url: str, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "redis" else real(name, *a))
    monkeypatch.setenv("DSAR_INSTANCE_PATH", str(tmp_path / "instance"))
    with pytest.raises(ConfigError, match=r"DSAR_RATELIMIT_STORAGE_URI: .*dsar-toolkit\[redis\]"):
        create_app({"DATABASE_URL": database_url, "SECRET_KEY": SECRET,
                    "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/13"})
